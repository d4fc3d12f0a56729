package plugins

import (
	"context"
	"testing"

	"github.com/bosun-gitops/bosun/operator/scheduler/framework"
	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

func node(name string, mod func(*corev1.Node)) *corev1.Node {
	alloc := corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("2"), corev1.ResourceMemory: resource.MustParse("4Gi"), corev1.ResourcePods: resource.MustParse("3")}
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"zone": "a", "gen": "5"}},
		Status: corev1.NodeStatus{Allocatable: alloc, Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}}}
	if mod != nil {
		mod(n)
	}
	return n
}

func pod(cpu, mem string, mod func(*corev1.Pod)) *corev1.Pod {
	req := corev1.ResourceList{}
	if cpu != "" {
		req[corev1.ResourceCPU] = resource.MustParse(cpu)
	}
	if mem != "" {
		req[corev1.ResourceMemory] = resource.MustParse(mem)
	}
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", UID: "p"}, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Resources: corev1.ResourceRequirements{Requests: req}}}}}
	if mod != nil {
		mod(p)
	}
	return p
}

func nodeInfo(n *corev1.Node, pods ...*corev1.Pod) *framework.NodeInfo {
	ni := framework.NewNodeInfo(n)
	for _, p := range pods {
		ni.AddPod(framework.NewPodInfo(p))
	}
	return ni
}

