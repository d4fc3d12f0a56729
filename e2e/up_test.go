//go:build e2e

package e2e

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bosun-gitops/bosun/internal/testutil"
)

// upUID is the user `bosun up` runs as when the test runs as root; otherUID is a third user that
// must not reach its etcd.
const (
	upUID    = 65534 // nobody
	otherUID = 65533
)

// asUser runs commands as uid (root's test) or as the current user (cred nil).
type asUser struct {
	cred *syscall.Credential
	home string
}

func (u asUser) command(dir, name string, args ...string) *exec.Cmd {
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + u.home, "GIT_CONFIG_NOSYSTEM=1"}, gitIdentity...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: u.cred}
	return cmd
}

func (u asUser) mustRun(t *testing.T, dir, name string, args ...string) string {
	t.Helper()
	out, err := u.command(dir, name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TestUpWithoutRoot runs `bosun up` as a developer's `make run` without root does: it warns that
// the agent needs root and starts the control plane alone, creates the local repository, prints
// the banner, and a commit pushed in the work tree shows up in `bosun get`. It also checks that
// the embedded etcd is private to that user: its only TCP listener is the API server, and the
// etcd socket is 0600 in a 0700 directory that another user cannot connect to.
func TestUpWithoutRoot(t *testing.T) {
	bin := bosunBin(t)
	base, err := os.MkdirTemp("", "bosun-up-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	dataDir := filepath.Join(base, "data")
	if err := os.Mkdir(dataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	user := asUser{home: dataDir}
	asRoot := os.Geteuid() == 0
	if asRoot {
		user.cred = &syscall.Credential{Uid: upUID, Gid: upUID}
		if err := os.Chown(dataDir, upUID, upUID); err != nil {
			t.Fatal(err)
		}
		// The binary under test may sit where that user cannot execute it.
		if err := user.command(base, bin, "version").Run(); err != nil {
			exe := filepath.Join(base, "bosun")
			copyFile(t, bin, exe)
			bin = exe
		}
	}

	port := freePort(t)
	out := &testutil.SyncBuffer{}
	up := user.command(base, bin, "up", "--data-dir", dataDir, "--listen", fmt.Sprintf("127.0.0.1:%d", port), "--interval", "1h")
	up.Stdout, up.Stderr = out, out
	if err := up.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = up.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = syscall.Kill(-up.Process.Pid, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(15 * time.Second):
			_ = syscall.Kill(-up.Process.Pid, syscall.SIGKILL)
			<-exited
		}
		if t.Failed() {
			t.Logf("bosun up output:\n%s", tail(out.String(), 150))
		}
	})

	eventually(t, 2*time.Minute, "the banner of bosun up", func() error {
		select {
		case <-exited:
			t.Fatalf("bosun up exited (%v) before printing its banner", up.ProcessState)
		default:
		}
		if !strings.Contains(out.String(), "Bosun is up.") {
			return errors.New("no banner yet")
		}
		return nil
	})
	if asRoot {
		for _, want := range []string{
			"not root: the local agent needs root to run containers; starting the operator only — run as root to run pods",
			"No node agent runs here (not root)",
		} {
			if !strings.Contains(out.String(), want) {
				t.Errorf("bosun up output lacks %q", want)
			}
		}
	}
	work := filepath.Join(dataDir, "repo")
	for _, p := range []string{filepath.Join(dataDir, "repo.git", "HEAD"), filepath.Join(work, ".git")} {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("the local repository: %v", err)
		}
	}
	if !strings.Contains(out.String(), work) {
		t.Errorf("the banner does not name the work tree %s", work)
	}

	eventually(t, 90*time.Second, "first sync", func() error {
		o, e, code := cli(t, bin, dataDir, "status")
		if code != 0 || !strings.Contains(o, "Synced") {
			return errorf("exit %d: %s%s", code, o, e)
		}
		return nil
	})
	deps := getList(t, bin, dataDir, "deployments", "-A")
	if len(deps.Items) == 0 {
		t.Fatal("the starter repository's Deployment did not appear")
	}
	ns := deps.Items[0].Metadata.Namespace

	// Push a commit from the work tree, as the banner says.
	cm := fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: pushed-by-hand\n  namespace: %s\ndata: {color: green}\n", ns)
	if err := os.WriteFile(filepath.Join(work, "apps", "pushed.yaml"), []byte(cm), 0o644); err != nil {
		t.Fatal(err)
	}
	if asRoot {
		if err := os.Chown(filepath.Join(work, "apps", "pushed.yaml"), upUID, upUID); err != nil {
			t.Fatal(err)
		}
	}
	user.mustRun(t, work, "git", "add", "-A")
	user.mustRun(t, work, "git", "commit", "--quiet", "-m", "add a ConfigMap")
	user.mustRun(t, work, "git", "push", "--quiet")
	if o, code := syncNow(t, bin, dataDir); code != 0 {
		t.Fatalf("bosun sync after the push: exit %d\n%s", code, o)
	}
	if cms := getList(t, bin, dataDir, "configmaps", "-n", ns); !hasName(cms, "pushed-by-hand") {
		t.Fatal("the ConfigMap pushed from the work tree is not in bosun get")
	}

	// The embedded etcd is private to the user running bosun up.
	etcdDir := filepath.Join(dataDir, "etcd")
	sock := filepath.Join(etcdDir, "client.sock")
	if fi, err := os.Stat(etcdDir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("%s: %v %v, want mode 0700", etcdDir, fi, err)
	}
	if fi, err := os.Lstat(sock); err != nil || fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != 0o600 {
		t.Errorf("%s: %v %v, want a 0600 socket", sock, fi, err)
	}
	ports, err := testutil.ListeningTCPPorts(up.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ports, []int{port}) {
		t.Errorf("bosun up listens on TCP ports %v, want only the API server's %d (etcd must not be on TCP)", ports, port)
	}
	if asRoot {
		if err := testutil.DialAs(otherUID, otherUID, "unix", sock); !errors.Is(err, syscall.EACCES) {
			t.Errorf("uid %d connecting to the etcd socket: %v, want permission denied", otherUID, err)
		}
		if err := testutil.DialAs(upUID, upUID, "unix", sock); err != nil {
			t.Errorf("uid %d (running bosun up) connecting to its etcd socket: %v", upUID, err)
		}
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	src, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		dst.Close()
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
}
