package main

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/big"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/bosun-gitops/bosun/internal/pki"
	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// Bootstrap tokens in the Kubernetes format, stored as bootstrap.kubernetes.io/token Secrets.
const (
	tokenAlphabet     = "abcdefghijklmnopqrstuvwxyz0123456789"
	tokenSecretPrefix = "bootstrap-token-"
	tokenSecretType   = corev1.SecretType("bootstrap.kubernetes.io/token")
)

func (g *globalFlags) clientset() (kubernetes.Interface, *rest.Config, error) {
	cfg, err := g.restConfig()
	if err != nil {
		return nil, nil, err
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, nil, err
	}
	return cs, cfg, nil
}

func newTokenCmd(g *globalFlags) *cobra.Command {
	cmd := &cobra.Command{Use: "token", Short: "Manage bootstrap tokens that let machines join with `bosun agent --token`"}
	var ttl time.Duration
	var description string
	create := &cobra.Command{
		Use:   "create",
		Short: "Create a join token and print it as <id>.<secret>",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cs, cfg, err := g.clientset()
			if err != nil {
				return err
			}
			id, secret, err := newBootstrapToken()
			if err != nil {
				return err
			}
			sec := bootstrapSecret(id, secret, description, ttl, time.Now())
			if _, err := cs.CoreV1().Secrets(metav1.NamespaceSystem).Create(cmd.Context(), sec, metav1.CreateOptions{}); err != nil {
				return fmt.Errorf("storing the token: %w", err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s.%s\n", id, secret)
			if hash, err := caHashOf(cfg); err == nil {
				fmt.Fprintf(cmd.ErrOrStderr(), "join a machine with:\n  bosun agent --server %s --token %s.%s --ca-cert-hash %s\n", cfg.Host, id, secret, hash)
			}
			return nil
		},
	}
	create.Flags().DurationVar(&ttl, "ttl", 24*time.Hour, "how long the token is valid (0 = forever)")
	create.Flags().StringVar(&description, "description", "", "what the token is for")
	list := &cobra.Command{
		Use: "list", Short: "List join tokens (IDs only; secrets are never shown)", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cs, _, err := g.clientset()
			if err != nil {
				return err
			}
			l, err := cs.CoreV1().Secrets(metav1.NamespaceSystem).List(cmd.Context(), metav1.ListOptions{})
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 3, ' ', 0)
			fmt.Fprintln(tw, "TOKEN ID\tEXPIRES\tDESCRIPTION")
			for _, s := range l.Items {
				if s.Type != tokenSecretType {
					continue
				}
				exp := string(s.Data["expiration"])
				if exp == "" {
					exp = "<never>"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\n", s.Data["token-id"], exp, s.Data["description"])
			}
			return tw.Flush()
		},
	}
	del := &cobra.Command{
		Use: "delete ID", Short: "Delete a join token (by its ID or the whole token)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cs, _, err := g.clientset()
			if err != nil {
				return err
			}
			id, _, _ := strings.Cut(args[0], ".")
			err = cs.CoreV1().Secrets(metav1.NamespaceSystem).Delete(cmd.Context(), tokenSecretPrefix+id, metav1.DeleteOptions{})
			if apierrors.IsNotFound(err) {
				return fmt.Errorf("no token with ID %q (see `bosun token list`)", id)
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "token %s deleted\n", id)
			return nil
		},
	}
	cmd.AddCommand(create, list, del)
	return cmd
}

// newBootstrapToken returns a random 6-character ID and 16-character secret of [a-z0-9].
func newBootstrapToken() (id, secret string, err error) {
	s, err := randomString(6 + 16)
	if err != nil {
		return "", "", err
	}
	return s[:6], s[6:], nil
}

func randomString(n int) (string, error) {
	var b strings.Builder
	max := big.NewInt(int64(len(tokenAlphabet)))
	for range n {
		i, err := rand.Int(rand.Reader, max)
		if err != nil {
			return "", fmt.Errorf("generating token: %w", err)
		}
		b.WriteByte(tokenAlphabet[i.Int64()])
	}
	return b.String(), nil
}

func bootstrapSecret(id, secret, description string, ttl time.Duration, now time.Time) *corev1.Secret {
	data := map[string][]byte{
		"token-id":                       []byte(id),
		"token-secret":                   []byte(secret),
		"usage-bootstrap-authentication": []byte("true"),
	}
	if ttl > 0 {
		data["expiration"] = []byte(now.Add(ttl).UTC().Format(time.RFC3339))
	}
	if description != "" {
		data["description"] = []byte(description)
	}
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: tokenSecretPrefix + id, Namespace: metav1.NamespaceSystem},
		Type:       tokenSecretType,
		Data:       data,
	}
}

// caHashOf is the kubeadm-style pin of the kubeconfig's CA.
func caHashOf(cfg *rest.Config) (string, error) {
	data := cfg.CAData
	if len(data) == 0 {
		return "", fmt.Errorf("kubeconfig has no inline CA")
	}
	c, err := pki.ParseCert(data)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(c.RawSubjectPublicKeyInfo)
	return "sha256:" + hex.EncodeToString(sum[:]), nil
}