func TestFilters(t *testing.T) {
	taint := corev1.Taint{Key: "dedicated", Value: "db", Effect: corev1.TaintEffectNoSchedule}
	tolerate := func(p *corev1.Pod) {
		p.Spec.Tolerations = []corev1.Toleration{{Key: "dedicated", Operator: corev1.TolerationOpEqual, Value: "db", Effect: corev1.TaintEffectNoSchedule}}
	}
	affinity := func(terms ...corev1.NodeSelectorTerm) func(*corev1.Pod) {
		return func(p *corev1.Pod) {
			p.Spec.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{NodeSelectorTerms: terms}}}
		}
	}
	hostPort := func(port int32, ip string) func(*corev1.Pod) {
		return func(p *corev1.Pod) {
			p.Spec.Containers[0].Ports = []corev1.ContainerPort{{ContainerPort: 80, HostPort: port, HostIP: ip}}
		}
	}
	// asks adds requests to the pod's container, or to a new init container with init set.
	asks := func(init bool, rl ...string) func(*corev1.Pod) {
		return func(p *corev1.Pod) {
			c := &p.Spec.Containers[0]
			if init {
				p.Spec.InitContainers = append(p.Spec.InitContainers, corev1.Container{Name: "init"})
				c = &p.Spec.InitContainers[len(p.Spec.InitContainers)-1]
			}
			if c.Resources.Requests == nil {
				c.Resources.Requests = corev1.ResourceList{}
			}
			for i := 0; i < len(rl); i += 2 {
				c.Resources.Requests[corev1.ResourceName(rl[i])] = resource.MustParse(rl[i+1])
			}
		}
	}
	// offers adds allocatable resources to the node.
	offers := func(rl ...string) func(*corev1.Node) {
		return func(n *corev1.Node) {
			for i := 0; i < len(rl); i += 2 {
				n.Status.Allocatable[corev1.ResourceName(rl[i])] = resource.MustParse(rl[i+1])
			}
		}
	}
	gpuNode := node("n", offers("nvidia.com/gpu", "2", "ephemeral-storage", "10Gi"))
	tests := []struct {
		name   string
		plugin framework.FilterPlugin
		pod    *corev1.Pod
		node   *framework.NodeInfo
		want   []string // nil: fits
		code   framework.Code
	}{
		{"fits", &NodeResourcesFit{}, pod("1", "1Gi", nil), nodeInfo(node("n", nil)), nil, 0},
		{"insufficient cpu and memory", &NodeResourcesFit{}, pod("3", "5Gi", nil), nodeInfo(node("n", nil)), []string{"Insufficient cpu", "Insufficient memory"}, framework.Unschedulable},
		{"bound pods count", &NodeResourcesFit{}, pod("1", "", nil), nodeInfo(node("n", nil), withName("a", pod("1500m", "", nil))), []string{"Insufficient cpu"}, framework.Unschedulable},
		{"too many pods", &NodeResourcesFit{}, pod("", "", nil), nodeInfo(node("n", nil), withName("a", pod("", "", nil)), withName("b", pod("", "", nil)), withName("c", pod("", "", nil))), []string{"Too many pods"}, framework.Unschedulable},
		{"init container maximum", &NodeResourcesFit{}, pod("100m", "", func(p *corev1.Pod) {
			p.Spec.InitContainers = []corev1.Container{{Name: "init", Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("2500m")}}}}
		}), nodeInfo(node("n", nil)), []string{"Insufficient cpu"}, framework.Unschedulable},
		{"ephemeral-storage fits", &NodeResourcesFit{}, pod("", "", asks(false, "ephemeral-storage", "4Gi")), nodeInfo(gpuNode,
			withName("a", pod("", "", asks(false, "ephemeral-storage", "6Gi")))), nil, 0},
		{"insufficient ephemeral-storage", &NodeResourcesFit{}, pod("", "", asks(false, "ephemeral-storage", "5Gi")), nodeInfo(gpuNode,
			withName("a", pod("", "", asks(false, "ephemeral-storage", "6Gi")))), []string{"Insufficient ephemeral-storage"}, framework.Unschedulable},
		{"no ephemeral-storage reported", &NodeResourcesFit{}, pod("", "", asks(false, "ephemeral-storage", "1")), nodeInfo(node("n", nil)), []string{"Insufficient ephemeral-storage"}, framework.Unschedulable},
		{"extended resource fits", &NodeResourcesFit{}, pod("", "", asks(false, "nvidia.com/gpu", "2")), nodeInfo(gpuNode), nil, 0},
		{"extended resource taken by bound pods", &NodeResourcesFit{}, pod("", "", asks(false, "nvidia.com/gpu", "1")), nodeInfo(gpuNode,
			withName("a", pod("", "", asks(false, "nvidia.com/gpu", "1"))), withName("b", pod("", "", asks(false, "nvidia.com/gpu", "1")))), []string{"Insufficient nvidia.com/gpu"}, framework.Unschedulable},
		{"extended resource freed by a removed pod", &NodeResourcesFit{}, pod("", "", asks(false, "nvidia.com/gpu", "2")), func() *framework.NodeInfo {
			ni := nodeInfo(gpuNode, withName("a", pod("", "", asks(false, "nvidia.com/gpu", "2"))))
			ni.RemovePod("a")
			return ni
		}(), nil, 0},
		{"extended resource the node lacks", &NodeResourcesFit{}, pod("", "", asks(false, "nvidia.com/gpu", "1")), nodeInfo(node("n", nil)), []string{"Insufficient nvidia.com/gpu"}, framework.Unschedulable},
		{"zero of a resource the node lacks", &NodeResourcesFit{}, pod("", "", asks(false, "nvidia.com/gpu", "0", "ephemeral-storage", "0")), nodeInfo(node("n", nil)), nil, 0},
		{"extended resource of an init container", &NodeResourcesFit{}, pod("", "", func(p *corev1.Pod) {
			asks(false, "nvidia.com/gpu", "1")(p)
			asks(true, "nvidia.com/gpu", "3")(p)
		}), nodeInfo(gpuNode), []string{"Insufficient nvidia.com/gpu"}, framework.Unschedulable},
		{"every insufficient resource, scalars by name", &NodeResourcesFit{}, pod("3", "", asks(false, "nvidia.com/gpu", "3", "example.com/dongle", "1", "hugepages-2Mi", "2Mi", "ephemeral-storage", "11Gi")), nodeInfo(gpuNode),
			[]string{"Insufficient cpu", "Insufficient ephemeral-storage", "Insufficient example.com/dongle", "Insufficient hugepages-2Mi", "Insufficient nvidia.com/gpu"}, framework.Unschedulable},
		{"untolerated taint", &TaintToleration{}, pod("", "", nil), nodeInfo(node("n", func(n *corev1.Node) { n.Spec.Taints = []corev1.Taint{taint} })), []string{"node(s) had untolerated taint {dedicated: db}"}, framework.UnschedulableAndUnresolvable},
		{"tolerated taint", &TaintToleration{}, pod("", "", tolerate), nodeInfo(node("n", func(n *corev1.Node) { n.Spec.Taints = []corev1.Taint{taint} })), nil, 0},
		{"PreferNoSchedule does not filter", &TaintToleration{}, pod("", "", nil), nodeInfo(node("n", func(n *corev1.Node) {
			n.Spec.Taints = []corev1.Taint{{Key: "k", Effect: corev1.TaintEffectPreferNoSchedule}}
		})), nil, 0},
		{"cordoned", &NodeUnschedulable{}, pod("", "", nil), nodeInfo(node("n", func(n *corev1.Node) { n.Spec.Unschedulable = true })), []string{"node(s) were unschedulable"}, framework.UnschedulableAndUnresolvable},
		{"cordoned, tolerated", &NodeUnschedulable{}, pod("", "", func(p *corev1.Pod) {
			p.Spec.Tolerations = []corev1.Toleration{{Key: TaintNodeUnschedulable, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule}}
		}), nodeInfo(node("n", func(n *corev1.Node) { n.Spec.Unschedulable = true })), nil, 0},
		{"not ready", &NodeReady{}, pod("", "", nil), nodeInfo(node("n", func(n *corev1.Node) { n.Status.Conditions[0].Status = corev1.ConditionUnknown })), []string{"node(s) were not ready"}, framework.Unschedulable},
		{"not ready, tolerated", &NodeReady{}, pod("", "", func(p *corev1.Pod) {
			p.Spec.Tolerations = []corev1.Toleration{{Operator: corev1.TolerationOpExists}}
		}), nodeInfo(node("n", func(n *corev1.Node) { n.Status.Conditions = nil })), nil, 0},
		{"node name", &NodeName{}, pod("", "", func(p *corev1.Pod) { p.Spec.NodeName = "other" }), nodeInfo(node("n", nil)), []string{"node(s) didn't match the requested node name"}, framework.UnschedulableAndUnresolvable},
		{"node selector", &NodeAffinity{}, pod("", "", func(p *corev1.Pod) { p.Spec.NodeSelector = map[string]string{"zone": "b"} }), nodeInfo(node("n", nil)), []string{"node(s) didn't match Pod's node affinity/selector"}, framework.UnschedulableAndUnresolvable},
		{"node selector matches", &NodeAffinity{}, pod("", "", func(p *corev1.Pod) { p.Spec.NodeSelector = map[string]string{"zone": "a"} }), nodeInfo(node("n", nil)), nil, 0},
		{"matchFields metadata.name", &NodeAffinity{}, pod("", "", affinity(corev1.NodeSelectorTerm{MatchFields: []corev1.NodeSelectorRequirement{{Key: "metadata.name", Operator: corev1.NodeSelectorOpIn, Values: []string{"n"}}}})), nodeInfo(node("n", nil)), nil, 0},
		{"matchFields other node", &NodeAffinity{}, pod("", "", affinity(corev1.NodeSelectorTerm{MatchFields: []corev1.NodeSelectorRequirement{{Key: "metadata.name", Operator: corev1.NodeSelectorOpIn, Values: []string{"m"}}}})), nodeInfo(node("n", nil)), []string{"node(s) didn't match Pod's node affinity/selector"}, framework.UnschedulableAndUnresolvable},
		{"terms are ORed, Gt", &NodeAffinity{}, pod("", "", affinity(
			corev1.NodeSelectorTerm{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "zone", Operator: corev1.NodeSelectorOpIn, Values: []string{"b"}}}},
			corev1.NodeSelectorTerm{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "gen", Operator: corev1.NodeSelectorOpGt, Values: []string{"4"}}, {Key: "gpu", Operator: corev1.NodeSelectorOpDoesNotExist}}},
		)), nodeInfo(node("n", nil)), nil, 0},
		{"host port taken", &NodePorts{}, pod("", "", hostPort(8080, "")), nodeInfo(node("n", nil), withName("a", pod("", "", hostPort(8080, "10.0.0.1")))), []string{"node(s) didn't have free ports for the requested pod ports"}, framework.Unschedulable},
		{"host port on another IP", &NodePorts{}, pod("", "", hostPort(8080, "10.0.0.2")), nodeInfo(node("n", nil), withName("a", pod("", "", hostPort(8080, "10.0.0.1")))), nil, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st := tc.plugin.Filter(context.Background(), framework.NewCycleState(), tc.pod, tc.node)
			if diff := cmp.Diff(tc.want, st.Reasons()); diff != "" {
				t.Errorf("reasons (-want +got):\n%s", diff)
			}
			if st.Code() != tc.code {
				t.Errorf("code %v, want %v", st.Code(), tc.code)
			}
		})
	}
}

