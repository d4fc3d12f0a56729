//go:build e2e

package bootstrap_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	bosunv1 "github.com/bosun-gitops/bosun/repo-layout/v1alpha1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// bosunBin is the binary under test; the test skips without it.
func bosunBin(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (namespace machines)")
	}
	bin := os.Getenv("BOSUN_BIN")
	if bin == "" {
		t.Skip("BOSUN_BIN is not set: build bosun and point BOSUN_BIN at it")
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
	logPath := filepath.Join(dataDir, fmt.Sprintf("operator-%d.log", time.Now().UnixNano()))
	f, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, append([]string{"operator", "--data-dir", dataDir}, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &operatorProc{cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); f.Close(); close(p.done) }()
	t.Cleanup(func() {
		p.stop()
		if d := os.Getenv("BOSUN_E2E_KEEP_LOGS"); d != "" {
			if b, err := os.ReadFile(logPath); err == nil {
				_ = os.WriteFile(filepath.Join(d, filepath.Base(logPath)), b, 0o644)
			}
		}
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("operator log %s (tail):\n%s", logPath, tail(string(b), 150))
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
	parts := strings.Split(s, "\n")
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

// machines lists the Machines ("" and an error text while the API is not up yet).
func (c clients) machines(ctx context.Context) (map[string]bosunv1.Machine, error) {
	list, err := c.dyn.Resource(machinesGVR).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	out := map[string]bosunv1.Machine{}
	for _, u := range list.Items {
		var m bosunv1.Machine
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &m); err != nil {
			return nil, err
		}
		out[m.Name] = m
	}
	return out, nil
}

// waitFor polls cond every 100 ms until it holds or ctx ends; the failure names what and the last
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
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// stepClock records, from the test's side, when each machine entered each phase/step.
type stepClock struct {
	mu    sync.Mutex
	start time.Time
	seen  map[string][]stepMark
}

type stepMark struct {
	at   time.Duration
	step string
}

func newStepClock() *stepClock { return &stepClock{start: time.Now(), seen: map[string][]stepMark{}} }

func (s *stepClock) observe(ms map[string]bosunv1.Machine) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Since(s.start)
	for name, m := range ms {
		cur := string(m.Status.Phase)
		if cur == "" {
			cur = "synced"
		}
		if m.Status.Step != "" {
			cur += "/" + m.Status.Step
		}
		marks := s.seen[name]
		if len(marks) == 0 || marks[len(marks)-1].step != cur {
			s.seen[name] = append(marks, stepMark{at: now, step: cur})
		}
	}
}

// breakdown is "step1 120ms, step2 300ms, ..., total" for one machine, from first sighting to Ready.
func (s *stepClock) breakdown(name string) (string, time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	marks := s.seen[name]
	var parts []string
	var total time.Duration
	for i, m := range marks {
		if i+1 < len(marks) {
			parts = append(parts, fmt.Sprintf("%s %s", m.step, (marks[i+1].at-m.at).Round(time.Millisecond)))
		}
		if strings.HasPrefix(m.step, string(bosunv1.MachineReady)) {
			total = m.at
			break
		}
	}
	return strings.Join(parts, ", "), total
}
