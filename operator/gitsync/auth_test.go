package gitsync

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
	gitssh "github.com/go-git/go-git/v5/plumbing/transport/ssh"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

func newSigner(t *testing.T) (ssh.Signer, []byte) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return signer, pem.EncodeToMemory(block)
}

func TestSSHAuthUsesKeyAndChecksKnownHosts(t *testing.T) {
	dir := t.TempDir()
	client, clientPEM := newSigner(t)
	host, _ := newSigner(t)
	other, _ := newSigner(t)
	keyFile, knownFile := filepath.Join(dir, "id_ed25519"), filepath.Join(dir, "known_hosts")
	if err := os.WriteFile(keyFile, clientPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	line := knownhosts.Line([]string{knownhosts.Normalize("git.example.com:2222")}, host.PublicKey())
	if err := os.WriteFile(knownFile, []byte(line+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	auth, err := authFor(Config{Repo: "ssh://deploy@git.example.com:2222/r.git", SSHKeyFile: keyFile, KnownHostsFile: knownFile})
	if err != nil {
		t.Fatal(err)
	}
	keys, ok := auth.(*gitssh.PublicKeys)
	if !ok {
		t.Fatalf("auth = %T, want public keys", auth)
	}
	if keys.User != "deploy" {
		t.Errorf("user = %q, want deploy from the URL", keys.User)
	}
	if got, want := keys.Signer.PublicKey().Marshal(), client.PublicKey().Marshal(); string(got) != string(want) {
		t.Error("the signer is not the operator's key")
	}
	cc, err := keys.ClientConfig()
	if err != nil {
		t.Fatal(err)
	}
	addr := &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 2222}
	if err := cc.HostKeyCallback("git.example.com:2222", addr, host.PublicKey()); err != nil {
		t.Errorf("the pinned host key was refused: %v", err)
	}
	if err := cc.HostKeyCallback("git.example.com:2222", addr, other.PublicKey()); err == nil {
		t.Error("a different host key was accepted")
	}
	if err := cc.HostKeyCallback("unknown.example.com:22", addr, host.PublicKey()); err == nil {
		t.Error("an unknown host was accepted")
	}

	if _, err := authFor(Config{Repo: "git@h:r.git", SSHKeyFile: filepath.Join(dir, "missing"), KnownHostsFile: knownFile}); err == nil {
		t.Error("a missing key file was accepted")
	}
	if _, err := authFor(Config{Repo: "git@h:r.git", SSHKeyFile: keyFile}); err == nil {
		t.Error("ssh without known_hosts was accepted")
	}
}

func TestHTTPSAuthUsesToken(t *testing.T) {
	auth, err := authFor(Config{Repo: "https://git.example.com/r.git", Token: "s3cret"})
	if err != nil {
		t.Fatal(err)
	}
	basic, ok := auth.(*githttp.BasicAuth)
	if !ok || basic.Password != "s3cret" || basic.Username == "" {
		t.Errorf("auth = %#v, want basic auth with the token as password", auth)
	}
	if basic.String() == "" || strings.Contains(basic.String(), "s3cret") {
		t.Errorf("auth prints the token: %s", basic.String())
	}

	// The user name in the URL goes with the token (GitLab deploy tokens, Bitbucket app
	// passwords need it).
	auth, err = authFor(Config{Repo: "https://deploy-7@git.example.com/r.git", Token: "s3cret"})
	if err != nil {
		t.Fatal(err)
	}
	if basic, ok := auth.(*githttp.BasicAuth); !ok || basic.Username != "deploy-7" || basic.Password != "s3cret" {
		t.Errorf("auth = %#v, want basic auth as deploy-7 with the token", auth)
	}
}