func withName(name string, p *corev1.Pod) *corev1.Pod {
	p.Name, p.UID = name, types.UID(name)
	return p
}

func TestScores(t *testing.T) {
	owned := func(p *corev1.Pod) {
		yes := true
		p.OwnerReferences = []metav1.OwnerReference{{UID: "rs", Controller: &yes}}
	}
	gpu := func(p *corev1.Pod) {
		p.Spec.Containers[0].Resources.Requests["nvidia.com/gpu"] = resource.MustParse("1")
		p.Spec.Containers[0].Resources.Requests[corev1.ResourceEphemeralStorage] = resource.MustParse("1Gi")
	}
	empty := nodeInfo(node("empty", nil))
	half := nodeInfo(node("half", nil), withName("a", pod("1", "2Gi", owned)))
	skewed := nodeInfo(node("skewed", nil), withName("b", pod("2", "0", owned)), withName("c", pod("", "", owned)))
	tests := []struct {
		name   string
		plugin framework.ScorePlugin
		pod    *corev1.Pod
		want   []int64
	}{
		{"least allocated", &LeastAllocated{}, pod("0", "0", nil), []int64{100, 50, 47}}, // skewed: cpu full (0), memory 95% free
		{"balanced", &BalancedAllocation{}, pod("0", "0", nil), []int64{100, 100, 52}},
		// kube-scheduler scores cpu and memory only: asking for a GPU (that no node here has)
		// or for disk changes no score.
		{"least allocated ignores other resources", &LeastAllocated{}, pod("0", "0", gpu), []int64{100, 50, 47}},
		{"balanced ignores other resources", &BalancedAllocation{}, pod("0", "0", gpu), []int64{100, 100, 52}},
		{"spread", &SelectorSpread{}, pod("", "", owned), []int64{100, 50, 0}},
		{"spread without owner", &SelectorSpread{}, pod("", "", nil), []int64{100, 100, 100}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			scores := framework.NodeScoreList{}
			for _, ni := range []*framework.NodeInfo{empty, half, skewed} {
				s, st := tc.plugin.Score(context.Background(), nil, tc.pod, ni)
				if !st.IsSuccess() {
					t.Fatal(st.AsError())
				}
				scores = append(scores, framework.NodeScore{Name: ni.Name(), Score: s})
			}
			if ext, ok := tc.plugin.(framework.ScoreExtensions); ok {
				ext.NormalizeScore(context.Background(), nil, tc.pod, scores)
			}
			var got []int64
			for _, s := range scores {
				got = append(got, s.Score)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("scores (-want +got):\n%s", diff)
			}
		})
	}
}

