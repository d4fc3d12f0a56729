//go:build e2e

package bootstrap_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/bosun-gitops/bosun/bootstrap"
	"github.com/bosun-gitops/bosun/e2e/e2eutil"
	"github.com/bosun-gitops/bosun/e2e/machines"
	"github.com/bosun-gitops/bosun/internal/testutil"
	bosunv1 "github.com/bosun-gitops/bosun/repo-layout/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

const clusterYAML = `apiVersion: bosun.dev/v1alpha1
kind: Cluster
metadata: {name: lab}
spec:
  podCIDR: 10.244.0.0/16
  serviceCIDR: 10.96.0.0/16
  trustOnFirstUse: false
`

func machineYAML(m *machines.Machine, user string) string {
	return fmt.Sprintf(`apiVersion: bosun.dev/v1alpha1
kind: Machine
metadata: {name: %s}
spec:
  address: %s
  port: 22
  user: %s
  hostKey: %q
  labels: {lab: "yes"}
`, m.Name(), m.Addr(), user, m.HostKey())
}

func deploymentYAML(image string, replicas int) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Namespace
metadata: {name: web}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: sleeper, namespace: web}
spec:
  replicas: %d
  selector: {matchLabels: {app: sleeper}}
  template:
    metadata: {labels: {app: sleeper}}
    spec:
      terminationGracePeriodSeconds: 2
      containers:
      - name: main
        image: %s
        imagePullPolicy: IfNotPresent
        command: [sh, -c, "sleep 3600"]
