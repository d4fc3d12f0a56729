package nodeipam_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/bosun-gitops/bosun/internal/resource"
	"github.com/bosun-gitops/bosun/operator/controllers"
	"github.com/bosun-gitops/bosun/operator/controllers/controllertest"
	"github.com/bosun-gitops/bosun/operator/controllers/nodeipam"
	"github.com/bosun-gitops/bosun/operator/events"
	"github.com/bosun-gitops/bosun/operator/informer"
	"github.com/bosun-gitops/bosun/operator/store"
	bosunv1 "github.com/bosun-gitops/bosun/repo-layout/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func node(name, cidr string) *corev1.Node {
	return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.NodeSpec{PodCIDR: cidr}}
}

// cidrs returns node name → podCIDR, failing unless every CIDR is distinct.
func cidrs(env *controllertest.Env) (map[string]string, error) {
	got := map[string]string{}
	seen := map[string]string{}
	for _, o := range env.List(resource.Nodes, "") {
		n := o.(*corev1.Node)
		got[n.Name] = n.Spec.PodCIDR
		if n.Spec.PodCIDR == "" {
			continue
		}
		if other, dup := seen[n.Spec.PodCIDR]; dup {
			return got, fmt.Errorf("%s given to both %s and %s", n.Spec.PodCIDR, other, n.Name)
		}
		seen[n.Spec.PodCIDR] = n.Name
	}
	return got, nil
}

// startOn runs the IPAM controller alone against st until the returned cancel is called.
func startOn(t *testing.T, env *controllertest.Env, st *store.Store) context.CancelFunc {
	ctx, cancel := context.WithCancel(env.Ctx)
	f := informer.NewFactory(st, 0)
	c := &controllers.Context{Store: st, Informers: f, Recorder: &events.FakeRecorder{}, Cluster: controllers.ClusterFromInformer(f),
		Logger: env.Context.Logger, Clock: env.Context.Clock, Workers: 2}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := controllers.RunAll(ctx, c, map[string]controllers.Constructor{nodeipam.Name: nodeipam.New}); err != nil {
			t.Errorf("controllers: %v", err)
		}
	}()
	return func() { cancel(); <-done }
}

func TestUniqueAcrossRestartAndPinned(t *testing.T) {
	env := controllertest.New(t, nil)
	env.MustCreate(resource.Clusters, &bosunv1.Cluster{ObjectMeta: metav1.ObjectMeta{Name: "c"}, Spec: bosunv1.ClusterSpec{PodCIDR: "10.50.0.0/16"}})
	env.MustCreate(resource.Machines, &bosunv1.Machine{ObjectMeta: metav1.ObjectMeta{Name: "pinned"}, Spec: bosunv1.MachineSpec{PodCIDR: "10.50.0.0/24"}})
	env.MustCreate(resource.Nodes, node("keeps", "10.50.1.0/24"))
	env.MustCreate(resource.Nodes, node("a", ""))

	stop := startOn(t, env, env.Store)
	env.Eventually(20*time.Second, "first nodes assigned", func() error {
		got, err := cidrs(env)
		if err != nil {
			return err
		}
		if got["a"] != "10.50.2.0/24" || got["keeps"] != "10.50.1.0/24" {
			return fmt.Errorf("got %v", got)
		}
		return nil
	})
	stop()

	// While no controller runs, more nodes join; the pinned machine's node among them.
	for _, n := range []string{"b", "c", "pinned"} {
		env.MustCreate(resource.Nodes, node(n, ""))
	}
	stop = startOn(t, env, env.Store)
	defer stop()
	env.Eventually(20*time.Second, "all nodes assigned, no duplicates", func() error {
		got, err := cidrs(env)
		if err != nil {
			return err
		}
		want := map[string]string{"keeps": "10.50.1.0/24", "a": "10.50.2.0/24", "pinned": "10.50.0.0/24", "b": "10.50.3.0/24", "c": "10.50.4.0/24"}
		for k, v := range want {
			if got[k] != v {
				return fmt.Errorf("got %v, want %v", got, want)
			}
		}
		return nil
	})
}

