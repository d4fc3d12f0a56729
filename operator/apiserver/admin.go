package apiserver

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/bosun-gitops/bosun/internal/pki"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

const (
	adminUser        = "admin"
	groupMasters     = "system:masters"
	adminTokenFile   = "admin-token.sha256"
	kubeconfigName   = "bosun"
	adminKubeconfig  = "admin.kubeconfig"
	tokenRandomBytes = 32
)

// setupAdmin loads the admin token hash, or creates the token on first start. The kubeconfig is
// (re)written with the current URL and CA on every start; the token itself only exists in it.
// Deleting both admin.kubeconfig and admin-token.sha256 rotates the admin token.
func (s *Server) setupAdmin() (*tokenAuthenticator, error) {
	hashPath := filepath.Join(s.cfg.DataDir, adminTokenFile)
	kcPath := s.AdminKubeconfigPath()
	hashHex, err := os.ReadFile(hashPath)
	var token string
	switch {
	case err == nil:
		token, err = tokenFromKubeconfig(kcPath)
		if err != nil {
			s.log.Warn("admin.kubeconfig unreadable; not rewriting it (delete it and admin-token.sha256 to rotate the admin token)", "error", err)
		}
		if token != "" && hashToken(token) != strings.TrimSpace(string(hashHex)) {
			s.log.Warn("admin.kubeconfig holds a token that is not the admin token; not rewriting it")
			token = ""
		}
	case errors.Is(err, fs.ErrNotExist):
		token, err = newToken()
		if err != nil {
			return nil, err
		}
		hashHex = []byte(hashToken(token))
		if err := pki.WriteFile(hashPath, append(hashHex, '\n'), 0o600); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("reading admin token hash: %w", err)
	}
	if token != "" {
		if err := s.writeKubeconfig(kcPath, token); err != nil {
			return nil, err
		}
	}
	ta := newTokenAuthenticator()
	ta.add(strings.TrimSpace(string(hashHex)), &userInfo{Name: adminUser, Groups: []string{groupMasters, groupAuthenticated}})
	return ta, nil
}

func (s *Server) writeKubeconfig(path, token string) error {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters[kubeconfigName] = &clientcmdapi.Cluster{Server: s.url, CertificateAuthorityData: s.ca.CertPEM}
	cfg.AuthInfos[adminUser] = &clientcmdapi.AuthInfo{Token: token}
	cfg.Contexts[kubeconfigName] = &clientcmdapi.Context{Cluster: kubeconfigName, AuthInfo: adminUser}
	cfg.CurrentContext = kubeconfigName
	data, err := clientcmd.Write(*cfg)
	if err != nil {
		return fmt.Errorf("encoding admin kubeconfig: %w", err)
	}
	return pki.WriteFile(path, data, 0o600)
}

func tokenFromKubeconfig(path string) (string, error) {
	cfg, err := clientcmd.LoadFromFile(path)
	if err != nil {
		return "", err
	}
	if ai := cfg.AuthInfos[adminUser]; ai != nil {
		return ai.Token, nil
	}
	return "", errors.New("no admin user in kubeconfig")
}

func newToken() (string, error) {
	b := make([]byte, tokenRandomBytes)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generating admin token: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

func hashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}
