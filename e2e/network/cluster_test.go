//go:build e2e

package network_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bosun-gitops/bosun/e2e/e2eutil"
	"github.com/bosun-gitops/bosun/e2e/machines"
	"github.com/bosun-gitops/bosun/internal/testutil"
	"github.com/bosun-gitops/bosun/nodeagent"
	"github.com/containerd/containerd"
	"github.com/containerd/containerd/namespaces"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// labSubnet is this package's lab network; the bootstrap tests use the default one.
const labSubnet = "192.168.78.0/24"

// agentDataDir is the agents' data dir inside each machine (a per-machine directory).
const agentDataDir = "/var/lib/bosun/agent"

// bosunBin is the binary under test; the test skips without root or without it.
func bosunBin(t *testing.T) string {
	t.Helper()
	bin := e2eutil.BosunBin(t, "run `make e2e`, or build bosun and point BOSUN_BIN at it")
	for _, p := range []string{"/usr/bin/containerd", "/usr/lib/cni/bridge", "/usr/bin/docker-registry"} {
		if _, err := os.Stat(p); err != nil {
			t.Skipf("%s missing (make deps)", p)
		}
	}
	return bin
}

// phases records how long each step of the test took, for the log.
type phases struct {
	mu    sync.Mutex
	last  time.Time
	start time.Time
	lines []string
}

func newPhases() *phases { now := time.Now(); return &phases{last: now, start: now} }

func (p *phases) mark(t *testing.T, what string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	line := fmt.Sprintf("%-48s %6.1fs (at %5.1fs)", what, now.Sub(p.last).Seconds(), now.Sub(p.start).Seconds())
	p.lines = append(p.lines, line)
	p.last = now
	t.Log("timing: " + line)
}

// waitFor polls cond every 200 ms until it holds or ctx ends.
func waitFor(t *testing.T, ctx context.Context, what string, cond func() (bool, string)) {
	t.Helper()
	e2eutil.WaitFor(t, ctx, what, 200*time.Millisecond, cond)
}

// cluster is the operator on the lab's host address and one agent per machine.
type cluster struct {
	bin     string
	lab     *machines.Lab
	repo    *testutil.GitRepo
	dataDir string
	op      *e2eutil.Operator
	kube    kubernetes.Interface
	server  string
	agents  map[string]*machines.Process
	closed  bool // the test closed the lab itself
	// proxyMode is the agents' proxyMode: "iptables" or "nftables".
	proxyMode string
}

const clusterYAML = `apiVersion: bosun.dev/v1alpha1
kind: Cluster
metadata: {name: lab}
spec:
  podCIDR: 10.244.0.0/16
  serviceCIDR: 10.96.0.0/16
  clusterDomain: cluster.local
`

// startCluster starts the lab, the operator syncing a new repository and the operator's API
// client.
func startCluster(t *testing.T, ctx context.Context, ph *phases, proxyMode string) *cluster {
	t.Helper()
	bin := bosunBin(t)
	lab := machines.NewLab(t, machines.Config{N: 3, Subnet: labSubnet, HostLink: true, NoSSHD: true})
	ph.mark(t, "lab: 3 machines, containerd, registry")
	repo := testutil.NewGitRepo(t)
	repo.Write(map[string]string{"bosun.yaml": clusterYAML})
	repo.CommitAndPush("cluster")
	c := &cluster{bin: bin, lab: lab, repo: repo, dataDir: t.TempDir(), agents: map[string]*machines.Process{}, proxyMode: proxyMode}
	host := lab.HostAddr().String()
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		t.Fatal(err)
	}
	listen := l.Addr().String()
	l.Close()
	c.server = "https://" + listen
	c.op = e2eutil.StartOperator(t, bin, c.dataDir, "--repo", repo.Bare, "--interval", "1s", "--listen", listen,
		"--server-name", host, "--log-level", "debug")
	kubeconfig := filepath.Join(c.dataDir, "admin.kubeconfig")
	waitFor(t, ctx, "the admin kubeconfig", func() (bool, string) {
		select {
		case <-c.op.Done():
			t.Fatalf("the operator exited at start")
		default:
		}
		_, err := os.Stat(kubeconfig)
		return err == nil, fmt.Sprint(err)
	})
	rc, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	rc.QPS, rc.Burst = 100, 200
	c.kube = kubernetes.NewForConfigOrDie(rc)
	waitFor(t, ctx, "the API", func() (bool, string) {
		_, err := c.kube.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
		return err == nil, fmt.Sprint(err)
	})
	ph.mark(t, "operator: API up")
	t.Cleanup(func() {
		if t.Failed() && !c.closed {
			c.dumpState(t)
		}
	})
	return c
}