func TestTaintTolerationScore(t *testing.T) {
	prefer := func(keys ...string) *framework.NodeInfo {
		return nodeInfo(node("n", func(n *corev1.Node) {
			for _, k := range keys {
				n.Spec.Taints = append(n.Spec.Taints, corev1.Taint{Key: k, Effect: corev1.TaintEffectPreferNoSchedule})
			}
		}))
	}
	p := pod("", "", func(p *corev1.Pod) {
		p.Spec.Tolerations = []corev1.Toleration{{Key: "ok", Operator: corev1.TolerationOpExists}}
	})
	tt := &TaintToleration{}
	var scores framework.NodeScoreList
	for _, ni := range []*framework.NodeInfo{prefer(), prefer("ok"), prefer("x"), prefer("x", "y")} {
		s, _ := tt.Score(context.Background(), nil, p, ni)
		scores = append(scores, framework.NodeScore{Score: s})
	}
	tt.NormalizeScore(context.Background(), nil, p, scores)
	var got []int64
	for _, s := range scores {
		got = append(got, s.Score)
	}
	if diff := cmp.Diff([]int64{100, 100, 50, 0}, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

// The scheduler binds thousands of pods a second: a pod that asks only for cpu and memory must
// cost the resource filter no allocation per node.
func TestNodeResourcesFitAllocatesNothing(t *testing.T) {
	p := pod("100m", "128Mi", nil)
	ni := nodeInfo(node("n", nil), withName("a", pod("1", "1Gi", nil)))
	state := framework.NewCycleState()
	state.SetPodInfo(framework.NewPodInfo(p))
	fit := &NodeResourcesFit{}
	if n := testing.AllocsPerRun(100, func() {
		if st := fit.Filter(context.Background(), state, p, ni); st != nil {
			t.Fatal(st.AsError())
		}
	}); n != 0 {
		t.Errorf("Filter allocates %v times per node", n)
	}
}
