package pods_test

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"

	"github.com/bosun-gitops/bosun/nodeagent/pods"
)

func boolp(v bool) *bool    { return &v }
func int64p(v int64) *int64 { return &v }

// TestRunAsNonRoot checks that a container which must not run as root, and would, is not created:
// it waits with the kubelet's CreateContainerConfigError and message, and starts once its image
// runs as another user.
func TestRunAsNonRoot(t *testing.T) {
	h := newHarness(t)
	images := map[string]string{ // image → its config's User
		"registry.test/root:1":    "",
		"registry.test/zero:1":    "0:0",
		"registry.test/named:1":   "nobody",
		"registry.test/numeric:1": "1000:1000",
	}
	for ref, user := range images {
		h.rt.SetImage(ref, pods.ImageInfo{Cmd: []string{"run"}, User: user})
	}
	h.start()
	podNonRoot := &corev1.PodSecurityContext{RunAsNonRoot: boolp(true)}
	tests := []struct {
		name    string
		image   string
		podSC   *corev1.PodSecurityContext
		ctrSC   *corev1.SecurityContext
		wantErr string // "" = the container runs
	}{
		{name: "image without a user runs as root", image: "registry.test/root:1", podSC: podNonRoot,
			wantErr: "container has runAsNonRoot and image will run as root"},
		{name: "image user 0", image: "registry.test/zero:1", ctrSC: &corev1.SecurityContext{RunAsNonRoot: boolp(true)},
			wantErr: "container has runAsNonRoot and image will run as root"},
		{name: "image user by name", image: "registry.test/named:1", podSC: podNonRoot,
			wantErr: "container has runAsNonRoot and image has non-numeric user (nobody), cannot verify user is non-root"},
		{name: "runAsUser 0", image: "registry.test/numeric:1", podSC: podNonRoot, ctrSC: &corev1.SecurityContext{RunAsUser: int64p(0)},
			wantErr: "container's runAsUser breaks non-root policy"},
		{name: "numeric image user", image: "registry.test/numeric:1", podSC: podNonRoot},
		{name: "runAsUser on a root image", image: "registry.test/root:1", podSC: &corev1.PodSecurityContext{RunAsNonRoot: boolp(true), RunAsUser: int64p(1000)}},
		{name: "the container's runAsNonRoot false wins", image: "registry.test/root:1", podSC: podNonRoot, ctrSC: &corev1.SecurityContext{RunAsNonRoot: boolp(false)}},
		{name: "not asked", image: "registry.test/root:1"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pod := testPod("nonroot"+string(rune('a'+i)), corev1.Container{Name: "app", Image: tt.image, SecurityContext: tt.ctrSC})
			pod.Spec.SecurityContext = tt.podSC
			h.m.UpdatePod(pod)
			h.settle()
			cs := h.containerStatus(pod, "app")
			_, created := h.rt.Spec(cid(pod, "app", 0))
			if tt.wantErr == "" {
				if cs.State.Running == nil || !created {
					t.Fatalf("state %+v (created: %v), want running", cs.State, created)
				}
				return
			}
			where := ` (pod: "` + pod.Name + `_default(` + string(pod.UID) + `)", container: app)`
			want := &corev1.ContainerStateWaiting{Reason: "CreateContainerConfigError", Message: tt.wantErr + where}
			if diff := cmp.Diff(want, cs.State.Waiting); diff != "" {
				t.Errorf("waiting (-want +got):\n%s", diff)
			}
			if created {
				t.Errorf("the container was created")
			}
			if !hasEvent(h, pod, "Failed", "Error: "+tt.wantErr) {
				t.Errorf("no Failed event with the message: %+v", h.rec.Events())
			}
		})
	}

	// The worker retries: once the image runs as another user, the container starts.
	pod := testPod("nonroot-retry", corev1.Container{Name: "app", Image: "registry.test/named:1"})
	pod.Spec.SecurityContext = podNonRoot
	h.m.UpdatePod(pod)
	h.settle()
	if w := h.containerStatus(pod, "app").State.Waiting; w == nil || w.Reason != "CreateContainerConfigError" {
		t.Fatalf("waiting = %+v, want CreateContainerConfigError", w)
	}
	h.rt.SetImage("registry.test/named:1", pods.ImageInfo{Cmd: []string{"run"}, User: "65534"})
	h.until(time.Minute, "running once the image's user is numeric", func() bool {
		return h.containerStatus(pod, "app").State.Running != nil
	})
}

