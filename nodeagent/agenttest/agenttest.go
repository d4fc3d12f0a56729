// Package agenttest runs a real one-node cluster for the agent's integration tests and
// benchmarks: an in-process operator (embedded etcd, a Git repository pushed with the git CLI), a
// private containerd, and the node agent joined with a bootstrap token and run as a child process
// (the test binary re-executed), so that a kill -9 is real.
//
//	TestMain ──Main──> re-exec in a new network namespace (iptables, bridge, routes stay private)
//	                   └── child with AgentEnv set ──> nodeagent.Run(config) (RunAgentIfChild)
//
// Everything lives in temp dirs and in the test's network namespace, which disappears with it.
package agenttest

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/bosun-gitops/bosun/internal/childproc"
	"github.com/bosun-gitops/bosun/internal/memtrim"
	"github.com/bosun-gitops/bosun/internal/testutil"
	"github.com/bosun-gitops/bosun/nodeagent"
	"github.com/bosun-gitops/bosun/nodeagent/runtime/runtimetest"
	"github.com/bosun-gitops/bosun/operator"
	"github.com/vishvananda/netlink"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// Environment variables of the re-executed test binary.
const (
	// AgentEnv holds the agent config path: the process runs the agent instead of the tests.
	AgentEnv = "BOSUN_AGENTTEST_AGENT_CONFIG"
	netnsEnv = "BOSUN_AGENTTEST_NETNS"
)

// Main is TestMain's body: as root it re-executes the test binary in a new network namespace
// (loopback up) so that the agent's bridge, iptables rules and routes never touch the host; in
// the agent child it runs the agent; else it runs the tests.
func Main(m *testing.M) {
	if path := os.Getenv(AgentEnv); path != "" {
		os.Exit(runAgent(path))
	}
	if os.Geteuid() == 0 && os.Getenv(netnsEnv) == "" {
		cmd := exec.Command(os.Args[0], os.Args[1:]...)
		cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
		cmd.Env = append(os.Environ(), netnsEnv+"=1")
		cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET}
		if err := childproc.Run(cmd); err != nil {
			if ee, ok := err.(*exec.ExitError); ok {
				os.Exit(ee.ExitCode())
			}
			fmt.Fprintf(os.Stderr, "agenttest: re-executing the tests in a network namespace: %v\n", err)
			os.Exit(2)
		}
		os.Exit(0)
	}
	if os.Getenv(netnsEnv) != "" {
		if lo, err := netlink.LinkByName("lo"); err == nil {
			_ = netlink.LinkSetUp(lo)
		}
	}
	os.Exit(m.Run())
}

func runAgent(path string) int {
	cfg, err := nodeagent.LoadConfig(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	deps := nodeagent.DefaultDeps(cfg)
	a, err := nodeagent.New(cfg, deps)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	go func() {
		<-a.Ready()
		fmt.Fprintln(os.Stderr, "AGENT READY")
	}()
	if err := a.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "agent:", err)
		return 1
	}
	return 0
}

// Options configure Start.
type Options struct {
	// Files are the repository's first commit (path → content).
	Files map[string]string
	// Images are image archives (*.tar) put in the agent's offline images dir.
	Images []string
	// PlainHTTP registries the agent pulls from.
	PlainHTTP []string
	// AgentBinary, when set, is a bosun binary run as `bosun agent --config` instead of the
	// re-executed test binary (which carries the operator and the tests: its RSS is not the
	// agent's).
	AgentBinary string
}

// Cluster is a running one-node cluster.
type Cluster struct {
	Admin  kubernetes.Interface
	Repo   *testutil.GitRepo
	Op     *operator.Operator
	Socket string
	// OperatorLogPath is the in-process operator's log (info level).
	OperatorLogPath string
	AgentDir        string
	RunDir          string
	ConfigPath      string
	NodeName        string
	binary          string

	t     testing.TB
	mu    sync.Mutex
	agent *exec.Cmd
	done  chan struct{}
}

