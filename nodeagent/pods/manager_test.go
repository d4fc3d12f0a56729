package pods_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/bosun-gitops/bosun/nodeagent/pods"
	"github.com/bosun-gitops/bosun/nodeagent/pods/podstest"
)

func condition(st *corev1.PodStatus, t corev1.PodConditionType) corev1.ConditionStatus {
	for _, c := range st.Conditions {
		if c.Type == t {
			return c.Status
		}
	}
	return ""
}

func TestPodRunsAndReportsStatus(t *testing.T) {
	h := newHarness(t)
	h.start()
	pod := testPod("web")
	h.m.UpdatePod(pod)
	h.settle()

	st := h.lastStatus(pod)
	if st == nil || st.Phase != corev1.PodRunning {
		t.Fatalf("status = %+v, want Running", st)
	}
	if st.PodIP != "10.244.0.2" || st.HostIP != "192.168.1.10" || st.StartTime == nil {
		t.Errorf("podIP %q hostIP %q startTime %v", st.PodIP, st.HostIP, st.StartTime)
	}
	for _, c := range []corev1.PodConditionType{corev1.PodScheduled, corev1.PodInitialized, corev1.ContainersReady, corev1.PodReady} {
		if got := condition(st, c); got != corev1.ConditionTrue {
			t.Errorf("condition %s = %q, want True", c, got)
		}
	}
	cs := h.containerStatus(pod, "app")
	if cs.State.Running == nil || !cs.Ready || cs.Started == nil || !*cs.Started || cs.RestartCount != 0 {
		t.Errorf("container status = %+v", cs)
	}
	if want := "containerd://" + cid(pod, "app", 0); cs.ContainerID != want {
		t.Errorf("containerID = %q, want %q", cs.ContainerID, want)
	}
	if !strings.HasPrefix(cs.ImageID, testImage+"@sha256:") {
		t.Errorf("imageID = %q", cs.ImageID)
	}
	if h.m.RunningPods() != 1 {
		t.Errorf("RunningPods = %d, want 1", h.m.RunningPods())
	}
	spec, _ := h.rt.Spec(cid(pod, "app", 0))
	if diff := cmp.Diff([]string{"/bin/app", "serve"}, spec.Args); diff != "" {
		t.Errorf("argv (-want +got):\n%s", diff)
	}
	if spec.NetnsPath != "/run/bosun/netns/"+string(pod.UID) || spec.Hostname != "web" {
		t.Errorf("netns %q hostname %q", spec.NetnsPath, spec.Hostname)
	}
	if spec.LogPath != pods.LogPath(h.dataDir, string(pod.UID), "app", 0) {
		t.Errorf("log path %q", spec.LogPath)
	}
}

func TestStatusWrittenOnlyOnChange(t *testing.T) {
	h := newHarness(t)
	h.start()
	pod := testPod("web")
	h.m.UpdatePod(pod)
	h.step(5 * time.Second)
	n := len(h.status.Writes())
	if n == 0 {
		t.Fatal("no status written")
	}
	h.step(5 * time.Minute) // resyncs, nothing changes
	h.m.UpdatePod(pod)
	h.settle()
	if got := len(h.status.Writes()); got != n {
		t.Errorf("%d status writes after an idle period, want %d", got, n)
	}
	if err := h.rt.Exit(cid(pod, "app", 0), 1); err != nil {
		t.Fatal(err)
	}
	h.step(2 * time.Second)
	if got := len(h.status.Writes()); got == n {
		t.Error("no status write after the container exited")
	}
}