// cli runs the bosun CLI against the admin kubeconfig.
func (c *cluster) cli(t *testing.T, args ...string) (stdout, stderr string) {
	t.Helper()
	cmd := exec.Command(c.bin, append([]string{"--kubeconfig", filepath.Join(c.dataDir, "admin.kubeconfig")}, args...)...)
	var o, e strings.Builder
	cmd.Stdout, cmd.Stderr = &o, &e
	if err := cmd.Run(); err != nil {
		t.Fatalf("bosun %s: %v\n%s%s", strings.Join(args, " "), err, o.String(), e.String())
	}
	return o.String(), e.String()
}

// machineBin is where each machine finds the binary under test (copied into its private /tmp).
const machineBin = "/tmp/bosun"

func copyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

var caHashRE = regexp.MustCompile(`--ca-cert-hash (sha256:[0-9a-f]{64})`)

// joinAgents joins one agent per machine with a token from `bosun token create` (the agent
// writes its credentials and agent.yaml), then restarts each with --config and the lab
// registry allowed over plain HTTP: the join flags have no registry option.
func (c *cluster) joinAgents(t *testing.T, ctx context.Context) {
	t.Helper()
	// The checkout may live under /tmp, which is private to each machine: give every machine its
	// own copy of the binary under test.
	for _, m := range c.lab.Machines() {
		if err := copyFile(c.bin, m.HostPath(machineBin), 0o755); err != nil {
			t.Fatalf("copying %s into machine %s: %v", c.bin, m.Name(), err)
		}
	}
	token, hint := c.cli(t, "token", "create", "--ttl", "1h", "--description", "network e2e")
	token = strings.TrimSpace(token)
	m := caHashRE.FindStringSubmatch(hint)
	if m == nil {
		t.Fatalf("bosun token create printed no --ca-cert-hash:\n%s", hint)
	}
	var wg sync.WaitGroup
	errs := make([]error, len(c.lab.Machines()))
	procs := make([]*machines.Process, len(c.lab.Machines()))
	for i, mach := range c.lab.Machines() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			procs[i], errs[i] = c.joinAgent(ctx, mach, token, m[1])
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("agent on %s: %v", c.lab.Machines()[i].Name(), err)
		}
		c.agents[c.lab.Machines()[i].Name()] = procs[i]
	}
}

