package gitsync

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bosun-gitops/bosun/internal/resource"
	"github.com/bosun-gitops/bosun/internal/testutil"
	"github.com/bosun-gitops/bosun/operator/store/storetest"
	bosunv1 "github.com/bosun-gitops/bosun/repo-layout/v1alpha1"
	"github.com/google/go-cmp/cmp"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// sshServer is OpenSSH's sshd on a free loopback port, letting one key log in as the current
// user; `git-upload-pack` runs in that user's shell, as on any Git server reached over ssh.
type sshServer struct {
	addr    string // 127.0.0.1:PORT
	user    string
	hostKey ssh.PublicKey
}

// sshdConfigTemplate: keys only, one host key, the authorized keys of the test.
const sshdConfigTemplate = `Port %[1]d
ListenAddress 127.0.0.1
HostKey %[2]s/host_ed25519
AuthorizedKeysFile %[2]s/authorized_keys
PidFile %[2]s/sshd.pid
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
UsePAM no
StrictModes no
LogLevel VERBOSE
`

// startSSHD starts sshd in a private mount namespace (its privilege-separation directory
// /run/sshd lives on a tmpfs there, so the host's /run is left alone); t.Cleanup stops it and
// its sessions, and prints its log if the test failed.
func startSSHD(t *testing.T, authorized ssh.PublicKey) *sshServer {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: sshd runs in its own mount namespace")
	}
	sshd, err := exec.LookPath("sshd")
	if err != nil {
		if sshd, err = exec.LookPath("/usr/sbin/sshd"); err != nil {
			t.Skip("sshd is not installed (apt-get install openssh-server)")
		}
	}
	if _, err := exec.LookPath("git-upload-pack"); err != nil {
		t.Skip("git-upload-pack is not installed (apt-get install git)")
	}
	u, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	if locked, err := accountLocked(u.Username); err == nil && locked {
		t.Skipf("the password field of %s is locked (\"!\"): sshd without PAM refuses key logins to it", u.Username)
	}
	dir := t.TempDir()
	host, hostPEM := newSigner(t)
	if err := os.WriteFile(filepath.Join(dir, "host_ed25519"), hostPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "authorized_keys"), ssh.MarshalAuthorizedKey(authorized), 0o600); err != nil {
		t.Fatal(err)
	}
	// A free port can be taken by someone else before sshd binds it: try a few.
	var lastErr error
	for range 3 {
		port, err := freeLoopbackPort()
		if err != nil {
			t.Fatal(err)
		}
		cfg := filepath.Join(dir, "sshd_config")
		if err := os.WriteFile(cfg, fmt.Appendf(nil, sshdConfigTemplate, port, dir), 0o600); err != nil {
			t.Fatal(err)
		}
		addr := fmt.Sprintf("127.0.0.1:%d", port)
		if lastErr = runSSHD(t, sshd, cfg, addr); lastErr == nil {
			return &sshServer{addr: addr, user: u.Username, hostKey: host.PublicKey()}
		}
	}
	t.Fatalf("starting sshd: %v", lastErr)
	return nil
}