// TestStatusChangedBehindTheAgentsBackIsWrittenBack plays the API and its informer by hand: the
// node lifecycle controller marks a running pod not ready (its node's lease expired), and the
// agent, comparing with the API's copy rather than with what it wrote last, writes Ready=True
// back; a write that fails is retried without further news; the informer's copy that predates
// the agent's own write does not cause duplicate writes.
func TestStatusChangedBehindTheAgentsBackIsWrittenBack(t *testing.T) {
	h := newHarness(t)
	h.start()
	pod := testPod("web")
	pod.ResourceVersion = "1"
	h.m.UpdatePod(pod)
	h.step(5 * time.Second)
	writes := h.status.Writes()
	if len(writes) == 0 || condition(&writes[len(writes)-1].Status, corev1.PodReady) != corev1.ConditionTrue {
		t.Fatalf("pod not reported ready: %d writes", len(writes))
	}
	// The informer delivers the agent's write (through JSON, as from the API): nothing to do,
	// now or at the resyncs.
	api := throughJSON(t, writes[len(writes)-1])
	api.ResourceVersion = "2"
	h.m.UpdatePod(api)
	h.step(time.Minute)
	n := len(h.status.Writes())
	if n != len(writes) {
		t.Fatalf("%d status writes after the informer delivered the agent's own, want %d", n, len(writes))
	}

	markNotReady := func(p *corev1.Pod, rv string) *corev1.Pod {
		p = p.DeepCopy()
		p.ResourceVersion = rv
		for i := range p.Status.Conditions {
			if c := &p.Status.Conditions[i]; c.Type == corev1.PodReady {
				c.Status, c.Reason, c.Message = corev1.ConditionFalse, "NodeNotReady", "The node is not ready."
				c.LastTransitionTime = metav1.NewTime(h.clock.Now())
			}
		}
		return p
	}
	h.m.UpdatePod(markNotReady(api, "3"))
	h.settle()
	writes = h.status.Writes()
	if len(writes) != n+1 {
		t.Fatalf("%d status writes after the API's copy was marked not ready, want %d", len(writes), n+1)
	}
	back := writes[n]
	if back.ResourceVersion != "3" || condition(&back.Status, corev1.PodReady) != corev1.ConditionTrue {
		t.Fatalf("written back: resourceVersion %q Ready %s; want 3 and True", back.ResourceVersion, condition(&back.Status, corev1.PodReady))
	}
	for _, c := range back.Status.Conditions {
		if c.Type == corev1.PodReady && !c.LastTransitionTime.Time.Equal(h.clock.Now().Truncate(time.Second)) {
			t.Errorf("Ready's lastTransitionTime %s, want now (%s): it was False in the API", c.LastTransitionTime, h.clock.Now())
		}
		if c.Type == corev1.PodScheduled && c.Status != corev1.ConditionTrue {
			t.Errorf("PodScheduled lost: %+v", c)
		}
	}
	// Until the informer delivers that write, its copy is the one the write replaced: no rewrite.
	h.step(time.Minute)
	if got := len(h.status.Writes()); got != n+1 {
		t.Fatalf("%d status writes while the informer lagged, want %d", got, n+1)
	}
	api = throughJSON(t, back)
	api.ResourceVersion = "4"
	h.m.UpdatePod(api)
	h.step(time.Minute)
	if got := len(h.status.Writes()); got != n+1 {
		t.Fatalf("%d status writes after the informer caught up, want %d", got, n+1)
	}

	// Marked not ready again while the API refuses writes: written back once it accepts them,
	// without any further update of the pod.
	h.status.SetError(errors.New("the API is unavailable"))
	h.m.UpdatePod(markNotReady(api, "5"))
	h.step(3 * time.Second)
	if got := len(h.status.Writes()); got != n+1 {
		t.Fatalf("%d status writes while the API refused them, want %d", got, n+1)
	}
	h.status.SetError(nil)
	h.until(15*time.Second, "Ready written back after the API recovered", func() bool {
		w := h.status.Writes()
		return len(w) == n+2 && condition(&w[n+1].Status, corev1.PodReady) == corev1.ConditionTrue
	})
}

// throughJSON is pod as read back from the API.
func throughJSON(t *testing.T, pod *corev1.Pod) *corev1.Pod {
	t.Helper()
	b, err := json.Marshal(pod)
	if err != nil {
		t.Fatal(err)
	}
	out := &corev1.Pod{}
	if err := json.Unmarshal(b, out); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestRestartPolicyByExitCode(t *testing.T) {
	tests := []struct {
		policy      corev1.RestartPolicy
		exitCode    int32
		wantRestart bool
		wantPhase   corev1.PodPhase
		wantReason  string
	}{
		{corev1.RestartPolicyAlways, 0, true, corev1.PodRunning, ""},
		{corev1.RestartPolicyAlways, 1, true, corev1.PodRunning, ""},
		{corev1.RestartPolicyOnFailure, 0, false, corev1.PodSucceeded, "Completed"},
		{corev1.RestartPolicyOnFailure, 2, true, corev1.PodRunning, ""},
		{corev1.RestartPolicyNever, 0, false, corev1.PodSucceeded, "Completed"},
		{corev1.RestartPolicyNever, 3, false, corev1.PodFailed, "Error"},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s/%d", tt.policy, tt.exitCode), func(t *testing.T) {
			h := newHarness(t)
			h.start()
			pod := testPod("job")
			pod.Spec.RestartPolicy = tt.policy
			h.m.UpdatePod(pod)
			h.settle()
			if err := h.rt.Exit(cid(pod, "app", 0), tt.exitCode); err != nil {
				t.Fatal(err)
			}
			h.step(time.Minute)
			restarted := h.startCount(pod, "app") > 1
			if restarted != tt.wantRestart {
				t.Errorf("restarted = %v, want %v", restarted, tt.wantRestart)
			}
			st := h.lastStatus(pod)
			if st.Phase != tt.wantPhase {
				t.Errorf("phase = %s, want %s", st.Phase, tt.wantPhase)
			}
			cs := h.containerStatus(pod, "app")
			if tt.wantReason != "" {
				if cs.State.Terminated == nil || cs.State.Terminated.Reason != tt.wantReason || cs.State.Terminated.ExitCode != tt.exitCode {
					t.Errorf("state = %+v, want terminated %s", cs.State, tt.wantReason)
				}
			} else if cs.RestartCount != 1 || cs.LastTerminationState.Terminated == nil || cs.LastTerminationState.Terminated.ExitCode != tt.exitCode {
				t.Errorf("restartCount %d lastState %+v", cs.RestartCount, cs.LastTerminationState)
			}
		})
	}
}

