package nodelifecycle_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/bosun-gitops/bosun/internal/resource"
	"github.com/bosun-gitops/bosun/operator/controllers"
	"github.com/bosun-gitops/bosun/operator/controllers/controllertest"
	"github.com/bosun-gitops/bosun/operator/controllers/nodelifecycle"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"
)

func TestEvictionDelay(t *testing.T) {
	unreachable := &corev1.Taint{Key: corev1.TaintNodeUnreachable, Effect: corev1.TaintEffectNoExecute}
	tests := []struct {
		name        string
		tolerations []corev1.Toleration
		wantAfter   time.Duration
		wantForever bool
	}{
		{"none uses the default", nil, 300 * time.Second, false},
		{"unrelated toleration", []corev1.Toleration{{Key: "x", Operator: corev1.TolerationOpExists}}, 300 * time.Second, false},
		{"own seconds win", []corev1.Toleration{{Key: corev1.TaintNodeUnreachable, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: ptr.To[int64](60)}}, 60 * time.Second, false},
		{"forever", []corev1.Toleration{{Key: corev1.TaintNodeUnreachable, Operator: corev1.TolerationOpExists}}, 0, true},
		{"wildcard forever", []corev1.Toleration{{Operator: corev1.TolerationOpExists}}, 0, true},
		{"smallest seconds", []corev1.Toleration{
			{Operator: corev1.TolerationOpExists, TolerationSeconds: ptr.To[int64](90)},
			{Key: corev1.TaintNodeUnreachable, Operator: corev1.TolerationOpExists, TolerationSeconds: ptr.To[int64](30)},
		}, 30 * time.Second, false},
		{"other effect does not match", []corev1.Toleration{{Key: corev1.TaintNodeUnreachable, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule}}, 300 * time.Second, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			after, forever := nodelifecycle.EvictionDelay(tt.tolerations, unreachable, 300*time.Second)
			if after != tt.wantAfter || forever != tt.wantForever {
				t.Fatalf("EvictionDelay = %s, %v; want %s, %v", after, forever, tt.wantAfter, tt.wantForever)
			}
		})
	}
}

func hasTaint(n *corev1.Node, key string, eff corev1.TaintEffect) bool {
	for _, t := range n.Spec.Taints {
		if t.Key == key && t.Effect == eff {
			return true
		}
	}
	return false
}