`, replicas, image)
}

// fleet is one operator syncing a Git repository of Machines on a namespace-machine lab.
type fleet struct {
	bin, dataDir string
	lab          *machines.Lab
	repo         *testutil.GitRepo
	op           *e2eutil.Operator
	args         []string
	api          clients
	clock        *stepClock
}

func newFleet(t *testing.T, ctx context.Context, n int) *fleet {
	t.Helper()
	return newFleetOn(t, ctx, machines.Config{N: n, SudoUser: "deploy"})
}

// newFleetOn is newFleet on a lab of cfg (with a host link, and the operator's key authorized).
func newFleetOn(t *testing.T, ctx context.Context, cfg machines.Config) *fleet {
	t.Helper()
	bin := e2eutil.BosunBin(t, "build bosun and point BOSUN_BIN at it (make e2e does)")
	dataDir := t.TempDir()
	// The operator creates its identity on first start; creating it first lets the lab authorize it.
	signer, err := bootstrap.LoadOrCreateIdentity(filepath.Join(dataDir, bootstrap.IdentityFile))
	if err != nil {
		t.Fatal(err)
	}
	cfg.HostLink = true
	cfg.AuthorizedKeys = append(cfg.AuthorizedKeys, bootstrap.AuthorizedKey(signer))
	lab := machines.NewLab(t, cfg)
	repo := testutil.NewGitRepo(t)
	repo.Write(map[string]string{"bosun.yaml": clusterYAML})
	repo.CommitAndPush("cluster")
	host := lab.HostAddr().String()
	f := &fleet{bin: bin, dataDir: dataDir, lab: lab, repo: repo, clock: newStepClock()}
	f.args = []string{"--repo", repo.Bare, "--interval", "1s",
		"--listen", fmt.Sprintf("%s:%d", host, e2eutil.FreePort(t, host)), "--advertise-address", host,
		"--agent-insecure-registry", lab.RegistryAddr()}
	f.op = e2eutil.StartOperator(t, bin, dataDir, f.args...)
	f.api = newClients(t, ctx, dataDir)
	t.Cleanup(func() {
		if t.Failed() {
			f.dumpMachines(t)
		}
	})
	return f
}

func (f *fleet) dumpMachines(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ms, err := f.api.machines(ctx)
	if err != nil {
		t.Logf("machines: %v", err)
	}
	for _, m := range ms {
		t.Logf("machine %s: phase=%s step=%s lastError=%q", m.Name, m.Status.Phase, m.Status.Step, m.Status.LastError)
	}
	evs, err := f.api.Kube.CoreV1().Events("").List(ctx, metav1.ListOptions{})
	if err == nil {
		for _, e := range evs.Items {
			if e.InvolvedObject.Kind == "Machine" {
				t.Logf("event %s %s %s: %s", e.InvolvedObject.Name, e.Type, e.Reason, e2eutil.Tail(e.Message, 5))
			}
		}
	}
	for _, m := range f.lab.Machines() {
		if b, err := os.ReadFile(m.HostPath("/var/log/bosun-agent.log")); err == nil {
			t.Logf("agent log of %s (tail):\n%s", m.Name(), e2eutil.Tail(string(b), 30))
		}
	}
}

// waitMachines waits until every named Machine satisfies cond, recording step transitions.
func (f *fleet) waitMachines(t *testing.T, ctx context.Context, what string, names []string, cond func(bosunv1.Machine, bool) bool) {
	t.Helper()
	waitFor(t, ctx, what, func() (bool, string) {
		ms, err := f.api.machines(ctx)
		if err != nil {
			return false, err.Error()
		}
		f.clock.observe(ms)
		var state []string
		ok := true
		for _, n := range names {
			m, exists := ms[n]
			if !cond(m, exists) {
				ok = false
			}
			state = append(state, fmt.Sprintf("%s=%s/%s %q", n, m.Status.Phase, m.Status.Step, m.Status.LastError))
		}
		return ok, strings.Join(state, "; ")
	})
}

func ready(m bosunv1.Machine, exists bool) bool {
	return exists && m.Status.Phase == bosunv1.MachineReady
}

func (f *fleet) nodeReady(ctx context.Context, name string) bool {
	n, err := f.api.Kube.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return false
	}
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// runningPods are the sleeper pods that run, by name.
func (f *fleet) runningPods(ctx context.Context) (map[string]corev1.Pod, error) {
	list, err := f.api.Kube.CoreV1().Pods("web").List(ctx, metav1.ListOptions{LabelSelector: "app=sleeper"})
	if err != nil {
		return nil, err
	}
	out := map[string]corev1.Pod{}
	for _, p := range list.Items {
		if p.Status.Phase == corev1.PodRunning && p.DeletionTimestamp == nil {
			out[p.Name] = p
		}
	}
	return out, nil
}

// TestFleetFromGit is the machine lifecycle through Git on the namespace machines: one Machine
// pushed alone, then three at once (one through a sudo user), Ready nodes, a Deployment spreading
// over them, a rolling agent upgrade that restarts no pod, and the retirement of a removed Machine.
func TestFleetFromGit(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	f := newFleet(t, ctx, 4)
	lab := f.lab

	// One machine alone: time from push to Ready, with the step breakdown.
	f.repo.Write(map[string]string{"machines/m1.yaml": machineYAML(lab.Machine(1), "root")})
	f.clock = newStepClock()
	f.repo.CommitAndPush("machine m1")
	f.waitMachines(t, ctx, "m1 Ready", []string{"m1"}, ready)
	steps, one := f.clock.breakdown("m1")
	t.Logf("figure: push -> Ready, 1 machine: %s (%s)", one.Round(time.Millisecond), steps)

	// Three at once, bootstrapped in parallel; m3 through a non-root sudo user.
	for i, user := range map[int]string{2: "root", 3: "deploy", 4: "root"} {
		f.repo.Write(map[string]string{fmt.Sprintf("machines/m%d.yaml", i): machineYAML(lab.Machine(i), user)})
	}
	f.clock = newStepClock()
	f.repo.CommitAndPush("machines m2 m3 m4")
	three := []string{"m2", "m3", "m4"}
	f.waitMachines(t, ctx, "m2..m4 Ready", three, ready)
	var slowest time.Duration
	for _, n := range three {
		steps, d := f.clock.breakdown(n)
		slowest = max(slowest, d)
		t.Logf("  %s: %s (%s)", n, d.Round(time.Millisecond), steps)
	}
	t.Logf("figure: push -> Ready, 3 machines in parallel: %s (1 machine: %s)", slowest.Round(time.Millisecond), one.Round(time.Millisecond))
	all := []string{"m1", "m2", "m3", "m4"}
	for _, n := range all {
		if !f.nodeReady(ctx, n) {
			t.Errorf("node %s is not Ready while its Machine is", n)
		}
	}

	// A Deployment spreads over the nodes, pods Running with the real agent.
	f.repo.Write(map[string]string{"apps/sleeper.yaml": deploymentYAML(lab.BusyboxRef(), 4)})
	f.repo.CommitAndPush("deployment")
	var pods map[string]corev1.Pod
	waitFor(t, ctx, "4 sleeper pods Running", func() (bool, string) {
		var err error
		pods, err = f.runningPods(ctx)
		if err != nil {
			return false, err.Error()
		}
		return len(pods) == 4, fmt.Sprintf("%d running", len(pods))
	})
	nodes := map[string]bool{}
	for _, p := range pods {
		nodes[p.Spec.NodeName] = true
	}
	t.Logf("pods spread over nodes %v", keys(nodes))
	if len(nodes) < 2 {
		t.Errorf("all pods on %v, want them spread over the machines", keys(nodes))
	}

	f.testUpgrade(t, ctx, all, pods)

	// Removing a Machine from Git drains and retires it.
	f.repo.Remove("machines/m4.yaml")
	f.repo.CommitAndPush("retire m4")
	f.waitMachines(t, ctx, "m4 retired and gone", []string{"m4"}, func(m bosunv1.Machine, exists bool) bool { return !exists })
	if _, err := f.api.Kube.CoreV1().Nodes().Get(ctx, "m4", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("node m4 after retirement: err = %v, want NotFound", err)
	}
	if _, err := os.Stat(lab.Machine(4).HostPath("/usr/local/bin/bosun")); !os.IsNotExist(err) {
		t.Errorf("bosun binary on m4 after retirement: %v, want it removed", err)
	}
	if _, err := os.Stat(lab.Machine(4).HostPath("/usr/bin/containerd")); err != nil {
		t.Errorf("packages must stay after retirement: %v", err)
	}
	// Nor does the agent leave anything in m4's kernel: service rules, pod routes, masquerade
	// rule, the pods' bridge.
	m4 := lab.Machine(4)
	for _, check := range []struct{ what, cmd, unwanted string }{
		{"iptables rules", "iptables-save", "BOSUN-"},
		{"nftables tables", "nft list tables", "table ip bosun"},
		{"pod routes", "ip route show proto 98", "via"},
		{"the pods' bridge", "ip -o link show", "bosun0"},
	} {
		out, err := m4.Exec(ctx, "sh", "-c", check.cmd)
		if err != nil {
			t.Errorf("m4 after retirement: %s: %v", check.cmd, err)
		} else if strings.Contains(string(out), check.unwanted) {
			t.Errorf("m4 after retirement still has %s (%q in `%s`):\n%s", check.what, check.unwanted, check.cmd, out)
		}
	}
	waitFor(t, ctx, "4 sleeper pods Running off m4", func() (bool, string) {
		pods, err := f.runningPods(ctx)
		if err != nil {
			return false, err.Error()
		}
		on := 0
		for _, p := range pods {
			if p.Spec.NodeName == "m4" {
				on++
			}
		}
		return len(pods) == 4 && on == 0, fmt.Sprintf("%d running, %d on m4", len(pods), on)
	})

	// sshd dies in the middle of a bootstrap: the machine fails, is retried, and completes once
	// sshd is back. m4 is a fresh machine again (packages kept, agent removed).

	// A wrong host key is refused with a message that says what happened, nothing is installed,
	// and the machine waits for its spec to change (no retry).
	wrongKey := strings.Replace(machineYAML(m4, "root"), m4.HostKey(), lab.Machine(1).HostKey(), 1)
	f.repo.Write(map[string]string{"machines/m4.yaml": wrongKey})
	f.repo.CommitAndPush("m4 with a wrong host key")
	var refused bosunv1.Machine
	f.waitMachines(t, ctx, "m4 refused", []string{"m4"}, func(m bosunv1.Machine, exists bool) bool {
		refused = m
		return exists && m.Status.Phase == bosunv1.MachineFailed
	})
	t.Logf("wrong host key: %s", refused.Status.LastError)
	if !strings.Contains(refused.Status.LastError, "host key") || !strings.Contains(refused.Status.LastError, "spec.hostKey") {
		t.Errorf("lastError %q does not explain the host key mismatch", refused.Status.LastError)
	}
	if refused.Status.NextRetry != nil {
		t.Errorf("a host key mismatch must not be retried, nextRetry = %v", refused.Status.NextRetry)
	}
	if _, err := os.Stat(m4.HostPath("/usr/local/bin/bosun")); !os.IsNotExist(err) {
		t.Errorf("bosun was installed on a machine with a wrong host key: %v", err)
	}

	f.repo.Write(map[string]string{"machines/m4.yaml": machineYAML(m4, "root")})
	f.repo.CommitAndPush("m4 with its host key")
	f.waitMachines(t, ctx, "m4 bootstrap under way", []string{"m4"}, func(m bosunv1.Machine, exists bool) bool {
		return exists && m.Status.Phase == bosunv1.MachineInstalling
	})
	if out, err := m4.Exec(ctx, "sh", "-c", killSSHD); err != nil {
		t.Fatalf("stopping sshd: %v %s", err, out)
	}
	var failed bosunv1.Machine
	f.waitMachines(t, ctx, "m4 Failed with sshd stopped", []string{"m4"}, func(m bosunv1.Machine, exists bool) bool {
		if m.Status.Phase == bosunv1.MachineFailed {
			failed = m
			return true
		}
		if m.Status.Phase == bosunv1.MachineReady {
			t.Fatalf("m4 became Ready although sshd was stopped during its bootstrap")
		}
		return false
	})
	t.Logf("with sshd stopped: lastError %q, nextRetry %v", failed.Status.LastError, failed.Status.NextRetry)
	if failed.Status.NextRetry == nil {
		t.Errorf("a lost connection must be retried: nextRetry is not set")
	}
	if _, err := m4.Start(context.Background(), "/usr/sbin/sshd", "-D", "-e"); err != nil {
		t.Fatal(err)
	}
	f.waitMachines(t, ctx, "m4 Ready after sshd is back", []string{"m4"}, ready)
	if !f.nodeReady(ctx, "m4") {
		t.Errorf("node m4 is not Ready after the retried bootstrap")
	}
}

// killSSHD kills every sshd of a machine (listener and sessions), by pid, from inside the
// machine's own PID namespace.
const killSSHD = `for p in /proc/[0-9]*; do [ "$(cat "$p/comm" 2>/dev/null)" = sshd ] && kill -9 "${p#/proc/}"; done; true`

// testUpgrade restarts the operator from a binary with another digest: every agent is upgraded,
// one machine at a time, and no pod restarts.
func (f *fleet) testUpgrade(t *testing.T, ctx context.Context, names []string, before map[string]corev1.Pod) {
	// The same program with one extra byte: another digest, same behaviour (ELF ignores the tail).
	b, err := os.ReadFile(f.bin)
	if err != nil {
		t.Fatal(err)
	}
	bin2 := filepath.Join(t.TempDir(), "bosun")
	if err := os.WriteFile(bin2, append(b, '\n'), 0o755); err != nil {
		t.Fatal(err)
	}
	file, err := os.Open(bin2)
	if err != nil {
		t.Fatal(err)
	}
	digest2, err := bootstrap.FileDigest(file)
	file.Close()
	if err != nil {
		t.Fatal(err)
	}
	f.op.Stop()
	upgradeStart := time.Now()
	f.op = e2eutil.StartOperator(t, bin2, f.dataDir, f.args...)
	// At most one machine (maxUnavailable 1) is being upgraded at any time we look.
	maxUpgrading := 0
	waitFor(t, ctx, "every agent upgraded", func() (bool, string) {
		ms, err := f.api.machines(ctx)
		if err != nil {
			return false, err.Error()
		}
		done, upgrading := 0, 0
		var state []string
		for _, n := range names {
			m := ms[n]
			if m.Status.AgentDigest == digest2 && m.Status.Phase == bosunv1.MachineReady {
				done++
			}
			if c := findCondition(m.Status.Conditions, "Upgraded"); c != nil && c.Status == metav1.ConditionFalse {
				upgrading++
			}
			state = append(state, fmt.Sprintf("%s=%s %s %q", n, m.Status.Phase, short(m.Status.AgentDigest), m.Status.LastError))
		}
		maxUpgrading = max(maxUpgrading, upgrading)
		return done == len(names), strings.Join(state, "; ")
	})
	if maxUpgrading > 1 {
		t.Errorf("%d machines were upgrading at once, want at most 1 (maxUnavailable)", maxUpgrading)
	}
	t.Logf("figure: rolling upgrade of %d agents: %s", len(names), time.Since(upgradeStart).Round(time.Millisecond))
	after, err := f.runningPods(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for name, p := range before {
		q, ok := after[name]
		if !ok {
			t.Errorf("pod %s is gone after the upgrade", name)
			continue
		}
		if q.UID != p.UID || restarts(q) != restarts(p) || !e2eutil.StartedAt(q).Equal(e2eutil.StartedAt(p)) {
			t.Errorf("pod %s restarted during the upgrade: uid %s→%s, restarts %d→%d, started %v→%v",
				name, p.UID, q.UID, restarts(p), restarts(q), e2eutil.StartedAt(p), e2eutil.StartedAt(q))
		}
	}
	for _, n := range names {
		out, err := f.lab.Machine(int(n[1]-'0')).Exec(ctx, "sha256sum", "/usr/local/bin/bosun")
		if err != nil || !strings.HasPrefix(string(out), digest2) {
			t.Errorf("%s runs %q after the upgrade, want %s (%v)", n, out, digest2, err)
		}
	}
}

func restarts(p corev1.Pod) int32 {
	var n int32
	for _, c := range p.Status.ContainerStatuses {
		n += c.RestartCount
	}
	return n
}

func keys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func findCondition(cs []metav1.Condition, typ string) *metav1.Condition {
	for i := range cs {
		if cs[i].Type == typ {
			return &cs[i]
		}
	}
	return nil
}

func short(digest string) string {
	if len(digest) > 12 {
		return digest[:12]
	}
	return digest
}