func TestCrashLoopBackOffTimings(t *testing.T) {
	h := newHarness(t)
	h.rt.SetBehavior("app", podstest.Behavior{ExitImmediately: true, ExitCode: 1})
	h.start()
	pod := testPod("crash")
	start := h.clock.Now()
	h.m.UpdatePod(pod)

	// Record when each run started, in fake seconds since the pod was added.
	var starts []int
	record := func() {
		for n := h.startCount(pod, "app"); len(starts) < n; {
			starts = append(starts, int(h.clock.Since(start)/time.Second))
		}
	}
	h.settle()
	record()
	for i := 0; i < 2000 && len(starts) < 10; i++ {
		h.step(time.Second)
		record()
	}
	var gaps []int
	for i := 1; i < len(starts); i++ {
		gaps = append(gaps, starts[i]-starts[i-1])
	}
	// The kubelet restarts the first crash at once, then waits 10 s doubling to 5 min.
	if diff := cmp.Diff([]int{0, 10, 20, 40, 80, 160, 300, 300, 300}, gaps); diff != "" {
		t.Errorf("restart gaps in seconds (-want +got):\n%s", diff)
	}
	h.step(time.Second) // the status write is rate-limited
	cs := h.containerStatus(pod, "app")
	if cs.State.Waiting == nil || cs.State.Waiting.Reason != "CrashLoopBackOff" || !strings.Contains(cs.State.Waiting.Message, "back-off 5m0s") {
		t.Errorf("state = %+v, want CrashLoopBackOff back-off 5m0s", cs.State)
	}
	if cs.RestartCount != 9 || cs.LastTerminationState.Terminated == nil {
		t.Errorf("restartCount %d lastState %+v", cs.RestartCount, cs.LastTerminationState)
	}

	// A run of more than 10 minutes resets the back-off: restarted at once, then 10 s.
	h.rt.SetBehavior("app", podstest.Behavior{})
	h.until(6*time.Minute, "restart 10", func() bool { return h.startCount(pod, "app") == 11 })
	h.step(11 * time.Minute)
	h.rt.SetBehavior("app", podstest.Behavior{ExitImmediately: true, ExitCode: 1})
	if err := h.rt.Exit(cid(pod, "app", 10), 1); err != nil {
		t.Fatal(err)
	}
	h.settle()
	if got := h.startCount(pod, "app"); got != 12 {
		t.Fatalf("after a long run: %d starts, want 12 (immediate restart)", got)
	}
	h.step(9 * time.Second)
	if got := h.startCount(pod, "app"); got != 12 {
		t.Errorf("restarted before 10 s")
	}
	h.step(time.Second)
	if got := h.startCount(pod, "app"); got != 13 {
		t.Errorf("not restarted after 10 s: %d starts", got)
	}
}

func TestOOMKilledReported(t *testing.T) {
	h := newHarness(t)
	h.start()
	pod := testPod("oom")
	pod.Spec.RestartPolicy = corev1.RestartPolicyNever
	h.m.UpdatePod(pod)
	h.settle()
	if err := h.rt.OOMKill(cid(pod, "app", 0)); err != nil {
		t.Fatal(err)
	}
	h.step(2 * time.Second)
	cs := h.containerStatus(pod, "app")
	if cs.State.Terminated == nil || cs.State.Terminated.Reason != "OOMKilled" || cs.State.Terminated.ExitCode != 137 {
		t.Errorf("state = %+v, want OOMKilled 137", cs.State)
	}
	if got := h.lastStatus(pod).Phase; got != corev1.PodFailed {
		t.Errorf("phase = %s, want Failed", got)
	}
}

func execProbe(cmd string) *corev1.Probe {
	return &corev1.Probe{ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{cmd}}}}
}