// runSSHD starts sshd with cfg and waits until addr accepts connections.
func runSSHD(t *testing.T, sshd, cfg, addr string) error {
	script := `mount -t tmpfs -o mode=0755 tmpfs /run && mkdir -m 0755 /run/sshd && exec "$0" -D -e -f "$1"`
	cmd := exec.Command("sh", "-c", script, sshd, cfg)
	log := &testutil.SyncBuffer{}
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Unshareflags: syscall.CLONE_NEWNS}
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	stop := func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		c, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
		if err == nil {
			c.Close()
			t.Cleanup(func() {
				stop()
				if t.Failed() {
					t.Logf("sshd log:\n%s", log.String())
				}
			})
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("sshd exited: %s", bytes.TrimSpace([]byte(log.String())))
		case <-ctx.Done():
			stop()
			return fmt.Errorf("waiting for sshd on %s: %w; log:\n%s", addr, err, log.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func freeLoopbackPort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// accountLocked reports whether name's password field in /etc/shadow starts with "!".
func accountLocked(name string) (bool, error) {
	data, err := os.ReadFile("/etc/shadow")
	if err != nil {
		return false, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.SplitN(line, ":", 3); len(f) == 3 && f[0] == name {
			return strings.HasPrefix(f[1], "!"), nil
		}
	}
	return false, errors.New("no shadow entry")
}

func writeKnownHosts(t *testing.T, file, host string, key ssh.PublicKey) {
	t.Helper()
	line := knownhosts.Line([]string{knownhosts.Normalize(host)}, key)
	if err := os.WriteFile(file, []byte(line+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestSyncOverSSH syncs from a real sshd: the operator's key logs in, the host key is checked
// against known_hosts, and a host key that does not match stops the sync with nothing applied.
func TestSyncOverSSH(t *testing.T) {
	operator, operatorPEM := newSigner(t)
	srv := startSSHD(t, operator.PublicKey())
	st := storetest.NewStore(t)
	f := newGitFixture(t)
	f.write("a.yaml", configMap("default", "a", "1"))
	good := f.commitPush("a", "main")

	dir := t.TempDir()
	keyFile, knownHostsFile := filepath.Join(dir, "id_ed25519"), filepath.Join(dir, "known_hosts")
	if err := os.WriteFile(keyFile, operatorPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	writeKnownHosts(t, knownHostsFile, srv.addr, srv.hostKey)
	repo := fmt.Sprintf("ssh://%s@%s%s", srv.user, srv.addr, f.bare)
	s := newSyncer(t, f, st, func(c *Config) {
		c.Repo, c.SSHKeyFile, c.KnownHostsFile = repo, keyFile, knownHostsFile
	})

	// A matching known_hosts: the commit is applied.
	mustSync(t, s)
	if diff := cmp.Diff([]string{"default/a"}, keys(names(t, st, resource.ConfigMaps))); diff != "" {
		t.Fatalf("config maps after the sync over ssh (-want +got):\n%s", diff)
	}
	if status := gitSyncStatus(t, st, "default"); status.State != bosunv1.SyncStateSynced || status.Applied.SHA != good {
		t.Fatalf("status = %s %q, want Synced at %s", status.State, status.Message, good)
	}
	before := resourceVersions(names(t, st, resource.ConfigMaps))

	// The server presents another key than known_hosts pins: nothing of the new commit lands.
	f.write("b.yaml", configMap("default", "b", "1"))
	f.write("a.yaml", configMap("default", "a", "changed"))
	next := f.commitPush("b", "main")
	impostor, _ := newSigner(t)
	for _, tc := range []struct {
		name  string
		host  string
		key   ssh.PublicKey
		wants []string
	}{
		{"wrong host key", srv.addr, impostor.PublicKey(), []string{
			"the SSH host key of " + srv.addr + " does not match its entry in " + knownHostsFile,
			"replace the line for " + srv.addr, "ssh-keyscan -p ",
		}},
		{"unknown host", "git.example.com:22", srv.hostKey, []string{
			"the SSH host " + srv.addr + " is not in " + knownHostsFile, "add its key",
		}},
	} {
		writeKnownHosts(t, knownHostsFile, tc.host, tc.key)
		if _, err := s.SyncOnce(context.Background()); err == nil {
			t.Fatalf("%s: the sync succeeded", tc.name)
		}
		if diff := cmp.Diff(before, resourceVersions(names(t, st, resource.ConfigMaps))); diff != "" {
			t.Errorf("%s: objects changed (-before +after):\n%s", tc.name, diff)
		}
		status := gitSyncStatus(t, st, "default")
		if status.State != bosunv1.SyncStateFailed || status.Applied.SHA != good {
			t.Errorf("%s: status = %s (applied %s), want Failed with %s applied", tc.name, status.State, status.Applied.SHA, good)
		}
		wants := append(tc.wants, "the last good commit "+shortSHA(good)+" stays applied")
		for _, w := range wants {
			if !strings.Contains(status.Message, w) {
				t.Errorf("%s: status message %q does not say %q", tc.name, status.Message, w)
			}
		}
	}

	// The corrected file is read by the next sync; no restart needed.
	writeKnownHosts(t, knownHostsFile, srv.addr, srv.hostKey)
	mustSync(t, s)
	if status := gitSyncStatus(t, st, "default"); status.State != bosunv1.SyncStateSynced || status.Applied.SHA != next {
		t.Errorf("status after fixing known_hosts = %s %q, want Synced at %s", status.State, status.Message, next)
	}
	if diff := cmp.Diff([]string{"default/a", "default/b"}, keys(names(t, st, resource.ConfigMaps))); diff != "" {
		t.Errorf("config maps after fixing known_hosts (-want +got):\n%s", diff)
	}
}
