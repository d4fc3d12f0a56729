//go:build e2evm

package vm_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bosun-gitops/bosun/bootstrap"
	"github.com/bosun-gitops/bosun/e2e/e2eutil"
	"github.com/bosun-gitops/bosun/internal/testutil"
	"github.com/bosun-gitops/bosun/internal/testutil/images"
	"github.com/bosun-gitops/bosun/nodeagent"
	bosunv1 "github.com/bosun-gitops/bosun/repo-layout/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

const clusterYAML = `apiVersion: bosun.dev/v1alpha1
kind: Cluster
metadata: {name: vm-lab}
spec:
  podCIDR: 10.244.0.0/16
  serviceCIDR: 10.96.0.0/16
  trustOnFirstUse: false
`

// machineYAML is the VM's Machine: its sshd through qemu's hostfwd, its host key pinned.
func machineYAML(v *vm) string {
	return fmt.Sprintf(`apiVersion: bosun.dev/v1alpha1
kind: Machine
metadata: {name: vm}
spec:
  address: 127.0.0.1
  port: %d
  user: root
  hostKey: %q
  labels: {tier: vm}
`, v.sshPort, v.hostKey)
}

func deploymentYAML(image string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Namespace
metadata: {name: web}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: sleeper, namespace: web}
spec:
  replicas: 1
  selector: {matchLabels: {app: sleeper}}
  template:
    metadata: {labels: {app: sleeper}}
    spec:
      terminationGracePeriodSeconds: 2
      containers:
      - name: main
        image: %s
        imagePullPolicy: IfNotPresent
        command: [sh, -c, "trap 'exit 0' TERM; sleep 3600 & wait"]
        resources:
          limits: {memory: 64Mi, cpu: 250m}
