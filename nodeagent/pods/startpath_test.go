package pods_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/bosun-gitops/bosun/nodeagent/pods"
	"github.com/bosun-gitops/bosun/nodeagent/pods/podstest"
)

// pinningNetwork is the fake network plus PinNetns, which lets the workers create containers
// while SetupPod runs. Its SetupPod first waits (up to a second) until the runtime holds
// waitFor, so that a worker creating containers only after the network shows in the call order.
type pinningNetwork struct {
	*podstest.Network
	rt      *podstest.Runtime
	calls   *podstest.Calls
	waitFor string
	// hostsAtCreate is the /etc/hosts file the waitFor container mounted when it was created.
	hostsAtCreate os.FileInfo
}

func (n *pinningNetwork) PinNetns(_ context.Context, pod pods.PodRef) (string, error) {
	n.calls.Add("PinNetns " + pod.UID)
	return "/run/bosun/netns/" + pod.UID, nil
}

func (n *pinningNetwork) SetupPod(ctx context.Context, pod pods.PodRef, ports []pods.PortMapping) (pods.PodNetwork, error) {
	for deadline := time.Now().Add(time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		if spec, ok := n.rt.Spec(n.waitFor); ok || n.waitFor == "" {
			for _, m := range spec.Mounts {
				if m.ContainerPath == "/etc/hosts" {
					n.hostsAtCreate, _ = os.Stat(m.HostPath)
				}
			}
			break
		}
	}
	return n.Network.SetupPod(ctx, pod, ports)
}

// callOrder keeps the calls that start with one of the prefixes, cut to their verb.
func callOrder(calls []string, prefixes ...string) []string {
	var out []string
	for _, c := range calls {
		for _, p := range prefixes {
			if strings.HasPrefix(c, p) {
				out = append(out, p)
			}
		}
	}
	return out
}