func hasEvent(h *harness, pod *corev1.Pod, reason, messagePrefix string) bool {
	for _, e := range h.rec.Events() {
		if e.Pod == pod.Namespace+"/"+pod.Name && e.Reason == reason && strings.HasPrefix(e.Message, messagePrefix) {
			return true
		}
	}
	return false
}

// TestSecurityContextReachesRuntime checks the ContainerSpec the worker hands the runtime: the
// pod's user, group and runAsNonRoot under the container's, the pod's supplementalGroups, the
// container's own settings, capability names as the OCI spec writes them.
func TestSecurityContextReachesRuntime(t *testing.T) {
	h := newHarness(t)
	h.start()
	pod := testPod("secure",
		corev1.Container{Name: "app", Image: testImage, SecurityContext: &corev1.SecurityContext{
			RunAsGroup:               int64p(3000),
			ReadOnlyRootFilesystem:   boolp(true),
			AllowPrivilegeEscalation: boolp(false),
			Capabilities: &corev1.Capabilities{
				Add:  []corev1.Capability{"net_bind_service", "CAP_NET_RAW"},
				Drop: []corev1.Capability{"all"},
			},
		}},
		corev1.Container{Name: "plain", Image: testImage},
		corev1.Container{Name: "priv", Image: testImage, SecurityContext: &corev1.SecurityContext{
			Privileged: boolp(true), RunAsUser: int64p(0), AllowPrivilegeEscalation: boolp(true),
			SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeUnconfined},
		}},
	)
	pod.Spec.SecurityContext = &corev1.PodSecurityContext{RunAsUser: int64p(1000), RunAsGroup: int64p(2000), SupplementalGroups: []int64{5, 6},
		SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}}
	h.m.UpdatePod(pod)
	h.settle()
	type user struct{ UID, GID *int64 }
	tests := []struct {
		container string
		user      user
		security  pods.Security
	}{
		{"app", user{int64p(1000), int64p(3000)}, pods.Security{
			SupplementalGroups: []int64{5, 6}, ReadOnlyRootFilesystem: true, NoNewPrivileges: true,
			AddCapabilities: []string{"CAP_NET_BIND_SERVICE", "CAP_NET_RAW"}, DropCapabilities: []string{pods.AllCapabilities},
			SeccompRuntimeDefault: true, // the pod's
		}},
		{"plain", user{int64p(1000), int64p(2000)}, pods.Security{SupplementalGroups: []int64{5, 6}, SeccompRuntimeDefault: true}},
		// The container's Unconfined wins over the pod's RuntimeDefault.
		{"priv", user{int64p(0), int64p(2000)}, pods.Security{SupplementalGroups: []int64{5, 6}, Privileged: true}},
	}
	for _, tt := range tests {
		spec, ok := h.rt.Spec(cid(pod, tt.container, 0))
		if !ok {
			t.Fatalf("container %s not created: %+v", tt.container, h.containerStatus(pod, tt.container).State)
		}
		if diff := cmp.Diff(tt.user, user{spec.UID, spec.GID}); diff != "" {
			t.Errorf("%s: user (-want +got):\n%s", tt.container, diff)
		}
		if diff := cmp.Diff(tt.security, spec.Security); diff != "" {
			t.Errorf("%s: security (-want +got):\n%s", tt.container, diff)
		}
	}
}
