package framework

import (
	"context"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// fake is a configurable plugin: it rejects the nodes in reject and scores nodes by score.
type fake struct {
	name   string
	reject map[string]*Status
	score  map[string]int64
	norm   bool
}

var (
	_ FilterPlugin    = (*fake)(nil)
	_ ScorePlugin     = (*fake)(nil)
	_ ScoreExtensions = (*fake)(nil)
)

func (f *fake) Name() string { return f.name }
func (f *fake) Filter(_ context.Context, _ *CycleState, _ *corev1.Pod, n *NodeInfo) *Status {
	return f.reject[n.Name()]
}
func (f *fake) Score(_ context.Context, _ *CycleState, _ *corev1.Pod, n *NodeInfo) (int64, *Status) {
	return f.score[n.Name()], nil
}
func (f *fake) NormalizeScore(_ context.Context, _ *CycleState, _ *corev1.Pod, s NodeScoreList) *Status {
	if f.norm {
		return DefaultNormalizeScore(MaxNodeScore, false, s)
	}
	return nil
}

func nodes(names ...string) []*NodeInfo {
	var out []*NodeInfo
	for _, n := range names {
		out = append(out, NewNodeInfo(&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n}}))
	}
	return out
}

func TestFitErrorMessage(t *testing.T) {
	tests := []struct {
		name      string
		all       int
		diagnosis Diagnosis
		want      string
	}{
		{"histogram sorted", 3, Diagnosis{NodeToStatus: map[string]*Status{
			"a": NewStatus(Unschedulable, "Insufficient cpu"),
			"b": NewStatus(Unschedulable, "Insufficient cpu", "Insufficient memory"),
			"c": NewStatus(UnschedulableAndUnresolvable, "node(s) had untolerated taint {dedicated: db}"),
		}}, "0/3 nodes are available: 1 Insufficient memory, 1 node(s) had untolerated taint {dedicated: db}, 2 Insufficient cpu."},
		{"no nodes", 0, Diagnosis{}, "no nodes available to schedule pods"},
		{"no nodes, prefilter", 0, Diagnosis{PreFilterMsg: "node(s) didn't match Pod's node affinity/selector"}, "no nodes available to schedule pods"},
		{"nodes, no reasons", 2, Diagnosis{}, "0/2 nodes are available."},
		{"prefilter", 2, Diagnosis{PreFilterMsg: "node(s) didn't match Pod's node affinity/selector"}, "0/2 nodes are available: node(s) didn't match Pod's node affinity/selector."},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := &FitError{NumAllNodes: tc.all, Diagnosis: tc.diagnosis}
			if diff := cmp.Diff(tc.want, err.Error()); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestFrameworkRunsPlugins(t *testing.T) {
	first := &fake{name: "first", reject: map[string]*Status{"b": NewStatus(UnschedulableAndUnresolvable, "first says no")}}
	second := &fake{name: "second", reject: map[string]*Status{"b": NewStatus(Unschedulable, "unreachable"), "c": NewStatus(Unschedulable, "second says no")},
		score: map[string]int64{"a": 10, "b": 20, "c": 40}, norm: true}
	third := &fake{name: "third", score: map[string]int64{"a": 100, "b": 0, "c": 0}}
	reg := Registry{}
	for _, p := range []*fake{first, second, third} {
		if err := reg.Register(p.name, func() (Plugin, error) { return p, nil }); err != nil {
			t.Fatal(err)
		}
	}
	if err := reg.Register("first", nil); err == nil {
		t.Error("registering a name twice succeeded")
	}
	f, err := New(reg, []PluginConfig{{Name: "first"}, {Name: "second", Weight: 2}, {Name: "third"}})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, n := range nodes("a", "b", "c") {
		st := f.RunFilterPlugins(context.Background(), NewCycleState(), &corev1.Pod{}, n)
		got = append(got, n.Name()+":"+st.Plugin()+":"+st.Message())
	}
	if diff := cmp.Diff([]string{"a::", "b:first:first says no", "c:second:second says no"}, got); diff != "" {
		t.Errorf("filter (-want +got):\n%s", diff)
	}
	scores, st := f.RunScorePlugins(context.Background(), NewCycleState(), &corev1.Pod{}, nodes("a", "b", "c"), nil)
	if !st.IsSuccess() {
		t.Fatal(st.AsError())
	}
	// second normalised to 25, 50, 100 and weighted 2; third as is.
	want := NodeScoreList{{"a", 50 + 100}, {"b", 100}, {"c", 200}}
	if diff := cmp.Diff(want, scores); diff != "" {
		t.Errorf("scores (-want +got):\n%s", diff)
	}

	bad := &fake{name: "bad", score: map[string]int64{"a": 101}}
	f, err = New(Registry{"bad": func() (Plugin, error) { return bad, nil }}, []PluginConfig{{Name: "bad"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, st := f.RunScorePlugins(context.Background(), NewCycleState(), &corev1.Pod{}, nodes("a"), nil); st.Code() != Error {
		t.Errorf("out-of-range score: %v, want an Error status", st.Code())
	}
	if _, err := New(reg, []PluginConfig{{Name: "missing"}}); err == nil {
		t.Error("unregistered plugin accepted")
	}
}

func TestPodRequests(t *testing.T) {
	always := corev1.ContainerRestartPolicyAlways
	c := func(cpu string) corev1.Container {
		return corev1.Container{Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: mustQ(cpu)}}}
	}
	sidecar := c("200m")
	sidecar.RestartPolicy = &always
	p := &corev1.Pod{Spec: corev1.PodSpec{
		Containers:     []corev1.Container{c("100m"), c("300m")},
		InitContainers: []corev1.Container{c("500m"), sidecar, c("450m")},
		Overhead:       corev1.ResourceList{corev1.ResourceCPU: mustQ("10m")},
	}}
	// Running: 100+300 + sidecar 200 = 600; init max: 500, then 450+200 = 650 → 650 + 10 overhead.
	reqs, nonZero := PodRequests(p)
	if reqs.MilliCPU != 660 || reqs.Pods != 1 || reqs.Memory != 0 {
		t.Errorf("requests %+v", reqs)
	}
	// No container asks for memory: for scoring, the running sum counts 3 defaults (two
	// containers and the sidecar), more than any init container step (2).
	if nonZero.Memory != 3*DefaultMemoryRequest {
		t.Errorf("non-zero memory %d, want %d", nonZero.Memory, 3*DefaultMemoryRequest)
	}
}

func TestPodRequestsOtherResources(t *testing.T) {
	always := corev1.ContainerRestartPolicyAlways
	c := func(rl ...string) corev1.Container {
		req := corev1.ResourceList{}
		for i := 0; i < len(rl); i += 2 {
			req[corev1.ResourceName(rl[i])] = mustQ(rl[i+1])
		}
		return corev1.Container{Resources: corev1.ResourceRequirements{Requests: req}}
	}
	sidecar := c("nvidia.com/gpu", "1", "ephemeral-storage", "1Gi")
	sidecar.RestartPolicy = &always
	p := &corev1.Pod{Spec: corev1.PodSpec{
		Containers: []corev1.Container{
			c("nvidia.com/gpu", "1", "ephemeral-storage", "2Gi", "hugepages-2Mi", "4Mi"),
			c("example.com/dongle", "1", "ephemeral-storage", "1Gi", "hugepages-2Mi", "2Mi"),
		},
		InitContainers: []corev1.Container{
			c("nvidia.com/gpu", "3", "ephemeral-storage", "1Gi"),
			sidecar,
			c("nvidia.com/gpu", "1", "ephemeral-storage", "5Gi", "example.com/dongle", "2"),
		},
		Overhead: corev1.ResourceList{corev1.ResourceEphemeralStorage: mustQ("1Gi"), "example.com/dongle": mustQ("1")},
		// Pod-level requests replace the containers' for cpu, memory and hugepages only.
		Resources: &corev1.ResourceRequirements{Requests: corev1.ResourceList{"hugepages-2Mi": mustQ("8Mi"), corev1.ResourceEphemeralStorage: mustQ("1")}},
	}}
	reqs, nonZero := PodRequests(p)
	const gi = 1 << 30
	// Running: gpu 1 + sidecar 1 = 2, disk 2+1 + sidecar 1 = 4Gi, dongle 1. Init steps: gpu 3,
	// then 1+1 = 2; disk 1Gi, then 5+1 = 6Gi; dongle 2. Overhead: +1Gi, +1 dongle.
	want := Resource{EphemeralStorage: 7 * gi, Pods: 1, Scalar: map[corev1.ResourceName]int64{
		"nvidia.com/gpu": 3, "example.com/dongle": 3, "hugepages-2Mi": 8 << 20,
	}}
	if diff := cmp.Diff(want, reqs); diff != "" {
		t.Errorf("requests (-want +got):\n%s", diff)
	}
	if nonZero.Scalar != nil || nonZero.EphemeralStorage != 0 {
		t.Errorf("non-zero requests %+v: the scores read cpu and memory only", nonZero)
	}
}

func TestIsScalarResourceName(t *testing.T) {
	for name, want := range map[corev1.ResourceName]bool{
		"nvidia.com/gpu": true, "example.com/dongle": true, "hugepages-1Gi": true,
		"attachable-volumes-aws-ebs": true, "kubernetes.io/something": true,
		"cpu": false, "memory": false, "ephemeral-storage": false, "pods": false, "foo": false,
		"requests.example.com/x": false, "-bad.com/x": false,
	} {
		if got := IsScalarResourceName(name); got != want {
			t.Errorf("IsScalarResourceName(%q) = %v, want %v", name, got, want)
		}
	}
}

// A pod that asks for cpu and memory only, the scheduler's common case, costs no map.
func TestPodRequestsAllocatesNothing(t *testing.T) {
	rl := corev1.ResourceList{corev1.ResourceCPU: mustQ("100m"), corev1.ResourceMemory: mustQ("64Mi")}
	p := &corev1.Pod{Spec: corev1.PodSpec{
		InitContainers: []corev1.Container{{Resources: corev1.ResourceRequirements{Requests: rl}}},
		Containers:     []corev1.Container{{Resources: corev1.ResourceRequirements{Requests: rl}}, {}},
	}}
	if n := testing.AllocsPerRun(100, func() { PodRequests(p) }); n != 0 {
		t.Errorf("PodRequests allocates %v times", n)
	}
	ni := NewNodeInfo(&corev1.Node{Status: corev1.NodeStatus{Allocatable: rl}})
	pi := NewPodInfo(p)
	if n := testing.AllocsPerRun(100, func() { ni.AddPod(pi); ni.RemovePod(pi.Pod.UID) }); n != 0 {
		t.Errorf("AddPod+RemovePod allocate %v times", n)
	}
}

func mustQ(s string) resource.Quantity { return resource.MustParse(s) }