func TestLivenessFailureRestarts(t *testing.T) {
	h := newHarness(t)
	healthy := true
	h.rt.SetExec(func(id string, cmd []string) (int, []byte, error) {
		if cmd[0] == "live" && !healthy {
			return 1, []byte("not ok"), nil
		}
		return 0, nil, nil
	})
	h.start()
	pod := testPod("live", corev1.Container{Name: "app", Image: testImage, LivenessProbe: execProbe("live")})
	h.m.UpdatePod(pod)
	h.step(30 * time.Second)
	if h.startCount(pod, "app") != 1 {
		t.Fatal("restarted while healthy")
	}
	healthy = false
	// Three failures 10 s apart (the defaults), then a restart.
	h.until(40*time.Second, "liveness restart", func() bool { return h.startCount(pod, "app") == 2 })
	h.step(time.Second) // the status write is rate-limited
	cs := h.containerStatus(pod, "app")
	if cs.RestartCount != 1 || cs.LastTerminationState.Terminated == nil || cs.LastTerminationState.Terminated.ExitCode != 143 {
		t.Errorf("restartCount %d lastState %+v", cs.RestartCount, cs.LastTerminationState)
	}
	var killing bool
	for _, e := range h.rec.Events() {
		if e.Reason == "Killing" && strings.Contains(e.Message, "failed liveness probe") {
			killing = true
		}
	}
	if !killing {
		t.Error("no Killing event naming the liveness probe")
	}
}

func TestReadinessTogglesReady(t *testing.T) {
	h := newHarness(t)
	ready := false
	h.rt.SetExec(func(id string, cmd []string) (int, []byte, error) {
		if ready {
			return 0, nil, nil
		}
		return 1, nil, nil
	})
	h.start()
	pod := testPod("ready", corev1.Container{Name: "app", Image: testImage, ReadinessProbe: execProbe("ready")})
	h.m.UpdatePod(pod)
	h.step(15 * time.Second)
	st := h.lastStatus(pod)
	if st.Phase != corev1.PodRunning || condition(st, corev1.PodReady) != corev1.ConditionFalse {
		t.Fatalf("phase %s Ready %s, want Running and not ready", st.Phase, condition(st, corev1.PodReady))
	}
	ready = true
	h.until(15*time.Second, "ready", func() bool { return condition(h.lastStatus(pod), corev1.PodReady) == corev1.ConditionTrue })
	if !h.containerStatus(pod, "app").Ready {
		t.Error("container not ready")
	}
	ready = false
	h.until(45*time.Second, "not ready", func() bool { return condition(h.lastStatus(pod), corev1.PodReady) == corev1.ConditionFalse })
	if h.startCount(pod, "app") != 1 {
		t.Error("a readiness failure restarted the container")
	}
}

func TestStartupProbeGatesLiveness(t *testing.T) {
	h := newHarness(t)
	started := false
	h.rt.SetExec(func(id string, cmd []string) (int, []byte, error) {
		switch {
		case cmd[0] == "live":
			return 1, nil, nil // liveness would fail: it must not run before startup succeeds
		case started:
			return 0, nil, nil
		}
		return 1, nil, nil
	})
	h.start()
	startup := execProbe("startup")
	startup.FailureThreshold = 30
	live := execProbe("live")
	pod := testPod("slow", corev1.Container{Name: "app", Image: testImage, StartupProbe: startup, LivenessProbe: live})
	h.m.UpdatePod(pod)
	h.step(2 * time.Minute)
	if n := h.startCount(pod, "app"); n != 1 {
		t.Fatalf("%d starts before the startup probe succeeded, want 1", n)
	}
	for _, c := range h.calls.List() {
		if strings.Contains(c, "[live]") {
			t.Fatalf("liveness probe ran before startup succeeded: %s", c)
		}
	}
	if cs := h.containerStatus(pod, "app"); *cs.Started {
		t.Error("started = true before the startup probe succeeded")
	}
	started = true
	h.until(15*time.Second, "started", func() bool { return *h.containerStatus(pod, "app").Started })
	h.until(45*time.Second, "liveness restart", func() bool { return h.startCount(pod, "app") == 2 })
}