func TestFullRange(t *testing.T) {
	env := controllertest.New(t, nil)
	env.MustCreate(resource.Clusters, &bosunv1.Cluster{ObjectMeta: metav1.ObjectMeta{Name: "c"}, Spec: bosunv1.ClusterSpec{PodCIDR: "10.9.0.0/23"}})
	for _, n := range []string{"n1", "n2"} {
		env.MustCreate(resource.Nodes, node(n, ""))
	}
	env.Start(map[string]controllers.Constructor{nodeipam.Name: nodeipam.New})
	env.Eventually(20*time.Second, "two nodes fill the range", func() error {
		got, err := cidrs(env)
		if err != nil {
			return err
		}
		if got["n1"] == "" || got["n2"] == "" {
			return fmt.Errorf("got %v", got)
		}
		return nil
	})
	env.MustCreate(resource.Nodes, node("n3", ""))
	env.Eventually(20*time.Second, "n3 reported as CIDRNotAvailable", func() error {
		obj, err := env.Store.Get(env.Ctx, resource.Nodes, "", "n3")
		if err != nil {
			return err
		}
		n := obj.(*corev1.Node)
		if n.Spec.PodCIDR != "" {
			return fmt.Errorf("n3 got %s from a full range", n.Spec.PodCIDR)
		}
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeNetworkUnavailable && c.Status == corev1.ConditionTrue && c.Reason == nodeipam.ReasonCIDRNotAvailable {
				return nil
			}
		}
		return fmt.Errorf("conditions %+v", n.Status.Conditions)
	})
	env.Eventually(20*time.Second, "CIDRNotAvailable event", func() error {
		for _, o := range env.List(resource.Events, "") {
			if e := o.(*corev1.Event); e.Reason == nodeipam.ReasonCIDRNotAvailable && e.InvolvedObject.Name == "n3" {
				return nil
			}
		}
		return fmt.Errorf("no event")
	})
	// A node leaving frees its CIDR for the waiting one.
	if _, err := env.Store.Delete(env.Ctx, resource.Nodes, "", "n1", store.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	env.Eventually(20*time.Second, "n3 assigned after n1 left", func() error {
		obj, err := env.Store.Get(env.Ctx, resource.Nodes, "", "n3")
		if err != nil {
			return err
		}
		n := obj.(*corev1.Node)
		if n.Spec.PodCIDR == "" {
			return fmt.Errorf("n3 has no CIDR")
		}
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeNetworkUnavailable && c.Status != corev1.ConditionFalse {
				return fmt.Errorf("condition still %+v", c)
			}
		}
		return nil
	})
}

// TestNodeCIDRMaskSize: bosun.yaml's nodeCIDRMaskSize sets the size of every node's pod CIDR.
func TestNodeCIDRMaskSize(t *testing.T) {
	env := controllertest.New(t, nil)
	env.MustCreate(resource.Clusters, &bosunv1.Cluster{ObjectMeta: metav1.ObjectMeta{Name: "c"},
		Spec: bosunv1.ClusterSpec{PodCIDR: "10.9.0.0/24", NodeCIDRMaskSize: 26}})
	for _, n := range []string{"n1", "n2", "n3", "n4", "n5"} {
		env.MustCreate(resource.Nodes, node(n, ""))
	}
	env.Start(map[string]controllers.Constructor{nodeipam.Name: nodeipam.New})
	env.Eventually(20*time.Second, "four /26 assigned, the fifth node left without", func() error {
		got, err := cidrs(env)
		if err != nil {
			return err
		}
		seen := map[string]bool{}
		for _, n := range []string{"n1", "n2", "n3", "n4"} {
			c := got[n]
			if !strings.HasSuffix(c, "/26") || !strings.HasPrefix(c, "10.9.0.") || seen[c] {
				return fmt.Errorf("%s has %q; got %v", n, c, got)
			}
			seen[c] = true
		}
		if got["n5"] != "" {
			return fmt.Errorf("n5 got %s from a full /24 of four /26", got["n5"])
		}
		return nil
	})
}
