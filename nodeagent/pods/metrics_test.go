package pods_test

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestPodStartMetrics checks what the pod start and runtime operation histograms count: one
// start per pod the agent brings up, none for a running pod adopted after an agent restart.
func TestPodStartMetrics(t *testing.T) {
	h := newHarness(t)
	h.start()
	pod := testPod("web")
	h.m.UpdatePod(pod)
	h.settle()
	want := map[string]uint64{"pod_start": 1, "network_setup": 1, "image": 1, "create_container": 1, "start_container": 1, "status_update": 1}
	if diff := cmp.Diff(want, h.metricCounts()); diff != "" {
		t.Errorf("after one pod start (-want +got):\n%s", diff)
	}

	h.stop()
	h.start()
	running := pod.DeepCopy()
	running.Status = *h.lastStatus(pod)
	running.Status.Conditions = nil // makes the new agent write its status again
	h.m.UpdatePod(running)
	h.settle()
	got := h.metricCounts()
	if got["status_update"] == 0 {
		t.Fatal("the restarted agent wrote no status; the check below would prove nothing")
	}
	for _, k := range []string{"pod_start", "create_container", "start_container"} {
		if got[k] != 0 {
			t.Errorf("after an agent restart adopted the running pod: %s counted %d times, want 0", k, got[k])
		}
	}
}
