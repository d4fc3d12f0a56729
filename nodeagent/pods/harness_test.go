package pods_test

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/bosun-gitops/bosun/nodeagent/pods"
	"github.com/bosun-gitops/bosun/nodeagent/pods/podstest"
)

const testImage = "registry.test/app:1.0"

// harness runs a Manager against the podstest fakes on a fake clock.
type harness struct {
	t     *testing.T
	clock *clocktesting.FakeClock
	calls *podstest.Calls
	rt    *podstest.Runtime
	net   *podstest.Network
	// network, when set, is the Manager's network instead of net (e.g. a wrapper of net).
	network pods.Network
	// services, when set, gives the containers their service variables.
	services pods.ServiceLister
	// logMaxSize, when set, is the Manager's ContainerLogMaxSize.
	logMaxSize int64
	status     *podstest.StatusWriter
	objects    *podstest.Objects
	rec        *podstest.Recorder
	mounter    *podstest.Mounter
	dataDir    string
	// reg holds the running Manager's metrics (a new registry per start).
	reg    *prometheus.Registry
	m      *pods.Manager
	cancel context.CancelFunc
	done   chan error
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	clk := clocktesting.NewFakeClock(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	calls := &podstest.Calls{}
	h := &harness{
		t: t, clock: clk, calls: calls,
		rt: podstest.NewRuntime(clk, calls), net: podstest.NewNetwork(calls),
		status: &podstest.StatusWriter{}, objects: &podstest.Objects{}, rec: &podstest.Recorder{},
		mounter: &podstest.Mounter{}, dataDir: t.TempDir(),
	}
	h.rt.SetImage(testImage, pods.ImageInfo{Entrypoint: []string{"/bin/app"}, Cmd: []string{"serve"}, Env: []string{"PATH=/bin"}})
	return h
}

// start creates the manager and runs it; restarting an agent is another start on the same fakes.
func (h *harness) start() {
	h.t.Helper()
	var network pods.Network = h.net
	if h.network != nil {
		network = h.network
	}
	reg := prometheus.NewRegistry()
	h.reg = reg
	m, err := pods.NewManager(pods.ManagerConfig{
		NodeName: "node-1", DataDir: h.dataDir, Runtime: h.rt, Network: network, Status: h.status,
		Objects: h.objects, Recorder: h.rec, Mounter: h.mounter, Services: h.services, ContainerLogMaxSize: h.logMaxSize, ClusterDNS: []string{"10.96.0.10"},
		NodeIP: "192.168.1.10", Metrics: pods.NewMetrics(reg), Clock: h.clock, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		h.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h.m, h.cancel, h.done = m, cancel, make(chan error, 1)
	go func() { h.done <- m.Run(ctx) }()
	h.t.Cleanup(h.stop)
}

// stop ends the manager as an agent shutdown would (containers keep running).
func (h *harness) stop() {
	if h.cancel == nil {
		return
	}
	h.cancel()
	if err := <-h.done; err != nil {
		h.t.Errorf("Run: %v", err)
	}
	h.cancel = nil
}

// settle waits until every worker has caught up with the news (exits, timers, updates).
func (h *harness) settle() {
	h.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	quiet := 0
	for quiet < 3 {
		if time.Now().After(deadline) {
			h.t.Fatalf("pod workers did not settle (busy=%d, pending events=%d)", pods.WorkersBusy(h.m), h.rt.PendingEvents())
		}
		time.Sleep(time.Millisecond)
		if pods.Started(h.m) && pods.WorkersBusy(h.m) == 0 && h.rt.PendingEvents() == 0 {
			quiet++
		} else {
			quiet = 0
		}
	}
}

// step advances the fake clock by d one second at a time, letting the workers catch up.
func (h *harness) step(d time.Duration) {
	h.t.Helper()
	h.settle()
	for ; d > 0; d -= time.Second {
		h.clock.Step(min(d, time.Second))
		h.settle()
	}
}

// until advances the clock a second at a time until cond holds, failing after max.
func (h *harness) until(max time.Duration, what string, cond func() bool) {
	h.t.Helper()
	h.settle()
	for waited := time.Duration(0); !cond(); waited += time.Second {
		if waited >= max {
			h.t.Fatalf("%s: not reached after %s of fake time", what, max)
		}
		h.clock.Step(time.Second)
		h.settle()
	}
}

func (h *harness) lastStatus(pod *corev1.Pod) *corev1.PodStatus {
	return h.status.Last(string(pod.UID))
}

func (h *harness) containerStatus(pod *corev1.Pod, name string) corev1.ContainerStatus {
	h.t.Helper()
	st := h.lastStatus(pod)
	if st == nil {
		h.t.Fatalf("no status written for %s", pod.Name)
	}
	for _, cs := range append(st.InitContainerStatuses, st.ContainerStatuses...) {
		if cs.Name == name {
			return cs
		}
	}
	h.t.Fatalf("no status of container %s", name)
	return corev1.ContainerStatus{}
}

// startCount counts the StartContainer calls of a container.
func (h *harness) startCount(pod *corev1.Pod, container string) int {
	n := 0
	prefix := "StartContainer " + string(pod.UID) + "-" + container + "-"
	for _, c := range h.calls.List() {
		if len(c) > len(prefix) && c[:len(prefix)] == prefix {
			n++
		}
	}
	return n
}

func testPod(name string, containers ...corev1.Container) *corev1.Pod {
	if len(containers) == 0 {
		containers = []corev1.Container{{Name: "app", Image: testImage}}
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", UID: types.UID("uid-" + name)},
		Spec: corev1.PodSpec{
			NodeName: "node-1", Containers: containers, RestartPolicy: corev1.RestartPolicyAlways,
		},
		Status: corev1.PodStatus{Phase: corev1.PodPending, Conditions: []corev1.PodCondition{
			{Type: corev1.PodScheduled, Status: corev1.ConditionTrue},
		}},
	}
}

func cid(pod *corev1.Pod, container string, restart int32) string {
	return pods.ContainerID(string(pod.UID), container, restart)
}

func metav1ObjectMeta(ns, name string) metav1.ObjectMeta {
	return metav1.ObjectMeta{Namespace: ns, Name: name}
}

// metricCounts returns the observation counts of the running Manager's histograms, keyed
// "pod_start" and by operation.
func (h *harness) metricCounts() map[string]uint64 {
	h.t.Helper()
	families, err := h.reg.Gather()
	if err != nil {
		h.t.Fatal(err)
	}
	out := map[string]uint64{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			key := "pod_start"
			for _, l := range m.GetLabel() {
				if l.GetName() == "operation" {
					key = l.GetValue()
				}
			}
			out[key] = m.GetHistogram().GetSampleCount()
		}
	}
	return out
}