func TestInitContainersInOrder(t *testing.T) {
	h := newHarness(t)
	h.start()
	pod := testPod("init")
	pod.Spec.InitContainers = []corev1.Container{{Name: "one", Image: testImage}, {Name: "two", Image: testImage}}
	h.m.UpdatePod(pod)
	h.settle()
	if h.startCount(pod, "two") != 0 || h.startCount(pod, "app") != 0 {
		t.Fatal("started before init container one completed")
	}
	st := h.lastStatus(pod)
	if st.Phase != corev1.PodPending || condition(st, corev1.PodInitialized) != corev1.ConditionFalse {
		t.Errorf("phase %s Initialized %s", st.Phase, condition(st, corev1.PodInitialized))
	}
	if w := h.containerStatus(pod, "app").State.Waiting; w == nil || w.Reason != "PodInitializing" {
		t.Errorf("app state %+v, want PodInitializing", w)
	}
	// A failure of an init container restarts it (policy Always), with back-off.
	if err := h.rt.Exit(cid(pod, "one", 0), 1); err != nil {
		t.Fatal(err)
	}
	h.settle()
	if h.startCount(pod, "one") != 2 || h.startCount(pod, "two") != 0 {
		t.Fatalf("init container one not restarted alone")
	}
	if err := h.rt.Exit(cid(pod, "one", 1), 0); err != nil {
		t.Fatal(err)
	}
	h.settle()
	if h.startCount(pod, "two") != 1 || h.startCount(pod, "app") != 0 {
		t.Fatal("two did not start after one, or app started too early")
	}
	if err := h.rt.Exit(cid(pod, "two", 0), 0); err != nil {
		t.Fatal(err)
	}
	h.step(2 * time.Second)
	if h.startCount(pod, "app") != 1 {
		t.Fatal("app did not start after the init containers")
	}
	st = h.lastStatus(pod)
	if st.Phase != corev1.PodRunning || condition(st, corev1.PodInitialized) != corev1.ConditionTrue {
		t.Errorf("phase %s Initialized %s", st.Phase, condition(st, corev1.PodInitialized))
	}
	if cs := h.containerStatus(pod, "one"); cs.State.Terminated == nil || cs.State.Terminated.Reason != "Completed" || cs.RestartCount != 1 {
		t.Errorf("init one status %+v", cs)
	}
}

func TestInitContainerFailureNeverFailsPod(t *testing.T) {
	h := newHarness(t)
	h.rt.SetBehavior("one", podstest.Behavior{ExitImmediately: true, ExitCode: 2})
	h.start()
	pod := testPod("initfail")
	pod.Spec.RestartPolicy = corev1.RestartPolicyNever
	pod.Spec.InitContainers = []corev1.Container{{Name: "one", Image: testImage}}
	h.m.UpdatePod(pod)
	h.step(time.Minute)
	if h.startCount(pod, "one") != 1 || h.startCount(pod, "app") != 0 {
		t.Fatalf("starts: one=%d app=%d", h.startCount(pod, "one"), h.startCount(pod, "app"))
	}
	if got := h.lastStatus(pod).Phase; got != corev1.PodFailed {
		t.Errorf("phase = %s, want Failed", got)
	}
}

// TestImageNeverPullAndInvalidName checks the kubelet's reasons for an image that must not be
// pulled and is missing (ErrImageNeverPull, no back-off: an image imported meanwhile starts at
// the next sync) and for an image reference that cannot be parsed (InvalidImageName).
func TestImageNeverPullAndInvalidName(t *testing.T) {
	h := newHarness(t)
	const local, invalid = "registry.test/local:1", "registry.test/UPPER:1"
	h.rt.SetPullError(invalid, fmt.Errorf("%w %q: repository name must be lowercase", pods.ErrInvalidImageName, invalid))
	h.start()
	never := testPod("never", corev1.Container{Name: "app", Image: local, ImagePullPolicy: corev1.PullNever})
	bad := testPod("bad", corev1.Container{Name: "app", Image: invalid})
	h.m.UpdatePod(never)
	h.m.UpdatePod(bad)
	h.settle()
	if w := h.containerStatus(never, "app").State.Waiting; w == nil || w.Reason != "ErrImageNeverPull" ||
		w.Message != `Container image "registry.test/local:1" is not present with pull policy of Never` {
		t.Errorf("imagePullPolicy Never, image missing: waiting %+v, want ErrImageNeverPull", w)
	}
	if w := h.containerStatus(bad, "app").State.Waiting; w == nil || w.Reason != "InvalidImageName" ||
		!strings.Contains(w.Message, "repository name must be lowercase") {
		t.Errorf("invalid image name: waiting %+v, want InvalidImageName with the parser's message", w)
	}
	h.step(time.Second)
	if w := h.containerStatus(never, "app").State.Waiting; w == nil || w.Reason != "ErrImageNeverPull" {
		t.Errorf("a second later: waiting %+v, want ErrImageNeverPull still (no back-off reason)", w)
	}
	h.rt.SetImage(local, pods.ImageInfo{Cmd: []string{"run"}})
	h.until(2*time.Minute, "running once the image is on the node", func() bool {
		return h.containerStatus(never, "app").State.Running != nil
	})
}