func (c *cluster) joinAgent(ctx context.Context, m *machines.Machine, token, caHash string) (*machines.Process, error) {
	join, err := m.Start(context.Background(), machineBin, "agent", "--server", c.server, "--token", token,
		"--ca-cert-hash", caHash, "--node-name", m.Name(), "--data-dir", agentDataDir)
	if err != nil {
		return nil, err
	}
	cfgPath := m.HostPath(filepath.Join(agentDataDir, nodeagent.ConfigFileName))
	for {
		if _, err := os.Stat(cfgPath); err == nil {
			break
		}
		select {
		case <-join.Done():
			b, _ := os.ReadFile(join.LogPath())
			return nil, fmt.Errorf("the joining agent exited:\n%s", e2eutil.Tail(string(b), 30))
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for %s: %w", cfgPath, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
	if err := join.Stop(); err != nil {
		return nil, err
	}
	cfg, err := nodeagent.LoadConfig(cfgPath)
	if err != nil {
		return nil, err
	}
	cfg.Registry.PlainHTTP = []string{c.lab.RegistryAddr()}
	cfg.ProxyMode = c.proxyMode
	if err := nodeagent.WriteConfig(cfgPath, cfg); err != nil {
		return nil, err
	}
	return m.Start(context.Background(), machineBin, "agent", "--config", filepath.Join(agentDataDir, nodeagent.ConfigFileName))
}

// waitNodesReady waits until every machine is a Ready node with a pod CIDR.
func (c *cluster) waitNodesReady(t *testing.T, ctx context.Context) map[string]*corev1.Node {
	t.Helper()
	nodes := map[string]*corev1.Node{}
	waitFor(t, ctx, "3 Ready nodes with pod CIDRs", func() (bool, string) {
		for name, p := range c.agents {
			select {
			case <-p.Done():
				b, _ := os.ReadFile(p.LogPath())
				t.Fatalf("the agent on %s exited:\n%s", name, e2eutil.Tail(string(b), 30))
			default:
			}
		}
		l, err := c.kube.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err.Error()
		}
		var state []string
		ready := 0
		for i := range l.Items {
			n := &l.Items[i]
			ok := n.Spec.PodCIDR != "" && nodeReady(n)
			state = append(state, fmt.Sprintf("%s ready=%v podCIDR=%q", n.Name, nodeReady(n), n.Spec.PodCIDR))
			if ok {
				ready++
				nodes[n.Name] = n
			}
		}
		return ready == len(c.lab.Machines()), strings.Join(state, "; ")
	})
	return nodes
}

func nodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// machine returns the lab machine a node runs on (node names are machine names).
func (c *cluster) machine(t *testing.T, node string) *machines.Machine {
	t.Helper()
	for _, m := range c.lab.Machines() {
		if m.Name() == node {
			return m
		}
	}
	t.Fatalf("no machine for node %q", node)
	return nil
}

// podExec runs a shell script inside a pod's container, entering the namespaces of the
// container's process from within its machine (as `kubectl exec` would, without the API).
func (c *cluster) podExec(ctx context.Context, pod *corev1.Pod, container, script string) (string, error) {
	m := c.machineOf(pod)
	if m == nil {
		return "", fmt.Errorf("pod %s is on no lab machine (node %q)", pod.Name, pod.Spec.NodeName)
	}
	pid, err := containerPID(ctx, m, pod, container)
	if err != nil {
		return "", err
	}
	out, err := m.Exec(ctx, "nsenter", "--target", strconv.Itoa(int(pid)), "--mount", "--net", "--uts", "--ipc", "--pid",
		"--", "/bin/sh", "-c", script)
	return string(out), err
}

func (c *cluster) machineOf(pod *corev1.Pod) *machines.Machine {
	for _, m := range c.lab.Machines() {
		if m.Name() == pod.Spec.NodeName {
			return m
		}
	}
	return nil
}

// containerPID finds the running task of a pod's container in the machine's containerd.
func containerPID(ctx context.Context, m *machines.Machine, pod *corev1.Pod, container string) (uint32, error) {
	client, err := containerd.New(m.ContainerdSocket())
	if err != nil {
		return 0, fmt.Errorf("%s: connecting to containerd: %w", m.Name(), err)
	}
	defer client.Close()
	ctx = namespaces.WithNamespace(ctx, "bosun")
	filter := fmt.Sprintf(`labels."bosun.dev/pod-uid"==%s,labels."bosun.dev/container-name"==%s`, pod.UID, container)
	ctrs, err := client.Containers(ctx, filter)
	if err != nil {
		return 0, fmt.Errorf("%s: listing containers: %w", m.Name(), err)
	}
	for _, ctr := range ctrs {
		task, err := ctr.Task(ctx, nil)
		if err != nil {
			continue
		}
		st, err := task.Status(ctx)
		if err == nil && st.Status == containerd.Running {
			return task.Pid(), nil
		}
	}
	return 0, fmt.Errorf("%s: no running container %q of pod %s (%d containers)", m.Name(), container, pod.Name, len(ctrs))
}

// dumpState logs the nodes, pods, endpoints and each machine's routes and nat table.
func (c *cluster) dumpState(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if l, err := c.kube.CoreV1().Nodes().List(ctx, metav1.ListOptions{}); err == nil {
		for _, n := range l.Items {
			t.Logf("node %s ready=%v podCIDR=%s addrs=%v", n.Name, nodeReady(&n), n.Spec.PodCIDR, n.Status.Addresses)
		}
	}
	if l, err := c.kube.CoreV1().Pods("").List(ctx, metav1.ListOptions{}); err == nil {
		for _, p := range l.Items {
			t.Logf("pod %s/%s node=%s phase=%s ip=%s deleting=%v", p.Namespace, p.Name, p.Spec.NodeName, p.Status.Phase, p.Status.PodIP, p.DeletionTimestamp != nil)
		}
	}
	if l, err := c.kube.CoreV1().Endpoints("").List(ctx, metav1.ListOptions{}); err == nil {
		for _, e := range l.Items {
			t.Logf("endpoints %s/%s: %v", e.Namespace, e.Name, e.Subsets)
		}
	}
	for _, m := range c.lab.Machines() {
		for _, cmd := range [][]string{{"ip", "route"}, {"iptables-save", "-t", "nat"}} {
			out, err := m.Exec(ctx, cmd[0], cmd[1:]...)
			t.Logf("==== %s: %s (err %v) ====\n%s", m.Name(), strings.Join(cmd, " "), err, out)
		}
	}
}