func TestLeaseExpiryTaintsAndEvicts(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clk := clocktesting.NewFakeClock(start)
	env := controllertest.New(t, clk)
	renew := metav1.NewMicroTime(start)
	env.MustCreate(resource.Nodes, &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: "n1"},
		Spec:       corev1.NodeSpec{Taints: []corev1.Taint{{Key: "dedicated", Value: "db", Effect: corev1.TaintEffectNoSchedule}}},
		Status: corev1.NodeStatus{Conditions: []corev1.NodeCondition{
			{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady"},
		}},
	})
	env.MustCreate(resource.Nodes, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n2"}})
	for _, n := range []string{"n1", "n2"} {
		env.MustCreate(resource.Leases, &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Namespace: nodelifecycle.LeaseNamespace, Name: n},
			Spec:       coordinationv1.LeaseSpec{HolderIdentity: ptr.To(n), RenewTime: &renew},
		})
	}
	pod := func(name, node string, tol []corev1.Toleration) {
		env.MustCreate(resource.Pods, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name},
			Spec:       corev1.PodSpec{NodeName: node, Tolerations: tol, Containers: []corev1.Container{{Name: "c", Image: "busybox"}}},
			Status: corev1.PodStatus{Phase: corev1.PodRunning, Conditions: []corev1.PodCondition{
				{Type: corev1.PodReady, Status: corev1.ConditionTrue},
			}},
		})
	}
	pod("plain", "n1", nil)
	pod("short", "n1", []corev1.Toleration{{Key: corev1.TaintNodeUnreachable, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: ptr.To[int64](60)}})
	pod("forever", "n1", []corev1.Toleration{{Key: corev1.TaintNodeUnreachable, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute}})
	pod("other-node", "n2", nil)

	env.Start(map[string]controllers.Constructor{nodelifecycle.Name: nodelifecycle.New})
	env.Eventually(10*time.Second, "monitor ticker registered", func() error {
		if clk.Waiters() < 2 { // the event recorder's expiry ticker and ours
			return fmt.Errorf("%d waiters", clk.Waiters())
		}
		return nil
	})
	getNode := func(name string) *corev1.Node {
		obj, err := env.Store.Get(env.Ctx, resource.Nodes, "", name)
		if err != nil {
			t.Fatal(err)
		}
		return obj.(*corev1.Node)
	}
	// podExists reports whether the pod is there and not evicted. An evicted pod of an
	// unreachable node is marked for a graceful deletion (deletionTimestamp) that its node would
	// finish: it stays Terminating meanwhile, as in Kubernetes.
	podExists := func(name string) bool {
		obj, err := env.Store.Get(env.Ctx, resource.Pods, "default", name)
		if err != nil && !apierrors.IsNotFound(err) {
			t.Fatal(err)
		}
		return err == nil && obj.GetDeletionTimestamp() == nil
	}
	renewLease := func(name string) {
		obj, err := env.Store.Get(env.Ctx, resource.Leases, nodelifecycle.LeaseNamespace, name)
		if err != nil {
			t.Fatal(err)
		}
		l := obj.(*coordinationv1.Lease)
		l.Spec.RenewTime = ptr.To(metav1.NewMicroTime(clk.Now()))
		if _, err := env.Store.Update(env.Ctx, resource.Leases, l); err != nil {
			t.Fatal(err)
		}
	}

	// Within the grace period nothing happens; n2 keeps heartbeating throughout.
	clk.Step(30 * time.Second)
	renewLease("n2")
	time.Sleep(300 * time.Millisecond)
	if n := getNode("n1"); hasTaint(n, corev1.TaintNodeUnreachable, corev1.TaintEffectNoExecute) {
		t.Fatalf("n1 tainted within the grace period: %v", n.Spec.Taints)
	}

	clk.Step(15 * time.Second) // 45 s since n1's last renewal
	renewLease("n2")
	env.Eventually(10*time.Second, "n1 NotReady and tainted", func() error {
		n := getNode("n1")
		c := n.Status.Conditions[0]
		if c.Status != corev1.ConditionUnknown || c.Reason != nodelifecycle.ReasonStatusUnknown {
			return fmt.Errorf("ready condition %+v", c)
		}
		if !hasTaint(n, corev1.TaintNodeUnreachable, corev1.TaintEffectNoExecute) || !hasTaint(n, corev1.TaintNodeUnreachable, corev1.TaintEffectNoSchedule) {
			return fmt.Errorf("taints %v", n.Spec.Taints)
		}
		if !hasTaint(n, "dedicated", corev1.TaintEffectNoSchedule) {
			return fmt.Errorf("the machine's own taint was lost: %v", n.Spec.Taints)
		}
		return nil
	})
	env.Eventually(10*time.Second, "pods on n1 marked not ready", func() error {
		obj, err := env.Store.Get(env.Ctx, resource.Pods, "default", "plain")
		if err != nil {
			return err
		}
		for _, c := range obj.(*corev1.Pod).Status.Conditions {
			if c.Type == corev1.PodReady && c.Status == corev1.ConditionFalse {
				return nil
			}
		}
		return fmt.Errorf("conditions %+v", obj.(*corev1.Pod).Status.Conditions)
	})
	if n := getNode("n2"); len(n.Spec.Taints) != 0 {
		t.Fatalf("heartbeating n2 was tainted: %v", n.Spec.Taints)
	}

	// The pod tolerating the taint for 60 s goes first; the others stay.
	clk.Step(61 * time.Second)
	renewLease("n2")
	env.Eventually(10*time.Second, "pod with tolerationSeconds=60 evicted", func() error {
		if podExists("short") {
			return fmt.Errorf("still there")
		}
		return nil
	})
	if !podExists("plain") || !podExists("forever") || !podExists("other-node") {
		t.Fatal("a pod was evicted before its time")
	}

	// podEvictionTimeout (300 s) after the taint, the plain pod goes; the forever one stays.
	clk.Step(240 * time.Second)
	renewLease("n2")
	env.Eventually(10*time.Second, "plain pod evicted", func() error {
		if podExists("plain") {
			return fmt.Errorf("still there")
		}
		return nil
	})
	if !podExists("forever") || !podExists("other-node") {
		t.Fatal("a tolerating pod or a pod on a healthy node was evicted")
	}

	// The lease renews: taints go, Ready comes back.
	renewLease("n1")
	env.Eventually(10*time.Second, "n1 recovered", func() error {
		n := getNode("n1")
		if hasTaint(n, corev1.TaintNodeUnreachable, corev1.TaintEffectNoExecute) || hasTaint(n, corev1.TaintNodeUnreachable, corev1.TaintEffectNoSchedule) {
			return fmt.Errorf("taints %v", n.Spec.Taints)
		}
		if !hasTaint(n, "dedicated", corev1.TaintEffectNoSchedule) {
			return fmt.Errorf("the machine's own taint was lost: %v", n.Spec.Taints)
		}
		if c := n.Status.Conditions[0]; c.Status != corev1.ConditionTrue {
			return fmt.Errorf("ready condition %+v", c)
		}
		return nil
	})
	env.Eventually(10*time.Second, "NodeNotReady event", func() error {
		for _, o := range env.List(resource.Events, "") {
			if e := o.(*corev1.Event); e.Reason == "NodeNotReady" && e.InvolvedObject.Kind == "Node" {
				return nil
			}
		}
		return fmt.Errorf("no NodeNotReady event")
	})
}