func TestImagePullErrors(t *testing.T) {
	h := newHarness(t)
	const bad = "registry.test/missing:1"
	h.rt.SetPullError(bad, errors.New(`failed to resolve reference "registry.test/missing:1": not found`))
	h.start()
	pod := testPod("pull", corev1.Container{Name: "app", Image: bad})
	start := h.clock.Now()
	h.m.UpdatePod(pod)
	h.settle()
	w := h.containerStatus(pod, "app").State.Waiting
	if w == nil || w.Reason != "ErrImagePull" || !strings.Contains(w.Message, "failed to resolve reference") {
		t.Fatalf("waiting = %+v, want ErrImagePull with the registry's message", w)
	}
	h.step(time.Second)
	w = h.containerStatus(pod, "app").State.Waiting
	if w == nil || w.Reason != "ImagePullBackOff" || !strings.Contains(w.Message, "failed to resolve reference") {
		t.Fatalf("waiting = %+v, want ImagePullBackOff with the registry's message", w)
	}
	// Pull attempts back off 10 s, 20 s, 40 s.
	var attempts []int
	for i := 0; i < 75; i++ {
		n := len(h.rt.Pulls())
		h.step(time.Second)
		if len(h.rt.Pulls()) > n {
			attempts = append(attempts, int(h.clock.Since(start)/time.Second))
		}
	}
	if diff := cmp.Diff([]int{10, 30, 70}, attempts); diff != "" {
		t.Errorf("pull retries at seconds (-want +got):\n%s", diff)
	}
	if h.lastStatus(pod).Phase != corev1.PodPending {
		t.Errorf("phase = %s, want Pending", h.lastStatus(pod).Phase)
	}
	h.rt.SetPullError(bad, nil)
	h.rt.SetImage(bad, pods.ImageInfo{Cmd: []string{"run"}})
	h.until(2*time.Minute, "running after the image appears", func() bool {
		return h.containerStatus(pod, "app").State.Running != nil
	})
}

func TestPullSecretsAndPolicy(t *testing.T) {
	h := newHarness(t)
	h.objects.AddSecret(&corev1.Secret{
		ObjectMeta: metav1ObjectMeta("default", "regcred"),
		Type:       corev1.SecretTypeDockerConfigJson,
		Data: map[string][]byte{corev1.DockerConfigJsonKey: []byte(
			`{"auths":{"https://registry.test/v1/":{"username":"u","password":"p"},"other:5000":{"auth":"YTpi"}}}`)},
	})
	h.start()
	pod := testPod("creds", corev1.Container{Name: "app", Image: testImage})
	pod.Spec.ImagePullSecrets = []corev1.LocalObjectReference{{Name: "regcred"}}
	h.m.UpdatePod(pod)
	h.settle()
	pulls := h.rt.Pulls()
	want := podstest.PullRecord{Ref: testImage, Policy: pods.PullIfNotPresent, Auth: []pods.RegistryAuth{
		{Host: "other:5000", Username: "a", Password: "b"}, {Host: "registry.test", Username: "u", Password: "p"},
	}}
	if len(pulls) == 0 {
		t.Fatal("no pull")
	}
	if diff := cmp.Diff(want, pulls[0]); diff != "" {
		t.Errorf("pull (-want +got):\n%s", diff)
	}
}

func TestGracefulStopOrder(t *testing.T) {
	h := newHarness(t)
	h.start()
	grace := int64(7)
	pod := testPod("stop",
		corev1.Container{Name: "a", Image: testImage, Lifecycle: &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{Exec: &corev1.ExecAction{Command: []string{"drain"}}}}},
		corev1.Container{Name: "b", Image: testImage})
	pod.Spec.TerminationGracePeriodSeconds = &grace
	h.m.UpdatePod(pod)
	h.settle()
	podDir := pods.PodDir(h.dataDir, string(pod.UID))
	if _, err := os.Stat(podDir); err != nil {
		t.Fatalf("pod dir: %v", err)
	}
	h.calls.Reset()
	h.m.DeletePod(pod)
	h.settle()

	calls := h.calls.List()
	idx := func(s string) int {
		for i, c := range calls {
			if strings.HasPrefix(c, s) {
				return i
			}
		}
		t.Fatalf("no call %q in %q", s, calls)
		return -1
	}
	preStop := idx("Exec " + cid(pod, "a", 0) + " [drain]")
	stopA, stopB := idx("StopContainer "+cid(pod, "a", 0)), idx("StopContainer "+cid(pod, "b", 0)+" 7s")
	rmA, rmB := idx("RemoveContainer "+cid(pod, "a", 0)), idx("RemoveContainer "+cid(pod, "b", 0))
	teardown := idx("TeardownPod " + string(pod.UID))
	if !(preStop < stopA && stopA < rmA && stopB < rmA && stopA < rmB && stopB < rmB && rmA < teardown && rmB < teardown) {
		t.Errorf("calls out of order: %q", calls)
	}
	if _, err := os.Stat(podDir); !os.IsNotExist(err) {
		t.Errorf("pod dir still there: %v", err)
	}
	if len(h.rt.Containers()) != 0 || h.m.RunningPods() != 0 {
		t.Errorf("left behind: containers %v, running pods %d", h.rt.Containers(), h.m.RunningPods())
	}
}

