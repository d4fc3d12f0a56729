package bootstrap

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/crypto/ssh"
)

// IdentityFile is where the operator keeps its SSH key, relative to its data directory.
const IdentityFile = "ssh/id_ed25519"

// LoadOrCreateIdentity reads the ed25519 private key at path (OpenSSH format), creating it (mode
// 0600, directory 0700) with a ".pub" beside it when it does not exist.
func LoadOrCreateIdentity(path string) (ssh.Signer, error) {
	data, err := os.ReadFile(path)
	if err == nil {
		signer, err := ssh.ParsePrivateKey(data)
		if err != nil {
			return nil, fmt.Errorf("reading SSH identity %s: %w", path, err)
		}
		return signer, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("reading SSH identity: %w", err)
	}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating SSH identity: %w", err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "bosun-operator")
	if err != nil {
		return nil, fmt.Errorf("encoding SSH identity: %w", err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		return nil, fmt.Errorf("SSH identity: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("creating SSH identity: %w", err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, pem.EncodeToMemory(block), 0o600); err != nil {
		return nil, fmt.Errorf("writing SSH identity: %w", err)
	}
	if err := os.WriteFile(path+".pub", []byte(AuthorizedKey(signer)+"\n"), 0o644); err != nil {
		return nil, fmt.Errorf("writing SSH identity: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return nil, fmt.Errorf("writing SSH identity: %w", err)
	}
	return signer, nil
}

// AuthorizedKey is the signer's public key as an authorized_keys line.
func AuthorizedKey(signer ssh.Signer) string {
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(signer.PublicKey()))) + " bosun-operator"
}
