package apiserver

import (
	"crypto/subtle"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Identities as Kubernetes names them.
const (
	groupAuthenticated   = "system:authenticated"
	groupUnauthenticated = "system:unauthenticated"
	groupNodes           = "system:nodes"
	userAnonymous        = "system:anonymous"
	nodeUserPrefix       = "system:node:"
)

// userInfo is an authenticated (or anonymous) caller.
type userInfo struct {
	Name   string
	Groups []string
}

func (u *userInfo) inGroup(g string) bool {
	for _, x := range u.Groups {
		if x == g {
			return true
		}
	}
	return false
}

func (u *userInfo) anonymous() bool { return u.Name == userAnonymous }

// nodeName returns the node a node identity speaks for.
func (u *userInfo) nodeName() (string, bool) {
	if !u.inGroup(groupNodes) || !strings.HasPrefix(u.Name, nodeUserPrefix) {
		return "", false
	}
	n := strings.TrimPrefix(u.Name, nodeUserPrefix)
	return n, n != ""
}

var anonymousUser = &userInfo{Name: userAnonymous, Groups: []string{groupUnauthenticated}}

// tokenAuthenticator maps SHA-256 hashes of bearer tokens to users; tokens are never kept.
type tokenAuthenticator struct {
	mu     sync.RWMutex
	hashes []tokenEntry
}

type tokenEntry struct {
	hash string
	user *userInfo
}

func newTokenAuthenticator() *tokenAuthenticator { return &tokenAuthenticator{} }

func (t *tokenAuthenticator) add(hash string, u *userInfo) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.hashes = append(t.hashes, tokenEntry{hash: hash, user: u})
}

func (t *tokenAuthenticator) lookup(token string) *userInfo {
	h := []byte(hashToken(token))
	t.mu.RLock()
	defer t.mu.RUnlock()
	var found *userInfo
	for _, e := range t.hashes {
		if subtle.ConstantTimeCompare(h, []byte(e.hash)) == 1 {
			found = e.user
		}
	}
	return found
}

// authenticate identifies the caller: a bearer token, else a verified client certificate
// (CN = user, O = groups), else anonymous. ok is false for a presented but invalid token.
func (s *Server) authenticate(r *http.Request) (u *userInfo, ok bool) {
	if auth := r.Header.Get("Authorization"); auth != "" {
		scheme, token, found := strings.Cut(auth, " ")
		if !found || !strings.EqualFold(scheme, "bearer") || strings.TrimSpace(token) == "" {
			return nil, false
		}
		if u := s.tokens.lookup(strings.TrimSpace(token)); u != nil {
			return u, true
		}
		if looksLikeBootstrapToken(strings.TrimSpace(token)) {
			if u, err := s.bootstrapUser(r.Context(), strings.TrimSpace(token), time.Now()); err == nil {
				return u, true
			}
		}
		return nil, false
	}
	// The TLS stack verified the chain against the operator CA (VerifyClientCertIfGiven).
	if r.TLS != nil && len(r.TLS.VerifiedChains) > 0 && len(r.TLS.PeerCertificates) > 0 {
		c := r.TLS.PeerCertificates[0]
		if c.Subject.CommonName == "" {
			return nil, false
		}
		groups := append([]string{}, c.Subject.Organization...)
		groups = append(groups, groupAuthenticated)
		return &userInfo{Name: c.Subject.CommonName, Groups: groups}, true
	}
	return anonymousUser, true
}