func TestNetworkSetupOverlapsContainerCreation(t *testing.T) {
	podIPEnv := corev1.Container{Name: "app", Image: testImage, Env: []corev1.EnvVar{{
		Name: "POD_IP", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "status.podIP"}},
	}}}
	tests := []struct {
		name      string
		pod       *corev1.Pod
		announce  bool
		wantCalls []string
		wantEnv   string // an entry the container's environment must hold
	}{
		{
			name: "namespace pinned ahead: create before CNI, start after", pod: testPod("overlap"), announce: true,
			wantCalls: []string{"PinNetns", "CreateContainer", "SetupPod", "StartContainer"},
		},
		{
			name: "pod IP in the environment: CNI first", pod: testPod("podip", podIPEnv), announce: true,
			wantCalls: []string{"SetupPod", "CreateContainer", "StartContainer"}, wantEnv: "POD_IP=10.244.0.2",
		},
		{
			name: "network without PinNetns: CNI first", pod: testPod("plain"),
			wantCalls: []string{"SetupPod", "CreateContainer", "StartContainer"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			if tt.announce {
				h.network = &pinningNetwork{Network: h.net, rt: h.rt, calls: h.calls, waitFor: cid(tt.pod, "app", 0)}
			}
			h.start()
			h.m.UpdatePod(tt.pod)
			h.settle()

			got := callOrder(h.calls.List(), "PinNetns", "SetupPod", "CreateContainer", "StartContainer", "RemoveContainer")
			if diff := cmp.Diff(tt.wantCalls, got); diff != "" {
				t.Errorf("calls (-want +got):\n%s", diff)
			}
			st := h.lastStatus(tt.pod)
			if st == nil || st.Phase != corev1.PodRunning || st.PodIP != "10.244.0.2" {
				t.Fatalf("status = %+v, want Running with pod IP 10.244.0.2", st)
			}
			spec, _ := h.rt.Spec(cid(tt.pod, "app", 0))
			if spec.NetnsPath != "/run/bosun/netns/"+string(tt.pod.UID) {
				t.Errorf("netns path %q", spec.NetnsPath)
			}
			if tt.wantEnv != "" && !contains(spec.Env, tt.wantEnv) {
				t.Errorf("env %q lacks %q", spec.Env, tt.wantEnv)
			}
			hostsPath := filepath.Join(pods.PodDir(h.dataDir, string(tt.pod.UID)), "etc-hosts")
			hosts, err := os.ReadFile(hostsPath)
			if err != nil || !strings.Contains(string(hosts), "10.244.0.2") {
				t.Errorf("hosts file %q (err %v) lacks the pod IP", hosts, err)
			}
			if pn, ok := h.network.(*pinningNetwork); ok && tt.wantCalls[0] == "PinNetns" {
				// The container created before the pod IP was known mounted the file that now
				// holds it: the same inode, rewritten in place.
				final, err := os.Stat(hostsPath)
				if pn.hostsAtCreate == nil || err != nil || !os.SameFile(pn.hostsAtCreate, final) {
					t.Errorf("/etc/hosts was replaced after the container mounted it (at create: %v; now: %v, %v)", pn.hostsAtCreate, final, err)
				}
			}
		})
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func TestNetworkFailureAfterCreateDelaysStart(t *testing.T) {
	h := newHarness(t)
	h.network = &pinningNetwork{Network: h.net, rt: h.rt, calls: h.calls}
	h.net.SetError(errors.New("no IP addresses available"))
	h.start()
	pod := testPod("netfail")
	h.m.UpdatePod(pod)
	h.settle()

	if n := h.startCount(pod, "app"); n != 0 {
		t.Fatalf("%d starts without a network, want 0", n)
	}
	if _, ok := h.rt.Spec(cid(pod, "app", 0)); !ok {
		t.Error("container not created while the network was being set up")
	}
	if cs := h.containerStatus(pod, "app"); cs.State.Waiting == nil || cs.State.Waiting.Reason != "ContainerCreating" {
		t.Errorf("container state = %+v, want waiting ContainerCreating", cs.State)
	}
	found := false
	for _, e := range h.rec.Events() {
		found = found || e.Reason == "FailedCreatePodSandBox"
	}
	if !found {
		t.Error("no FailedCreatePodSandBox event")
	}

	h.net.SetError(nil)
	h.until(10*time.Second, "Running after the network recovered", func() bool {
		st := h.lastStatus(pod)
		return st != nil && st.Phase == corev1.PodRunning
	})
	if n := h.startCount(pod, "app"); n != 1 {
		t.Errorf("%d starts, want 1", n)
	}
	if got := h.lastStatus(pod).PodIP; got != "10.244.0.2" {
		t.Errorf("pod IP %q", got)
	}
}

func TestLeftoverContainerReplacedOnlyWhenCreateFinds(t *testing.T) {
	h := newHarness(t)
	h.start()
	pod := testPod("leftover")
	// A container of this ID without the agent's labels: a crashed agent's half-made creation.
	h.rt.AddContainer(pods.ContainerSpec{ID: cid(pod, "app", 0), Image: testImage}, pods.ContainerStatus{State: pods.StateCreated})
	fresh := testPod("fresh")
	h.m.UpdatePod(pod)
	h.m.UpdatePod(fresh)
	h.settle()

	for _, tt := range []struct {
		pod  *corev1.Pod
		want []string
	}{
		{pod, []string{"CreateContainer", "RemoveContainer", "CreateContainer", "StartContainer"}},
		{fresh, []string{"CreateContainer", "StartContainer"}},
	} {
		id := cid(tt.pod, "app", 0)
		var got []string
		for _, c := range h.calls.List() {
			if verb, rest, _ := strings.Cut(c, " "); strings.HasPrefix(rest, id) {
				got = append(got, verb)
			}
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("%s: calls (-want +got):\n%s", tt.pod.Name, diff)
		}
		if st := h.lastStatus(tt.pod); st == nil || st.Phase != corev1.PodRunning {
			t.Errorf("%s: status = %+v, want Running", tt.pod.Name, st)
		}
	}
}

// TestServiceVariablesWaitForServices checks that a container is created only once the
// Services were read, as the kubelet does, and then gets their variables.
func TestServiceVariablesWaitForServices(t *testing.T) {
	h := newHarness(t)
	svcs := pods.NewFakeServices(false, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "db"},
		Spec:       corev1.ServiceSpec{ClusterIP: "10.96.0.9", Ports: []corev1.ServicePort{{Port: 5432, Protocol: corev1.ProtocolTCP}}},
	})
	h.services = svcs
	h.start()
	pod := testPod("svcenv")
	h.m.UpdatePod(pod)
	h.settle()

	if _, ok := h.rt.Spec(cid(pod, "app", 0)); ok {
		t.Fatal("container created before the Services were read")
	}
	cs := h.containerStatus(pod, "app")
	if w := cs.State.Waiting; w == nil || w.Reason != "CreateContainerConfigError" || !strings.Contains(w.Message, "services have not yet been read") {
		t.Errorf("container state = %+v, want CreateContainerConfigError about the services", cs.State)
	}

	svcs.SetSynced()
	h.until(time.Minute, "Running once the Services were read", func() bool {
		st := h.lastStatus(pod)
		return st != nil && st.Phase == corev1.PodRunning
	})
	spec, _ := h.rt.Spec(cid(pod, "app", 0))
	for _, want := range []string{"DB_SERVICE_HOST=10.96.0.9", "DB_SERVICE_PORT=5432", "DB_PORT=tcp://10.96.0.9:5432"} {
		if !contains(spec.Env, want) {
			t.Errorf("env %q lacks %q", spec.Env, want)
		}
	}
}

// TestLogsRotatedWhileRunning checks that the Manager rotates a running container's log file
// once it passes ContainerLogMaxSize, within its 10 s period.
func TestLogsRotatedWhileRunning(t *testing.T) {
	h := newHarness(t)
	h.logMaxSize = 1024
	h.start()
	pod := testPod("chatty")
	h.m.UpdatePod(pod)
	h.until(time.Minute, "Running", func() bool {
		st := h.lastStatus(pod)
		return st != nil && st.Phase == corev1.PodRunning
	})
	path := pods.LogPath(h.dataDir, string(pod.UID), "app", 0)
	if err := os.WriteFile(path, []byte(strings.Repeat("a line of output\n", 100)), 0o644); err != nil {
		t.Fatal(err)
	}
	h.step(10 * time.Second)
	if st, err := os.Stat(path); err != nil || st.Size() != 0 {
		t.Errorf("current log after the rotation period: %v, %v; want emptied", st, err)
	}
	if st, err := os.Stat(path + ".1"); err != nil || st.Size() != 1700 {
		t.Errorf("rotated log: %v, %v; want the 1700 bytes", st, err)
	}
}
