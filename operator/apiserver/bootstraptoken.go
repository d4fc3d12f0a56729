package apiserver

import (
	"context"
	"crypto/subtle"
	"fmt"
	"regexp"
	"time"

	"github.com/bosun-gitops/bosun/internal/resource"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Bootstrap tokens, in the Kubernetes format: "<id>.<secret>" (6 and 16 characters of [a-z0-9]),
// stored as Secrets of type bootstrap.kubernetes.io/token named bootstrap-token-<id> in
// kube-system (`bosun token create` writes them through the API). A valid token authenticates as
// system:bootstrap:<id> in the group system:bootstrappers, which may only call the join endpoint.
const (
	groupBootstrappers      = "system:bootstrappers"
	bootstrapUserPrefix     = "system:bootstrap:"
	bootstrapSecretPrefix   = "bootstrap-token-"
	bootstrapSecretType     = corev1.SecretType("bootstrap.kubernetes.io/token")
	bootstrapKeyID          = "token-id"
	bootstrapKeySecret      = "token-secret"
	bootstrapKeyExpiration  = "expiration"
	bootstrapKeyUsageAuthn  = "usage-bootstrap-authentication"
	bootstrapTokenNamespace = metav1.NamespaceSystem
)

// bootstrapTokenPattern is the Kubernetes bootstrap token format.
var bootstrapTokenPattern = regexp.MustCompile(`^([a-z0-9]{6})\.([a-z0-9]{16})$`)

// looksLikeBootstrapToken tells bootstrap tokens from other bearer tokens without a lookup.
func looksLikeBootstrapToken(token string) bool { return bootstrapTokenPattern.MatchString(token) }

// bootstrapUser checks a bootstrap token against its Secret. The error says why a token is
// refused (unknown, expired, not for authentication) and what to do; it never contains the secret.
func (s *Server) bootstrapUser(ctx context.Context, token string, now time.Time) (*userInfo, error) {
	m := bootstrapTokenPattern.FindStringSubmatch(token)
	if m == nil {
		return nil, fmt.Errorf("the token is not a bootstrap token (format <6 chars>.<16 chars>, [a-z0-9]): create one with `bosun token create`")
	}
	id, secret := m[1], m[2]
	unknown := fmt.Errorf("bootstrap token %q is unknown or was deleted: create a new one with `bosun token create`", id)
	obj, err := s.cfg.Store.Get(ctx, resource.Secrets, bootstrapTokenNamespace, bootstrapSecretPrefix+id)
	if apierrors.IsNotFound(err) {
		return nil, unknown
	}
	if err != nil {
		return nil, fmt.Errorf("looking up bootstrap token %q: %w", id, err)
	}
	sec, ok := obj.(*corev1.Secret)
	if !ok || sec.Type != bootstrapSecretType || sec.DeletionTimestamp != nil {
		return nil, unknown
	}
	value := func(k string) string {
		if v, ok := sec.Data[k]; ok {
			return string(v)
		}
		return sec.StringData[k]
	}
	if value(bootstrapKeyID) != id || subtle.ConstantTimeCompare([]byte(value(bootstrapKeySecret)), []byte(secret)) != 1 {
		return nil, unknown
	}
	if value(bootstrapKeyUsageAuthn) != "true" {
		return nil, fmt.Errorf("bootstrap token %q is not usable for authentication (%s is not \"true\")", id, bootstrapKeyUsageAuthn)
	}
	if exp := value(bootstrapKeyExpiration); exp != "" {
		t, err := time.Parse(time.RFC3339, exp)
		if err != nil {
			return nil, fmt.Errorf("bootstrap token %q has an unreadable expiration %q: delete it and create a new one", id, exp)
		}
		if !now.Before(t) {
			return nil, fmt.Errorf("bootstrap token %q expired at %s: create a new one with `bosun token create`", id, t.UTC().Format(time.RFC3339))
		}
	}
	return &userInfo{Name: bootstrapUserPrefix + id, Groups: []string{groupBootstrappers, groupAuthenticated}}, nil
}