// Start starts containerd, the operator syncing a new Git repository with opts.Files, and joins
// the agent's credentials (the agent itself starts with StartAgent). It skips when not root or
// when containerd, runc or git are missing.
func Start(t testing.TB, opts Options) *Cluster {
	t.Helper()
	runtimetest.SkipUnlessRoot(t)
	if os.Getenv(netnsEnv) == "" {
		t.Skip("skipping: the test binary must run through agenttest.Main (TestMain) for a private network namespace")
	}
	if _, err := os.Stat("/usr/lib/cni/bridge"); err != nil {
		t.Skip("skipping: CNI plugins missing (apt-get install containernetworking-plugins)")
	}
	socket := runtimetest.StartContainerd(t)
	repo := testutil.NewGitRepo(t)
	repo.Write(opts.Files)
	repo.CommitAndPush("initial")

	ctx, cancel := context.WithCancel(context.Background())
	opLogPath := filepath.Join(t.TempDir(), "operator.log")
	opLog, err := os.Create(opLogPath)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() { opLog.Close() })
	op, err := operator.New(operator.Config{
		DataDir: t.TempDir(), Repo: repo.Bare, Branch: "main", Interval: time.Second,
		Listen: "127.0.0.1:0", Logger: slog.New(slog.NewTextHandler(opLog, &slog.HandlerOptions{Level: slog.LevelInfo})),
	})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	opDone := make(chan error, 1)
	go func() { opDone <- op.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-opDone })
	select {
	case <-op.Ready():
	case err := <-opDone:
		t.Fatalf("operator: %v", err)
	case <-time.After(2 * time.Minute):
		t.Fatal("operator not ready after 2m")
	}
	rc, err := clientcmd.BuildConfigFromFlags("", op.Server().AdminKubeconfigPath())
	if err != nil {
		t.Fatal(err)
	}
	rc.QPS, rc.Burst = 1000, 1000 // benchmarks create pods in bursts
	admin := kubernetes.NewForConfigOrDie(rc)

	// Join as `bosun agent --server --token` does, with a token as `bosun token create` stores.
	tokenSecret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "bootstrap-token-agtest", Namespace: "kube-system"},
		Type:       "bootstrap.kubernetes.io/token",
		Data: map[string][]byte{"token-id": []byte("agtest"), "token-secret": []byte("0123456789abcdef"),
			"usage-bootstrap-authentication": []byte("true"), "expiration": []byte(time.Now().Add(time.Hour).UTC().Format(time.RFC3339))},
	}
	if _, err := admin.CoreV1().Secrets("kube-system").Create(ctx, tokenSecret, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	agentDir := t.TempDir()
	runDir := t.TempDir()
	for _, img := range opts.Images {
		if err := os.MkdirAll(filepath.Join(agentDir, "images"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(img, filepath.Join(agentDir, "images", filepath.Base(img))); err != nil {
			t.Fatal(err)
		}
	}
	cfg, err := nodeagent.Join(ctx, nodeagent.JoinOptions{
		Server: op.Server().URL(), Token: "agtest.0123456789abcdef", NodeName: "node-1", DataDir: agentDir,
		NodeIP: "127.0.0.1", CACertHash: nodeagent.CACertHash(op.Server().CA().Cert),
		Template: nodeagent.Config{ContainerdSocket: socket, Listen: "127.0.0.1:0", DebugListen: "127.0.0.1:0",
			RunDir: runDir, Registry: nodeagent.RegistryConfig{PlainHTTP: opts.PlainHTTP}},
	})
	if err != nil {
		t.Fatalf("join: %v", err)
	}
	// After the agent stopped (cleanups run last-in first-out): a failed test may leave pods whose
	// pinned namespaces and tmpfs volumes are mounts on the host's mount namespace.
	t.Cleanup(func() { unmountUnder(t, runDir); unmountUnder(t, agentDir) })
	c := &Cluster{Admin: admin, Repo: repo, Op: op, Socket: socket, OperatorLogPath: opLogPath, AgentDir: agentDir, RunDir: runDir,
		ConfigPath: filepath.Join(agentDir, nodeagent.ConfigFileName), NodeName: cfg.NodeName, binary: opts.AgentBinary, t: t}
	t.Cleanup(c.StopAgent)
	return c
}

func unmountUnder(t testing.TB, dir string) {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return
	}
	var mounts []string
	for _, l := range strings.Split(string(data), "\n") {
		if f := strings.Fields(l); len(f) > 4 && strings.HasPrefix(f[4], dir+"/") {
			mounts = append(mounts, f[4])
		}
	}
	for i := len(mounts) - 1; i >= 0; i-- {
		if err := syscall.Unmount(mounts[i], syscall.MNT_DETACH); err != nil {
			t.Logf("cleanup: unmounting %s: %v", mounts[i], err)
		}
	}
}

// AgentRSS is the agent process's resident set size in bytes (VmRSS).
func (c *Cluster) AgentRSS() (int64, error) { return c.AgentMemory("VmRSS") }

// AgentMemory reads one size field of /proc/<agent>/status ("VmRSS", "RssAnon", "RssFile") in
// bytes.
func (c *Cluster) AgentMemory(field string) (int64, error) {
	pid := c.AgentPid()
	if pid == 0 {
		return 0, fmt.Errorf("no agent running")
	}
	return memtrim.StatusBytes(pid, field)
}

// BuildBosun builds ./cmd/bosun of the module being tested into a temp dir and returns its path.
func BuildBosun(t testing.TB) string {
	t.Helper()
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatalf("go env GOMOD: %v", err)
	}
	root := filepath.Dir(strings.TrimSpace(string(out)))
	bin := filepath.Join(t.TempDir(), "bosun")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/bosun")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0") // as `make build`
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building bosun: %v\n%s", err, out)
	}
	return bin
}