func TestAdoptionAfterRestartAndCleanup(t *testing.T) {
	h := newHarness(t)
	h.start()
	keep, gone := testPod("keep"), testPod("gone")
	grace := int64(3)
	gone.Spec.TerminationGracePeriodSeconds = &grace
	h.m.UpdatePod(keep)
	h.m.UpdatePod(gone)
	h.settle()
	keepStatus := h.lastStatus(keep)
	h.stop() // the agent goes down; containers keep running

	keep.Status = *keepStatus
	h.calls.Reset()
	writes := len(h.status.Writes())
	h.start()
	h.m.SyncAll([]*corev1.Pod{keep}) // "gone" was deleted while the agent was down
	h.settle()

	for _, c := range h.calls.List() {
		if strings.HasPrefix(c, "CreateContainer") || strings.HasPrefix(c, "StartContainer") {
			t.Errorf("adoption created or started a container: %s", c)
		}
	}
	// The pod deleted meanwhile is stopped with its own grace period, not the default.
	if !slices.Contains(h.calls.List(), "StopContainer "+cid(gone, "app", 0)+" 3s") {
		t.Errorf("the deleted pod was not stopped with its grace period of 3s: %q", h.calls.List())
	}
	var ids []string
	for _, c := range h.rt.Containers() {
		ids = append(ids, c.ID)
	}
	if diff := cmp.Diff([]string{cid(keep, "app", 0)}, ids); diff != "" {
		t.Errorf("containers after restart (-want +got):\n%s", diff)
	}
	if _, ok := h.net.Ports(string(gone.UID)); ok {
		t.Error("network of the deleted pod still set up")
	}
	if _, err := os.Stat(pods.PodDir(h.dataDir, string(gone.UID))); !os.IsNotExist(err) {
		t.Errorf("dir of the deleted pod: %v", err)
	}
	if cs := h.containerStatus(keep, "app"); cs.State.Running == nil || cs.RestartCount != 0 {
		t.Errorf("adopted container status %+v", cs)
	}
	if got := len(h.status.Writes()); got != writes {
		t.Errorf("%d status writes after adoption, want none (status unchanged); diff (-before +after):\n%s", got-writes, cmp.Diff(keepStatus, h.lastStatus(keep)))
	}
	// The adopted container is still watched: its exit restarts it.
	if err := h.rt.Exit(cid(keep, "app", 0), 1); err != nil {
		t.Fatal(err)
	}
	h.settle()
	if h.startCount(keep, "app") != 1 {
		t.Errorf("adopted container not restarted after its exit")
	}
}

func TestSpecChangeRestartsContainer(t *testing.T) {
	h := newHarness(t)
	h.start()
	pod := testPod("change")
	h.m.UpdatePod(pod)
	h.settle()
	changed := pod.DeepCopy()
	changed.Spec.Containers[0].Args = []string{"--new"}
	h.m.UpdatePod(changed)
	h.settle()
	spec, ok := h.rt.Spec(cid(pod, "app", 1))
	if !ok {
		t.Fatal("container not recreated after a spec change")
	}
	if diff := cmp.Diff([]string{"/bin/app", "--new"}, spec.Args); diff != "" {
		t.Errorf("argv (-want +got):\n%s", diff)
	}
}

func TestHostPortsAndReadinessHTTPPort(t *testing.T) {
	h := newHarness(t)
	h.start()
	pod := testPod("ports", corev1.Container{Name: "app", Image: testImage, Ports: []corev1.ContainerPort{
		{Name: "http", ContainerPort: 80, HostPort: 8080, Protocol: corev1.ProtocolTCP},
		{ContainerPort: 53, HostPort: 5353, Protocol: corev1.ProtocolUDP},
		{ContainerPort: 9090},
	}})
	h.m.UpdatePod(pod)
	h.settle()
	ports, _ := h.net.Ports(string(pod.UID))
	want := []pods.PortMapping{{HostPort: 8080, ContainerPort: 80, Protocol: "tcp"}, {HostPort: 5353, ContainerPort: 53, Protocol: "udp"}}
	if diff := cmp.Diff(want, ports); diff != "" {
		t.Errorf("host ports (-want +got):\n%s", diff)
	}
	_ = intstr.FromInt32(0)
}