`, image)
}

// The sleeper exits on SIGTERM: nothing stops pods when the machine shuts down (both the agent's
// unit and containerd's use KillMode=process, so containers outlive their services), and a
// container whose PID 1 ignores SIGTERM, like a bare "sleep", holds the reboot for systemd's 90 s
// final-kill timeout.

// agentDataDir is where the agent's files live on the VM (bootstrap.DefaultLayout); the offline
// image archive goes into its images/ before the agent first starts.
var agentDataDir = bootstrap.DefaultLayout().DataDir

// TestVMSystemdBootstrap boots a Debian VM with systemd under qemu and drives it through Git: the
// Machine is bootstrapped over SSH (pinned host key) onto the systemd path, its Node turns Ready,
// a Deployment's pod runs on it, a second bootstrap changes nothing, and removing the Machine
// stops, disables and removes the agent.
func TestVMSystemdBootstrap(t *testing.T) {
	bin := e2eutil.BosunBin(t, "run `make e2e-vm`, or build bosun and point BOSUN_BIN at it")
	img := buildImage(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()

	// The operator's identity, as a user gets it: `bosun ssh-key` creates it in the data dir.
	dataDir := t.TempDir()
	out, err := exec.Command(bin, "ssh-key", "--data-dir", dataDir).Output()
	if err != nil {
		t.Fatalf("bosun ssh-key: %v", err)
	}
	authorizedKey := strings.TrimSpace(string(out))
	signer, err := bootstrap.LoadOrCreateIdentity(filepath.Join(dataDir, bootstrap.IdentityFile))
	if err != nil {
		t.Fatal(err)
	}

	repo := testutil.NewGitRepo(t)
	repo.Write(map[string]string{"bosun.yaml": clusterYAML})
	repo.CommitAndPush("cluster")
	apiPort := e2eutil.FreePort(t, "127.0.0.1")
	e2eutil.StartOperator(t, bin, dataDir, "--repo", repo.Bare, "--interval", "1s",
		"--listen", fmt.Sprintf("127.0.0.1:%d", apiPort), "--advertise-address", guestAPIAddr)

	bootStart := time.Now()
	v := bootVM(t, img, vmConfig{AuthorizedKey: authorizedKey, APIPort: apiPort, MemoryMB: 2048, CPUs: 2})
	api := newClients(t, ctx, dataDir)
	dialer := &bootstrap.Dialer{Signer: signer}
	ssh := v.waitSSH(t, ctx, dialer)
	t.Cleanup(func() { ssh.Close() }) // after the journal below (cleanups run last first)
	bootToSSH := time.Since(bootStart)
	t.Logf("bench: vm-boot-to-ssh %.1f s", bootToSSH.Seconds())
	t.Cleanup(func() {
		if t.Failed() {
			logCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			out, err := ssh.Run(logCtx, "journalctl --no-pager -n 60 -u bosun-agent.service -u containerd.service", nil)
			t.Logf("VM journal (bosun-agent, containerd), err=%v:\n%s", err, out)
		}
	})
	if got := guest(t, ctx, ssh, "cat /proc/1/comm; test -d /run/systemd/system && echo systemd-is-running"); got != "systemd\nsystemd-is-running" {
		t.Fatalf("PID 1 of the VM: %q, want systemd running", got)
	}

	// restrict=on: the operator's port answers only through the guestfwd, not through qemu's
	// gateway (the host), and nothing else is reachable.
	probe := `timeout 10 bash -c 'exec 3<>/dev/tcp/%s/%d' 2>/dev/null && echo reached || echo unreachable`
	for _, c := range []struct {
		addr string
		port int
		want string
	}{{guestAPIAddr, apiPort, "reached"}, {"10.0.2.2", apiPort, "unreachable"}, {"192.0.2.1", 443, "unreachable"}} {
		if got := guest(t, ctx, ssh, fmt.Sprintf(probe, c.addr, c.port)); got != c.want {
			t.Errorf("from the VM, %s:%d is %s, want %s", c.addr, c.port, got, c.want)
		}
	}

	// The VM cannot pull: the busybox image goes into the agent's offline import directory.
	tarPath, ref := images.Busybox(t, t.TempDir(), "busybox")
	archive, err := os.Open(tarPath)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ssh.Run(ctx, fmt.Sprintf("mkdir -p %[1]s/images && cat > %[1]s/images/busybox.tar", agentDataDir), archive); err != nil {
		t.Fatalf("copying the image archive to the VM: %v", err)
	}
	archive.Close()

	// push → Ready, through the operator's bootstrap over SSH.
	repo.Write(map[string]string{"machines/vm.yaml": machineYAML(v)})
	pushed := time.Now()
	repo.CommitAndPush("machine vm")
	var steps []string
	m := waitMachine(t, ctx, api, "the VM's Machine Ready", &steps, func(m bosunv1.Machine, exists bool) bool {
		return exists && m.Status.Phase == bosunv1.MachineReady
	})
	pushToReady := time.Since(pushed)
	t.Logf("bench: vm-push-to-ready %.1f s (%s)", pushToReady.Seconds(), strings.Join(steps, ", "))
	first := meta.FindStatusCondition(m.Status.Conditions, "Bootstrapped")
	if first == nil {
		t.Fatalf("no Bootstrapped condition on the Ready Machine: %+v", m.Status)
	}
	t.Logf("first bootstrap: %s", first.Message)

	// The systemd path: the unit runs and is enabled; the no-systemd supervisor is absent.
	unit := bootstrap.UnitName
	if got := guest(t, ctx, ssh, "systemctl is-active "+unit+"; systemctl is-enabled "+unit); got != "active\nenabled" {
		t.Errorf("systemctl is-active/is-enabled %s: %q, want active and enabled", unit, got)
	}
	l := bootstrap.DefaultLayout()
	if got := guest(t, ctx, ssh, fmt.Sprintf("test -e %s && echo supervisor; test -e %s && echo unit; true", l.SupervisorScript(), l.UnitFile)); got != "unit" {
		t.Errorf("service files on the VM: %q, want the unit and no supervisor script", got)
	}
	mainPID := guest(t, ctx, ssh, "systemctl show -p MainPID --value "+unit)
	if exe := guest(t, ctx, ssh, "readlink /proc/"+mainPID+"/exe"); exe != l.Binary {
		t.Errorf("the unit's main process %s runs %q, want %s", mainPID, exe, l.Binary)
	}
	if !nodeReady(ctx, api, "vm") {
		t.Errorf("node vm is not Ready while its Machine is")
	}

	// A Deployment's pod runs on the VM, from the offline image.
	repo.Write(map[string]string{"apps/sleeper.yaml": deploymentYAML(ref)})
	pushed = time.Now()
	repo.CommitAndPush("deployment")
	var pod corev1.Pod
	waitFor(t, ctx, "the sleeper pod Running on vm", func() (bool, string) {
		pods, err := api.Kube.CoreV1().Pods("web").List(ctx, metav1.ListOptions{LabelSelector: "app=sleeper"})
		if err != nil {
			return false, err.Error()
		}
		var state []string
		for _, p := range pods.Items {
			if p.Status.Phase == corev1.PodRunning && p.Spec.NodeName == "vm" && p.DeletionTimestamp == nil {
				pod = p
				return true, ""
			}
			state = append(state, fmt.Sprintf("%s on %q: %s %s", p.Name, p.Spec.NodeName, p.Status.Phase, p.Status.Message))
		}
		return false, strings.Join(state, "; ")
	})
	t.Logf("bench: vm-push-to-pod-running %.1f s", time.Since(pushed).Seconds())

	// The VM is a cgroup v2 (unified) host, unlike the test machines: the limits are in the
	// container's cgroup as memory.max and cpu.max.
	limits := guest(t, ctx, ssh, `p=$(pgrep -o -f 'sleep 3600'); cg=$(sed -n 's/^0:://p' /proc/$p/cgroup); `+
		`echo "$(stat -fc %T /sys/fs/cgroup) $(cat /sys/fs/cgroup$cg/memory.max) $(cat /sys/fs/cgroup$cg/cpu.max)"`)
	if want := "cgroup2fs 67108864 25000 100000"; limits != want {
		t.Errorf("the pod's cgroup on the VM: %q (file system, memory.max, cpu.max), want %q", limits, want)
	} else {
		t.Logf("cgroup v2 limits of the pod: %s", limits)
	}

	// A second bootstrap finds everything in place: reset the phase, as an operator that
	// stopped mid-bootstrap leaves it, and the operator runs every check again.
	if _, err := api.Dyn.Resource(e2eutil.MachinesGVR).Patch(ctx, "vm", types.MergePatchType,
		[]byte(`{"status":{"phase":"Pending"}}`), metav1.PatchOptions{}, "status"); err != nil {
		t.Fatalf("resetting the Machine's phase: %v", err)
	}
	rerun := time.Now()
	steps = nil
	// Only the operator's second bootstrap sets the phase back to Ready.
	m = waitMachine(t, ctx, api, "the second bootstrap", &steps, func(m bosunv1.Machine, exists bool) bool {
		return exists && m.Status.Phase == bosunv1.MachineReady
	})
	t.Logf("bench: vm-rebootstrap %.1f s (%s)", time.Since(rerun).Seconds(), strings.Join(steps, ", "))
	if c := meta.FindStatusCondition(m.Status.Conditions, "Bootstrapped"); c == nil || !strings.HasSuffix(c.Message, "no changes") {
		t.Errorf("second bootstrap: %+v, want a Bootstrapped condition that reports no changes", c)
	}
	if got := guest(t, ctx, ssh, "systemctl show -p MainPID --value "+unit); got != mainPID {
		t.Errorf("the agent restarted during the second bootstrap: pid %s → %s", mainPID, got)
	}
	after, err := api.Kube.CoreV1().Pods("web").Get(ctx, pod.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("pod %s after the second bootstrap: %v", pod.Name, err)
	}
	if after.UID != pod.UID || after.Status.Phase != corev1.PodRunning || !e2eutil.StartedAt(*after).Equal(e2eutil.StartedAt(pod)) {
		t.Errorf("pod %s after the second bootstrap: uid %s→%s, %s, started %v→%v; want the same container still running",
			pod.Name, pod.UID, after.UID, after.Status.Phase, e2eutil.StartedAt(pod), e2eutil.StartedAt(*after))
	}

	// Restarting the agent's unit (as an upgrade does) leaves the pods running: its ExecStop stops
	// pods only when the machine shuts down.
	guest(t, ctx, ssh, "systemctl restart "+unit)
	waitFor(t, ctx, "the agent's unit active after a restart", func() (bool, string) {
		out, _ := ssh.Run(ctx, "systemctl is-active "+unit, nil)
		return strings.TrimSpace(string(out)) == "active", string(out)
	})
	report := path.Join(l.DataDir, nodeagent.ShutdownReportFile)
	if got := guest(t, ctx, ssh, "cat "+report+" 2>/dev/null; true"); got != "" {
		t.Errorf("a restart of %s ran the node shutdown: %s", unit, got)
	}
	time.Sleep(3 * time.Second) // the restarted agent adopts and reports
	if p, err := api.Kube.CoreV1().Pods("web").Get(ctx, pod.Name, metav1.GetOptions{}); err != nil || !e2eutil.StartedAt(*p).Equal(e2eutil.StartedAt(*after)) {
		t.Errorf("pod %s after restarting the agent: %v; want its container still the one started at %v", pod.Name, err, e2eutil.StartedAt(*after))
	}

	// The unit is enabled: after a reboot systemd starts the agent again, the Node comes back Ready
	// from the new boot, and the pod runs again. On the way down the unit's ExecStop stopped the
	// agent and then the pod's container (graceful node shutdown) and wrote what it did.
	bootID := guest(t, ctx, ssh, "cat /proc/sys/kernel/random/boot_id")
	if _, err := ssh.Run(ctx, "systemctl --no-block reboot", nil); err != nil {
		t.Fatalf("rebooting the VM: %v", err)
	}
	rebooted := time.Now()
	ssh.Close()
	ssh = v.waitReboot(t, ctx, dialer, bootID)
	t.Logf("bench: vm-reboot-to-ssh %.1f s", time.Since(rebooted).Seconds())
	newBootID := guest(t, ctx, ssh, "cat /proc/sys/kernel/random/boot_id")
	if got := guest(t, ctx, ssh, "cat "+report+" 2>&1; true"); !strings.Contains(got, "stopped 1 containers") || !strings.Contains(got, "web/"+pod.Name+"/main") {
		t.Errorf("node shutdown report after the reboot: %q, want the sleeper's container stopped", got)
	} else {
		t.Logf("node shutdown: %s", got)
	}
	waitFor(t, ctx, "the agent's unit active after the reboot", func() (bool, string) {
		out, _ := ssh.Run(ctx, "systemctl is-active "+unit, nil)
		return strings.TrimSpace(string(out)) == "active", string(out)
	})
	waitFor(t, ctx, "node vm Ready from the new boot", func() (bool, string) {
		n, err := api.Kube.CoreV1().Nodes().Get(ctx, "vm", metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		return n.Status.NodeInfo.BootID == newBootID && nodeReady(ctx, api, "vm"), "boot id " + n.Status.NodeInfo.BootID
	})
	t.Logf("bench: vm-reboot-to-node-ready %.1f s", time.Since(rebooted).Seconds())
	waitFor(t, ctx, "the sleeper pod running again after the reboot", func() (bool, string) {
		p, err := api.Kube.CoreV1().Pods("web").Get(ctx, pod.Name, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		started := e2eutil.StartedAt(*p)
		return p.Status.Phase == corev1.PodRunning && !started.IsZero() && !started.Equal(e2eutil.StartedAt(*after)),
			fmt.Sprintf("%s, container started %v", p.Status.Phase, started)
	})
	t.Logf("bench: vm-reboot-to-pod-running %.1f s", time.Since(rebooted).Seconds())

	// Removing the Machine from Git drains and retires it: unit stopped, disabled, files gone.
	repo.Remove("machines/vm.yaml")
	pushed = time.Now()
	repo.CommitAndPush("retire vm")
	steps = nil
	waitMachine(t, ctx, api, "the Machine retired and gone", &steps, func(m bosunv1.Machine, exists bool) bool { return !exists })
	t.Logf("bench: vm-push-to-retired %.1f s (%s)", time.Since(pushed).Seconds(), strings.Join(steps, ", "))
	if _, err := api.Kube.CoreV1().Nodes().Get(ctx, "vm", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("node vm after retirement: err = %v, want NotFound", err)
	}
	if got := guest(t, ctx, ssh, "systemctl is-active "+unit+"; systemctl is-enabled "+unit+" 2>&1; true"); !strings.HasPrefix(got, "inactive\n") || strings.HasSuffix(got, "\nenabled") {
		t.Errorf("systemctl is-active/is-enabled %s after retirement: %q, want inactive and not enabled", unit, got)
	}
	leftovers := guest(t, ctx, ssh, fmt.Sprintf("for f in %s %s %s %s; do test -e \"$f\" && echo \"$f\"; done; true",
		l.Binary, l.UnitFile, l.DataDir, l.LogFile))
	if leftovers != "" {
		t.Errorf("files left after retirement:\n%s", leftovers)
	}
	if got := guest(t, ctx, ssh, "systemctl is-active containerd.service"); got != "active" {
		t.Errorf("containerd after retirement: %q, want packages and their services kept", got)
	}
}

// guest runs a command on the VM and returns its trimmed output; a failure ends the test.
func guest(t *testing.T, ctx context.Context, c *bootstrap.Client, cmd string) string {
	t.Helper()
	out, err := c.Run(ctx, cmd, nil)
	if err != nil {
		t.Fatalf("on the VM: %s: %v\n%s", cmd, err, out)
	}
	return strings.TrimSpace(string(out))
}

// waitMachine waits until cond holds for the Machine "vm" and appends each phase/step it passed
// through, with the time spent in it, to steps.
func waitMachine(t *testing.T, ctx context.Context, api clients, what string, steps *[]string,
	cond func(bosunv1.Machine, bool) bool) bosunv1.Machine {
	t.Helper()
	var m bosunv1.Machine
	cur, since := "", time.Now()
	mark := func(next string) {
		if next == cur {
			return
		}
		if cur != "" {
			*steps = append(*steps, fmt.Sprintf("%s %.1fs", cur, time.Since(since).Seconds()))
		}
		cur, since = next, time.Now()
	}
	waitFor(t, ctx, what, func() (bool, string) {
		got, exists, err := api.machine(ctx, "vm")
		if err != nil {
			return false, err.Error()
		}
		m = got
		state := "gone"
		if exists {
			state = string(m.Status.Phase)
			if state == "" {
				state = "synced"
			}
			if m.Status.Step != "" {
				state += "/" + m.Status.Step
			}
		}
		mark(state)
		return cond(m, exists), fmt.Sprintf("%s %q", state, m.Status.LastError)
	})
	return m
}

func nodeReady(ctx context.Context, api clients, name string) bool {
	n, err := api.Kube.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
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
