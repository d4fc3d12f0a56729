//go:build e2evm

package vm_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bosun-gitops/bosun/internal/childproc"
	bosunv1 "github.com/bosun-gitops/bosun/repo-layout/v1alpha1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// The harness below follows e2e/bootstrap's (a Go test package cannot import another's).

// bosunBin is the binary under test; the test skips without it.
func bosunBin(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (debootstrap, qemu)")
	}
	bin := os.Getenv("BOSUN_BIN")
	if bin == "" {
		t.Skip("BOSUN_BIN is not set: run `make e2e-vm`, or build bosun and point BOSUN_BIN at it")
	}
	return bin
}

// gitRepo is a bare repository the operator syncs from and a work tree that pushes to it.
type gitRepo struct{ bare, work string }

var gitEnv = []string{"GIT_AUTHOR_NAME=E2E", "GIT_AUTHOR_EMAIL=e2e@localhost",
	"GIT_COMMITTER_NAME=E2E", "GIT_COMMITTER_EMAIL=e2e@localhost"}

func newGitRepo(t *testing.T) *gitRepo {
	t.Helper()
	dir := t.TempDir()
	r := &gitRepo{bare: filepath.Join(dir, "fleet.git"), work: filepath.Join(dir, "fleet")}
	r.git(t, dir, "init", "--quiet", "--bare", "--initial-branch=main", r.bare)
	r.git(t, dir, "init", "--quiet", "--initial-branch=main", r.work)
	r.git(t, r.work, "remote", "add", "origin", r.bare)
	return r
}

func (r *gitRepo) git(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), gitEnv...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func (r *gitRepo) write(t *testing.T, rel, content string) {
	t.Helper()
	p := filepath.Join(r.work, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func (r *gitRepo) remove(t *testing.T, rel string) {
	t.Helper()
	if err := os.Remove(filepath.Join(r.work, rel)); err != nil {
		t.Fatal(err)
	}
}

func (r *gitRepo) push(t *testing.T, msg string) {
	t.Helper()
	r.git(t, r.work, "add", "-A")
	r.git(t, r.work, "commit", "--quiet", "--allow-empty", "-m", msg)
	r.git(t, r.work, "push", "--quiet", "origin", "main")
}

// operatorProc is a `bosun operator` in its own process group, logging to a file.
type operatorProc struct {
	cmd  *exec.Cmd
	log  string
	done chan struct{}
}

func startOperator(t *testing.T, bin, dataDir string, args ...string) *operatorProc {
	t.Helper()
	logPath := filepath.Join(dataDir, "operator.log")
	f, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, append([]string{"operator", "--data-dir", dataDir}, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Stdout, cmd.Stderr = f, f
	if err := childproc.Start(cmd); err != nil {
		t.Fatal(err)
	}
	p := &operatorProc{cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); f.Close(); close(p.done) }()
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("operator log %s (tail):\n%s", logPath, tail(string(b), 80))
		}
	})
	return p
}

// stop kills the operator's process group and waits for it.
func (p *operatorProc) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
}

func tail(s string, lines int) string {
	parts := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(parts) > lines {
		parts = parts[len(parts)-lines:]
	}
	return strings.Join(parts, "\n")
}

// freePort is a free TCP port on addr.
func freePort(t *testing.T, addr string) int {
	t.Helper()
	l, err := net.Listen("tcp", net.JoinHostPort(addr, "0"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// clients are the API clients of the operator's admin kubeconfig.
type clients struct {
	kube *kubernetes.Clientset
	dyn  dynamic.Interface
}

var machinesGVR = schema.GroupVersionResource{Group: "bosun.dev", Version: "v1alpha1", Resource: "machines"}

func newClients(t *testing.T, ctx context.Context, dataDir string) clients {
	t.Helper()
	path := filepath.Join(dataDir, "admin.kubeconfig")
	waitFor(t, ctx, "the admin kubeconfig", func() (bool, string) {
		_, err := os.Stat(path)
		return err == nil, fmt.Sprint(err)
	})
	cfg, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		t.Fatal(err)
	}
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return clients{kube: kube, dyn: dyn}
}

// machine gets one Machine; exists is false when it is gone.
func (c clients) machine(ctx context.Context, name string) (m bosunv1.Machine, exists bool, err error) {
	u, err := c.dyn.Resource(machinesGVR).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		if apierrors.IsNotFound(err) {
			return m, false, nil
		}
		return m, false, err
	}
	err = runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &m)
	return m, err == nil, err
}

// waitFor polls cond every 500 ms until it holds or ctx ends; the failure names what and the last
// state cond described.
func waitFor(t *testing.T, ctx context.Context, what string, cond func() (bool, string)) {
	t.Helper()
	last := ""
	for {
		ok, state := cond()
		if ok {
			return
		}
		last = state
		select {
		case <-ctx.Done():
			t.Fatalf("waiting for %s: %v; last state: %s", what, ctx.Err(), last)
		case <-time.After(500 * time.Millisecond):
		}
	}
}
