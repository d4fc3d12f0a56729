// Package e2eutil holds what the end-to-end test packages share (a Go test package cannot import
// another's): the binary under test, a `bosun operator` process with its log, free ports and log
// tails. Git repositories come from internal/testutil.
package e2eutil

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
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// BosunBin is the binary under test (BOSUN_BIN); the test skips when it is not set or when not
// running as root. hint says how to get one.
func BosunBin(t testing.TB, hint string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	bin := os.Getenv("BOSUN_BIN")
	if bin == "" {
		t.Skipf("BOSUN_BIN is not set: %s", hint)
	}
	return bin
}

// Operator is a `bosun operator` in its own process group, logging to LogPath.
type Operator struct {
	cmd     *exec.Cmd
	LogPath string
	done    chan struct{}
}

// StartOperator starts `bin operator --data-dir dataDir args...`. It is stopped when the test
// ends; the tail of its log is printed when the test failed, and the log is copied into
// $BOSUN_E2E_KEEP_LOGS when that is set.
func StartOperator(t testing.TB, bin, dataDir string, args ...string) *Operator {
	t.Helper()
	logPath := filepath.Join(dataDir, fmt.Sprintf("operator-%d.log", time.Now().UnixNano()))
	f, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, append([]string{"operator", "--data-dir", dataDir}, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Stdout, cmd.Stderr = f, f
	if err := childproc.Start(cmd); err != nil {
		f.Close()
		t.Fatal(err)
	}
	p := &Operator{cmd: cmd, LogPath: logPath, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); f.Close(); close(p.done) }()
	t.Cleanup(func() {
		p.Stop()
		if d := os.Getenv("BOSUN_E2E_KEEP_LOGS"); d != "" {
			if b, err := os.ReadFile(logPath); err == nil {
				_ = os.WriteFile(filepath.Join(d, filepath.Base(logPath)), b, 0o644)
			}
		}
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("operator log %s (tail):\n%s", logPath, Tail(string(b), 150))
		}
	})
	return p
}

// Pid is the operator's process id.
func (p *Operator) Pid() int { return p.cmd.Process.Pid }

// Done is closed when the operator has exited.
func (p *Operator) Done() <-chan struct{} { return p.done }

// Stop sends SIGTERM to the operator's process group, SIGKILL after 10 s, and waits for it.
func (p *Operator) Stop() {
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

// Tail is the last lines of s.
func Tail(s string, lines int) string {
	parts := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(parts) > lines {
		parts = parts[len(parts)-lines:]
	}
	return strings.Join(parts, "\n")
}

// FreePort is a TCP port on addr that was free a moment ago.
func FreePort(t testing.TB, addr string) int {
	t.Helper()
	l, err := net.Listen("tcp", net.JoinHostPort(addr, "0"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// WaitFor polls cond every interval until it holds or ctx ends; the failure names what and the
// last state cond described.
func WaitFor(t testing.TB, ctx context.Context, what string, interval time.Duration, cond func() (bool, string)) {
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
		case <-time.After(interval):
		}
	}
}

// Clients are the API clients of an operator's admin kubeconfig.
type Clients struct {
	Kube *kubernetes.Clientset
	Dyn  dynamic.Interface
}

// MachinesGVR is Bosun's Machine resource, for the dynamic client.
var MachinesGVR = schema.GroupVersionResource{Group: "bosun.dev", Version: "v1alpha1", Resource: "machines"}

// NewClients waits for DATA-DIR/admin.kubeconfig and builds the clients from it.
func NewClients(t testing.TB, ctx context.Context, dataDir string) Clients {
	t.Helper()
	path := filepath.Join(dataDir, "admin.kubeconfig")
	WaitFor(t, ctx, "the admin kubeconfig", 100*time.Millisecond, func() (bool, string) {
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
	return Clients{Kube: kube, Dyn: dyn}
}

// StartedAt is when the pod's running container started (zero when none runs).
func StartedAt(p corev1.Pod) time.Time {
	for _, c := range p.Status.ContainerStatuses {
		if c.State.Running != nil {
			return c.State.Running.StartedAt.Time
		}
	}
	return time.Time{}
}