// TestFinishedPodReleasesItsNetwork checks that a pod that has finished gives its network
// namespace and IP back at once, keeps its exited containers (their logs) and the IP in its
// status until it is deleted, and is cleaned up as usual then, also after an agent restart.
func TestFinishedPodReleasesItsNetwork(t *testing.T) {
	for _, restartAgent := range []bool{false, true} {
		t.Run(fmt.Sprintf("agent-restart=%v", restartAgent), func(t *testing.T) {
			h := newHarness(t)
			h.start()
			pod := testPod("job")
			pod.Spec.RestartPolicy = corev1.RestartPolicyNever
			h.m.UpdatePod(pod)
			h.settle()
			if _, ok := h.net.Ports(string(pod.UID)); !ok {
				t.Fatal("the running pod has no network")
			}
			ip := h.lastStatus(pod).PodIP
			if err := h.rt.Exit(cid(pod, "app", 0), 0); err != nil {
				t.Fatal(err)
			}
			h.step(time.Minute)
			if restartAgent {
				// The restarted agent's informer has the pod as last written.
				h.stop()
				h.start()
				seen := pod.DeepCopy()
				seen.Status = *h.lastStatus(pod)
				h.m.UpdatePod(seen)
				h.step(time.Minute)
			}
			st := h.lastStatus(pod)
			if st.Phase != corev1.PodSucceeded {
				t.Fatalf("phase %s, want Succeeded", st.Phase)
			}
			if _, ok := h.net.Ports(string(pod.UID)); ok {
				t.Error("the finished pod still holds its network namespace and IP")
			}
			if st.PodIP != ip || ip == "" {
				t.Errorf("status podIP %q after the pod finished, want the one it ran with, %q", st.PodIP, ip)
			}
			if len(h.rt.Containers()) != 1 {
				t.Errorf("containers %v; the finished pod's exited container (its logs) must stay until the pod is deleted", h.rt.Containers())
			}
			if n := strings.Count(strings.Join(h.calls.List(), "\n"), "SetupPod "+string(pod.UID)); n != 1 {
				t.Errorf("the pod's network was set up %d times, want once", n)
			}

			h.m.DeletePod(pod)
			h.settle()
			if len(h.rt.Containers()) != 0 || h.m.RunningPods() != 0 {
				t.Errorf("left behind after delete: containers %v, running pods %d", h.rt.Containers(), h.m.RunningPods())
			}
		})
	}
}

// TestGracefulDeletion checks the agent's part of a graceful pod deletion: a pod marked with a
// deletionTimestamp has its containers stopped within deletionGracePeriodSeconds, is then
// deleted for good through the API (not before its containers stopped), and its removal cleans
// up containers and network.
func TestGracefulDeletion(t *testing.T) {
	h := newHarness(t)
	h.start()
	pod := testPod("bye")
	h.m.UpdatePod(pod)
	h.settle()
	type seen struct {
		running []string
		network bool
	}
	atDelete := make(chan seen, 1)
	h.status.OnDelete = func(p *corev1.Pod) {
		var s seen
		for _, c := range h.rt.Containers() {
			if c.State == pods.StateRunning {
				s.running = append(s.running, c.ID)
			}
		}
		_, s.network = h.net.Ports(string(p.UID))
		atDelete <- s
		go h.m.DeletePod(p) // the API's delete event
	}
	marked := pod.DeepCopy()
	grace := int64(4)
	ts := metav1.NewTime(h.clock.Now().Add(4 * time.Second))
	marked.DeletionTimestamp, marked.DeletionGracePeriodSeconds = &ts, &grace
	h.m.UpdatePod(marked)
	h.settle()

	if !slices.Contains(h.calls.List(), "StopContainer "+cid(pod, "app", 0)+" 4s") {
		t.Errorf("the container was not stopped with the deletion's grace period of 4s: %q", h.calls.List())
	}
	select {
	case s := <-atDelete:
		if len(s.running) > 0 {
			t.Errorf("the pod was deleted for good while %v still ran", s.running)
		}
		if !s.network {
			t.Error("the network was torn down before the pod was deleted; it goes with the pod's removal")
		}
	default:
		t.Fatalf("the stopped pod was not deleted through the API; deletes %v", h.status.Deletes())
	}
	h.settle()
	if got := h.status.Deletes(); len(got) != 1 {
		t.Errorf("deletes %v, want one", got)
	}
	if len(h.rt.Containers()) != 0 || h.m.RunningPods() != 0 {
		t.Errorf("left behind: containers %v, running pods %d", h.rt.Containers(), h.m.RunningPods())
	}
	if _, ok := h.net.Ports(string(pod.UID)); ok {
		t.Error("the deleted pod's network is still set up")
	}
}