// TestFreshGraceAfterOperatorDowntime starts the controller (as after an operator restart) ten
// minutes after every lease was last renewed: like Kubernetes, it gives each node a fresh grace
// period from when it first sees it, so the nodes whose agents keep heartbeating never go
// NotReady; one that stays silent goes NotReady a grace period after the start, and one that was
// already marked NotReady before the restart keeps its condition and taints (and their age).
func TestFreshGraceAfterOperatorDowntime(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clk := clocktesting.NewFakeClock(start)
	env := controllertest.New(t, clk)
	lastRenew := metav1.NewMicroTime(start)
	before := metav1.NewTime(start.Add(-time.Minute))
	live := []string{"live-0", "live-1", "live-2"}
	for _, n := range append(append([]string{}, live...), "silent", "dead") {
		node := &corev1.Node{
			ObjectMeta: metav1.ObjectMeta{Name: n},
			Status: corev1.NodeStatus{Conditions: []corev1.NodeCondition{
				{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady"},
			}},
		}
		if n == "dead" { // marked by the operator before it stopped
			node.Spec.Taints = []corev1.Taint{
				{Key: corev1.TaintNodeUnreachable, Effect: corev1.TaintEffectNoSchedule, TimeAdded: &before},
				{Key: corev1.TaintNodeUnreachable, Effect: corev1.TaintEffectNoExecute, TimeAdded: &before},
			}
			node.Status.Conditions[0] = corev1.NodeCondition{Type: corev1.NodeReady, Status: corev1.ConditionUnknown,
				Reason: nodelifecycle.ReasonStatusUnknown, Message: nodelifecycle.MessageStatusUnknown, LastTransitionTime: before}
		}
		env.MustCreate(resource.Nodes, node)
		env.MustCreate(resource.Leases, &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Namespace: nodelifecycle.LeaseNamespace, Name: n},
			Spec:       coordinationv1.LeaseSpec{HolderIdentity: ptr.To(n), RenewTime: &lastRenew},
		})
	}
	getNode := func(name string) *corev1.Node {
		obj, err := env.Store.Get(env.Ctx, resource.Nodes, "", name)
		if err != nil {
			t.Fatal(err)
		}
		return obj.(*corev1.Node)
	}
	renewLease := func(name string) {
		obj, err := env.Store.Get(env.Ctx, resource.Leases, nodelifecycle.LeaseNamespace, name)
		if err != nil {
			t.Fatal(err)
		}
		l := obj.(*coordinationv1.Lease)
		l.Spec.RenewTime = ptr.To(metav1.NewMicroTime(clk.Now()))
		if _, err := env.Store.Update(env.Ctx, resource.Leases, l); err != nil {
			t.Fatal(err)
		}
	}
	readyStatus := func(name string) corev1.ConditionStatus {
		for _, c := range getNode(name).Status.Conditions {
			if c.Type == corev1.NodeReady {
				return c.Status
			}
		}
		return ""
	}

	// The operator was down for ten minutes, far longer than the 40 s grace period; the agents
	// were heartbeating all along but nobody watched.
	clk.Step(10 * time.Minute)
	env.Start(map[string]controllers.Constructor{nodelifecycle.Name: nodelifecycle.New})
	env.Eventually(10*time.Second, "monitor ticker registered", func() error {
		if clk.Waiters() < 2 {
			return fmt.Errorf("%d waiters", clk.Waiters())
		}
		return nil
	})
	time.Sleep(500 * time.Millisecond) // the first reconciles of every node
	check := func(when string) {
		t.Helper()
		for _, n := range live {
			node := getNode(n)
			if s := readyStatus(n); s != corev1.ConditionTrue {
				t.Fatalf("%s: heartbeating node %s went Ready=%s", when, n, s)
			}
			if len(node.Spec.Taints) != 0 {
				t.Fatalf("%s: heartbeating node %s was tainted: %v", when, n, node.Spec.Taints)
			}
		}
		dead := getNode("dead")
		if s := readyStatus("dead"); s != corev1.ConditionUnknown {
			t.Fatalf("%s: node dead, marked NotReady before the restart and silent since, is Ready=%s", when, s)
		}
		for _, taint := range dead.Spec.Taints {
			if taint.TimeAdded == nil || !taint.TimeAdded.Equal(&before) {
				t.Fatalf("%s: node dead's taints were replaced: %v", when, dead.Spec.Taints)
			}
		}
		if len(dead.Spec.Taints) != 2 {
			t.Fatalf("%s: node dead's taints: %v", when, dead.Spec.Taints)
		}
	}
	check("at start")
	if s := readyStatus("silent"); s != corev1.ConditionTrue {
		t.Fatalf("at start: node silent is Ready=%s; it deserves a fresh grace period", s)
	}

	// The live agents renew every 10 s; the silent node stays silent.
	for range 3 {
		clk.Step(10 * time.Second)
		for _, n := range live {
			renewLease(n)
		}
		time.Sleep(200 * time.Millisecond)
		check(clk.Now().Sub(start).String() + " after the last renewal before the restart")
	}
	if s := readyStatus("silent"); s != corev1.ConditionTrue {
		t.Fatalf("30 s after the start: node silent is Ready=%s; its grace period is 40 s", s)
	}
	clk.Step(15 * time.Second) // 45 s after the start
	for _, n := range live {
		renewLease(n)
	}
	env.Eventually(10*time.Second, "silent node NotReady a grace period after the start", func() error {
		if s := readyStatus("silent"); s != corev1.ConditionUnknown {
			return fmt.Errorf("Ready=%s", s)
		}
		return nil
	})
	check("45 s after the start")

	// The dead node's agent comes back: Ready again, taints gone.
	renewLease("dead")
	env.Eventually(10*time.Second, "dead node recovered", func() error {
		if s := readyStatus("dead"); s != corev1.ConditionTrue {
			return fmt.Errorf("Ready=%s", s)
		}
		if n := getNode("dead"); len(n.Spec.Taints) != 0 {
			return fmt.Errorf("taints %v", n.Spec.Taints)
		}
		return nil
	})
}
