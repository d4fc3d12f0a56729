package simnodes

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
)

func eventually(t *testing.T, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	var err error
	for time.Now().Before(deadline) {
		if err = cond(); err == nil {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s: %v", what, err)
}

// startCluster runs a Cluster with fast heartbeats on a fake clientset until ctx ends.
func startCluster(t *testing.T, ctx context.Context) (*Cluster, *fake.Clientset) {
	t.Helper()
	client := fake.NewClientset()
	c, err := New(Config{Client: client, HeartbeatInterval: 50 * time.Millisecond, StartDelay: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	go c.Run(ctx)
	eventually(t, "synced", func() error {
		if !c.Synced() {
			return fmt.Errorf("not synced")
		}
		return nil
	})
	return c, client
}

func TestNodesPodsAndLeases(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c, client := startCluster(t, ctx)
	specs := []NodeSpec{
		{Name: "a", CPU: "8", Memory: "32Gi", Pods: 50, PodCIDR: "10.244.7.0/24", Labels: map[string]string{"disk": "ssd"}},
		{Name: "b", Taints: []corev1.Taint{{Key: "dedicated", Value: "db", Effect: corev1.TaintEffectNoSchedule}}},
	}
	for i := range 30 {
		specs = append(specs, NodeSpec{Name: fmt.Sprintf("bulk-%02d", i)})
	}
	if err := c.AddNodes(ctx, specs...); err != nil {
		t.Fatal(err)
	}
	nodes, err := client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil || len(nodes.Items) != 32 {
		t.Fatalf("%d nodes, %v", len(nodes.Items), err)
	}
	a, err := client.CoreV1().Nodes().Get(ctx, "a", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := a.Status.Allocatable.Cpu().String(); got != "8" {
		t.Errorf("cpu %s", got)
	}
	if got := a.Status.Allocatable.Pods().Value(); got != 50 {
		t.Errorf("pods %d", got)
	}
	if a.Labels["disk"] != "ssd" || len(a.Status.Conditions) != 1 || a.Status.Conditions[0].Status != corev1.ConditionTrue {
		t.Errorf("node a: labels %v conditions %v", a.Labels, a.Status.Conditions)
	}
	b, _ := client.CoreV1().Nodes().Get(ctx, "b", metav1.GetOptions{})
	if len(b.Spec.Taints) != 1 || b.Status.Allocatable.Cpu().String() != "4" {
		t.Errorf("node b: taints %v allocatable %v", b.Spec.Taints, b.Status.Allocatable)
	}

	// Heartbeats renew the lease.
	first, err := client.CoordinationV1().Leases(LeaseNamespace).Get(ctx, "a", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "lease renewed", func() error {
		l, err := client.CoordinationV1().Leases(LeaseNamespace).Get(ctx, "a", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if !l.Spec.RenewTime.After(first.Spec.RenewTime.Time) {
			return fmt.Errorf("renewTime still %v", l.Spec.RenewTime)
		}
		return nil
	})

	// Pods bound to simulated nodes run with an IP from the node's pod CIDR.
	for _, n := range []string{"a", "bulk-03"} {
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "p-" + n},
			Spec:       corev1.PodSpec{NodeName: n, Containers: []corev1.Container{{Name: "c", Image: "busybox"}}},
		}
		if _, err := client.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	unbound := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "pending"}}
	if _, err := client.CoreV1().Pods("default").Create(ctx, unbound, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for n, cidr := range map[string]string{"a": "10.244.7.0/24", "bulk-03": "100.64.0.0/10"} { // bulk nodes have no podCIDR: any made-up /24
		eventually(t, "pod on "+n+" running", func() error {
			p, err := client.CoreV1().Pods("default").Get(ctx, "p-"+n, metav1.GetOptions{})
			if err != nil {
				return err
			}
			if p.Status.Phase != corev1.PodRunning {
				return fmt.Errorf("phase %q", p.Status.Phase)
			}
			ip, err := netip.ParseAddr(p.Status.PodIP)
			if err != nil || !netip.MustParsePrefix(cidr).Contains(ip) {
				return fmt.Errorf("pod IP %q not in %s", p.Status.PodIP, cidr)
			}
			ready := false
			for _, c := range p.Status.Conditions {
				ready = ready || (c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue)
			}
			if !ready || len(p.Status.ContainerStatuses) != 1 || !p.Status.ContainerStatuses[0].Ready || p.Status.HostIP == "" {
				return fmt.Errorf("status %+v", p.Status)
			}
			return nil
		})
	}
	if p, _ := client.CoreV1().Pods("default").Get(ctx, "pending", metav1.GetOptions{}); p.Status.Phase != "" {
		t.Errorf("unbound pod got phase %q", p.Status.Phase)
	}

	// A stopped heartbeat leaves the lease as it was.
	c.StopHeartbeat("b")
	time.Sleep(120 * time.Millisecond) // let a renewal in flight land
	stopped, _ := client.CoordinationV1().Leases(LeaseNamespace).Get(ctx, "b", metav1.GetOptions{})
	time.Sleep(200 * time.Millisecond)
	later, _ := client.CoordinationV1().Leases(LeaseNamespace).Get(ctx, "b", metav1.GetOptions{})
	if !later.Spec.RenewTime.Equal(stopped.Spec.RenewTime) {
		t.Errorf("lease of b renewed after StopHeartbeat: %v -> %v", stopped.Spec.RenewTime, later.Spec.RenewTime)
	}

	if err := c.RemoveNode(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	if _, err := client.CoreV1().Nodes().Get(ctx, "b", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("node b after RemoveNode: %v", err)
	}
	if _, err := client.CoordinationV1().Leases(LeaseNamespace).Get(ctx, "b", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("lease b after RemoveNode: %v", err)
	}
	if err := c.RemoveNode(ctx, "b"); err != nil {
		t.Errorf("removing a removed node: %v", err)
	}
}

// TestReadyReasserted checks that a simulated node puts its pods' Ready back when someone else
// marks them not ready (as the node lifecycle controller does), keeping their IP, but not while
// its heartbeat is stopped (its agent is down), and at once when it resumes.
func TestReadyReasserted(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c, client := startCluster(t, ctx)
	if err := c.AddNodes(ctx, NodeSpec{Name: "a", PodCIDR: "10.244.3.0/24"}); err != nil {
		t.Fatal(err)
	}
	pods := client.CoreV1().Pods("default")
	if _, err := pods.Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "p"},
		Spec:       corev1.PodSpec{NodeName: "a", Containers: []corev1.Container{{Name: "c", Image: "busybox"}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	ready := func(p *corev1.Pod) corev1.ConditionStatus {
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodReady {
				return c.Status
			}
		}
		return ""
	}
	get := func() *corev1.Pod {
		p, err := pods.Get(ctx, "p", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	waitReady := func(what string) *corev1.Pod {
		var p *corev1.Pod
		eventually(t, what, func() error {
			if p = get(); p.Status.Phase != corev1.PodRunning || ready(p) != corev1.ConditionTrue {
				return fmt.Errorf("phase %q Ready %q", p.Status.Phase, ready(p))
			}
			return nil
		})
		return p
	}
	markNotReady := func() {
		p := get()
		for i := range p.Status.Conditions {
			if p.Status.Conditions[i].Type == corev1.PodReady {
				p.Status.Conditions[i].Status, p.Status.Conditions[i].Reason = corev1.ConditionFalse, "NodeNotReady"
			}
		}
		if _, err := pods.UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	first := waitReady("pod running")
	markNotReady()
	again := waitReady("Ready put back")
	if again.Status.PodIP != first.Status.PodIP || again.Status.ContainerStatuses[0].ContainerID != first.Status.ContainerStatuses[0].ContainerID {
		t.Errorf("the pod was restarted: IP %s -> %s, container %s -> %s", first.Status.PodIP, again.Status.PodIP,
			first.Status.ContainerStatuses[0].ContainerID, again.Status.ContainerStatuses[0].ContainerID)
	}

	c.StopHeartbeat("a")
	markNotReady()
	time.Sleep(300 * time.Millisecond) // six heartbeats and far more than StartDelay
	if p := get(); ready(p) != corev1.ConditionFalse {
		t.Fatalf("a node with its heartbeat stopped (agent down) changed its pod: Ready %q", ready(p))
	}
	if err := c.ResumeHeartbeat(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if p := waitReady("Ready put back after the heartbeat resumed"); p.Status.PodIP != first.Status.PodIP {
		t.Errorf("pod IP %s -> %s", first.Status.PodIP, p.Status.PodIP)
	}
	if err := c.ResumeHeartbeat(ctx, "nope"); err == nil {
		t.Error("ResumeHeartbeat of an unknown node succeeded")
	}
}

// TestTerminatingPodsDeletedByLiveNodes checks that a simulated node deletes for good the pods
// being deleted gracefully on it, as an agent does once their containers stopped, and that a
// node whose agent is down leaves them Terminating.
func TestTerminatingPodsDeletedByLiveNodes(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c, client := startCluster(t, ctx)
	if err := c.AddNodes(ctx, NodeSpec{Name: "up"}, NodeSpec{Name: "down"}); err != nil {
		t.Fatal(err)
	}
	c.StopHeartbeat("down")
	// The fake clientset deletes at once; pods marked by a graceful delete are created as such.
	now, grace := metav1.Now(), int64(30)
	for _, n := range []string{"up", "down"} {
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "p-" + n, UID: "uid-" + types.UID(n),
				DeletionTimestamp: &now, DeletionGracePeriodSeconds: &grace},
			Spec: corev1.PodSpec{NodeName: n, Containers: []corev1.Container{{Name: "c", Image: "busybox"}}},
		}
		if _, err := client.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "the terminating pod of the live node deleted", func() error {
		_, err := client.CoreV1().Pods("default").Get(ctx, "p-up", metav1.GetOptions{})
		if !apierrors.IsNotFound(err) {
			return fmt.Errorf("still there: %v", err)
		}
		return nil
	})
	time.Sleep(200 * time.Millisecond) // several heartbeats
	if _, err := client.CoreV1().Pods("default").Get(ctx, "p-down", metav1.GetOptions{}); err != nil {
		t.Errorf("the terminating pod of a node whose agent is down: %v, want it left Terminating", err)
	}
}