// StartAgent starts the agent as a child process and waits until it is ready.
func (c *Cluster) StartAgent() {
	t := c.t
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), AgentEnv+"="+c.ConfigPath)
	if c.binary != "" {
		cmd = exec.Command(c.binary, "agent", "--config", c.ConfigPath)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	logFile, err := os.OpenFile(filepath.Join(c.AgentDir, "agent.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if err := childproc.Start(cmd); err != nil {
		t.Fatalf("starting the agent: %v", err)
	}
	ready := make(chan struct{})
	done := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		once := sync.Once{}
		for sc.Scan() {
			line := sc.Text()
			fmt.Fprintln(logFile, line)
			if line == "AGENT READY" || strings.Contains(line, `msg="agent ready"`) {
				once.Do(func() { close(ready) })
			}
		}
		_, _ = io.Copy(io.Discard, stderr)
		_ = cmd.Wait()
		logFile.Close()
		close(done)
	}()
	c.mu.Lock()
	c.agent, c.done = cmd, done
	c.mu.Unlock()
	select {
	case <-ready:
	case <-done:
		t.Fatalf("agent exited at start:\n%s", c.AgentLog(40))
	case <-time.After(2 * time.Minute):
		t.Fatalf("agent not ready after 2m:\n%s", c.AgentLog(40))
	}
}

// AgentMetrics fetches the running agent's /metrics (Prometheus text format) from the debug
// address its "agent ready" log line names.
func (c *Cluster) AgentMetrics() (string, error) {
	var addr string
	for _, l := range strings.Split(c.AgentLog(100000), "\n") {
		if !strings.Contains(l, `msg="agent ready"`) {
			continue
		}
		for _, f := range strings.Fields(l) {
			if v, ok := strings.CutPrefix(f, "debug="); ok {
				addr = v // the last start's
			}
		}
	}
	if addr == "" || addr == "off" {
		return "", fmt.Errorf("the agent's log names no debug address")
	}
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET /metrics: %s", resp.Status)
	}
	return string(body), nil
}

// AgentPid is the running agent's process id (0 when none).
func (c *Cluster) AgentPid() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.agent == nil {
		return 0
	}
	return c.agent.Process.Pid
}

// KillAgent sends SIGKILL to the agent and waits for it to die.
func (c *Cluster) KillAgent() { c.signalAgent(syscall.SIGKILL) }

// StopAgent stops the agent with SIGTERM (SIGKILL after 30 s). Containers keep running.
func (c *Cluster) StopAgent() { c.signalAgent(syscall.SIGTERM) }

func (c *Cluster) signalAgent(sig syscall.Signal) {
	c.mu.Lock()
	cmd, done := c.agent, c.done
	c.agent = nil
	c.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
	}
}

// AgentLog returns the last n lines of the agent's log.
// OperatorLog returns the last n lines of the operator's log.
func (c *Cluster) OperatorLog(n int) string {
	data, _ := os.ReadFile(c.OperatorLogPath)
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// AgentLog returns the last n lines of the agent's log.
func (c *Cluster) AgentLog(n int) string {
	data, _ := os.ReadFile(filepath.Join(c.AgentDir, "agent.log"))
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Pods lists the pods of namespace with the label selector.
func (c *Cluster) Pods(ns, selector string) []corev1.Pod {
	l, err := c.Admin.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		c.t.Fatalf("listing pods: %v", err)
	}
	return l.Items
}

// WaitPods polls the pods of ns matching selector until ok accepts them, failing after timeout
// with what was last seen.
func (c *Cluster) WaitPods(ns, selector string, timeout time.Duration, what string, ok func([]corev1.Pod) bool) []corev1.Pod {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		pods := c.Pods(ns, selector)
		if ok(pods) {
			return pods
		}
		if time.Now().After(deadline) {
			var b strings.Builder
			for _, p := range pods {
				fmt.Fprintf(&b, "  %s phase=%s ip=%s conds=%v\n", p.Name, p.Status.Phase, p.Status.PodIP, p.Status.Conditions)
				for _, cs := range p.Status.ContainerStatuses {
					fmt.Fprintf(&b, "    %s restarts=%d state=%+v last=%+v\n", cs.Name, cs.RestartCount, cs.State, cs.LastTerminationState)
				}
			}
			c.t.Fatalf("%s/%s: %s not reached after %v; pods:\n%sagent log:\n%s\noperator log:\n%s", ns, selector, what, timeout, b.String(), c.AgentLog(30), c.OperatorLog(60))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// Logs reads a container's log through the API (which proxies to the agent with mutual TLS).
func (c *Cluster) Logs(ns, pod, container string, previous bool) (string, error) {
	data, err := c.Admin.CoreV1().Pods(ns).GetLogs(pod, &corev1.PodLogOptions{Container: container, Previous: previous}).Do(context.Background()).Raw()
	return string(data), err
}
