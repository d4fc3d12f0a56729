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

func TestNodesPodsAndLeases(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
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
