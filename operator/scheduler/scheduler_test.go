package scheduler

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bosun-gitops/bosun/internal/resource"
	"github.com/bosun-gitops/bosun/operator/controllers"
	"github.com/bosun-gitops/bosun/operator/controllers/controllertest"
	corev1 "k8s.io/api/core/v1"
	apiresource "k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// start runs a scheduler built with cfg in env and returns it.
func start(t testing.TB, env *controllertest.Env, cfg Config, tweak func(*Scheduler)) *Scheduler {
	t.Helper()
	var s *Scheduler
	env.Start(map[string]controllers.Constructor{Name: func(c *controllers.Context) (controllers.Controller, error) {
		var err error
		s, err = NewWithConfig(c, cfg)
		if err == nil && tweak != nil {
			tweak(s)
		}
		return s, err
	}})
	return s
}

func pods(env *controllertest.Env) []*corev1.Pod {
	var out []*corev1.Pod
	for _, o := range env.List(resource.Pods, "default") {
		out = append(out, o.(*corev1.Pod))
	}
	return out
}

func TestBindsPendingPods(t *testing.T) {
	env := controllertest.New(t, nil)
	for i := range 3 {
		env.MustCreate(resource.Nodes, testNode(fmt.Sprintf("n%d", i), "4", "8Gi", 110))
	}
	env.MustCreate(resource.Pods, testPod("before", "100m", "100Mi", ""))
	start(t, env, Config{}, nil)
	env.MustCreate(resource.Pods, testPod("after", "100m", "100Mi", ""))
	other := testPod("other-scheduler", "100m", "", "")
	other.Spec.SchedulerName = "someone-else"
	env.MustCreate(resource.Pods, other)

	env.Eventually(30*time.Second, "pods bound", func() error {
		for _, p := range pods(env) {
			if p.Name == "other-scheduler" {
				continue
			}
			c := condition(p, corev1.PodScheduled)
			if p.Spec.NodeName == "" || c == nil || c.Status != corev1.ConditionTrue {
				return fmt.Errorf("%s: %s", p.Name, describeConditions(p))
			}
		}
		return nil
	})
	p, err := env.Store.Get(env.Ctx, resource.Pods, "default", "other-scheduler")
	if err != nil {
		t.Fatal(err)
	}
	if n := p.(*corev1.Pod).Spec.NodeName; n != "" {
		t.Errorf("pod for another scheduler bound to %s", n)
	}
	env.Eventually(30*time.Second, "Scheduled event", func() error {
		for _, o := range env.List(resource.Events, "default") {
			e := o.(*corev1.Event)
			if e.Reason == "Scheduled" && e.InvolvedObject.Name == "after" {
				want := "Successfully assigned default/after to "
				if len(e.Message) <= len(want) || e.Message[:len(want)] != want {
					return fmt.Errorf("message %q", e.Message)
				}
				return nil
			}
		}
		return fmt.Errorf("no Scheduled event for default/after")
	})
}

func TestUnschedulableThenFits(t *testing.T) {
	env := controllertest.New(t, nil)
	env.MustCreate(resource.Nodes, testNode("small-1", "1", "8Gi", 110))
	env.MustCreate(resource.Nodes, testNode("small-2", "1", "8Gi", 110))
	env.MustCreate(resource.Nodes, testNode("db", "16", "64Gi", 110,
		corev1.Taint{Key: "dedicated", Value: "db", Effect: corev1.TaintEffectNoSchedule}))
	env.MustCreate(resource.Pods, testPod("big", "2", "1Gi", ""))
	start(t, env, Config{InitialBackoff: 50 * time.Millisecond, MaxBackoff: 200 * time.Millisecond}, nil)

	want := "0/3 nodes are available: 1 node(s) had untolerated taint {dedicated: db}, 2 Insufficient cpu."
	env.Eventually(30*time.Second, "PodScheduled=False", func() error {
		o, err := env.Store.Get(env.Ctx, resource.Pods, "default", "big")
		if err != nil {
			return err
		}
		p := o.(*corev1.Pod)
		c := condition(p, corev1.PodScheduled)
		if c == nil || c.Status != corev1.ConditionFalse || c.Reason != corev1.PodReasonUnschedulable || c.Message != want {
			return fmt.Errorf("%s", describeConditions(p))
		}
		return nil
	})
	env.Eventually(30*time.Second, "FailedScheduling event", func() error {
		for _, o := range env.List(resource.Events, "default") {
			if e := o.(*corev1.Event); e.Reason == "FailedScheduling" && e.Message == want && e.Type == corev1.EventTypeWarning {
				return nil
			}
		}
		return fmt.Errorf("no FailedScheduling event %q", want)
	})

	env.MustCreate(resource.Nodes, testNode("large", "8", "8Gi", 110))
	env.Eventually(30*time.Second, "bound once a fitting node appears", func() error {
		o, err := env.Store.Get(env.Ctx, resource.Pods, "default", "big")
		if err != nil {
			return err
		}
		p := o.(*corev1.Pod)
		c := condition(p, corev1.PodScheduled)
		if p.Spec.NodeName != "large" || c == nil || c.Status != corev1.ConditionTrue {
			return fmt.Errorf("%s", describeConditions(p))
		}
		return nil
	})
}

// TestNoOvercommit creates many pods at once: each node holds exactly 4 of them by cpu, so every
// pod binds and no node gets a fifth, although binds are written after the decisions.
func TestNoOvercommitAndSpread(t *testing.T) {
	env := controllertest.New(t, nil)
	const nodes, perNode = 5, 4
	for i := range nodes {
		env.MustCreate(resource.Nodes, testNode(fmt.Sprintf("n%d", i), "1", "64Gi", 110))
	}
	start(t, env, Config{}, nil)
	for i := range nodes*perNode + 3 {
		env.MustCreate(resource.Pods, testPod(fmt.Sprintf("p%02d", i), "250m", "10Mi", "rs1"))
	}
	env.Eventually(60*time.Second, "every node full, 3 pods pending", func() error {
		perNodeCount := map[string]int{}
		pending := 0
		for _, p := range pods(env) {
			if p.Spec.NodeName == "" {
				pending++
				continue
			}
			perNodeCount[p.Spec.NodeName]++
		}
		for n, c := range perNodeCount {
			if c > perNode {
				t.Fatalf("node %s overcommitted with %d pods", n, c)
			}
		}
		if len(perNodeCount) != nodes || pending != 3 {
			return fmt.Errorf("per node %v, pending %d", perNodeCount, pending)
		}
		return nil
	})
}

func TestSpreadsOwnerAcrossNodes(t *testing.T) {
	env := controllertest.New(t, nil)
	for i := range 4 {
		env.MustCreate(resource.Nodes, testNode(fmt.Sprintf("n%d", i), "64", "256Gi", 110))
	}
	start(t, env, Config{}, nil)
	for i := range 8 {
		env.MustCreate(resource.Pods, testPod(fmt.Sprintf("web-%d", i), "10m", "10Mi", "web"))
	}
	env.Eventually(30*time.Second, "two web pods per node", func() error {
		count := map[string]int{}
		for _, p := range pods(env) {
			if p.Spec.NodeName == "" {
				return fmt.Errorf("%s pending", p.Name)
			}
			count[p.Spec.NodeName]++
		}
		for n, c := range count {
			if c != 2 {
				return fmt.Errorf("node %s has %d pods: %v", n, c, count)
			}
		}
		return nil
	})
}

// TestBindConflictRequeues changes the pod in the store right before its first bind is written:
// the compare-and-swap fails, the assumed pod is forgotten and the pod is bound on a later try,
// counted once.
func TestBindConflictRequeues(t *testing.T) {
	env := controllertest.New(t, nil)
	env.MustCreate(resource.Nodes, testNode("n0", "1", "1Gi", 110))
	var conflicts atomic.Int32
	s := start(t, env, Config{InitialBackoff: 50 * time.Millisecond}, func(s *Scheduler) {
		s.beforeBind = func(ctx context.Context, bound []*corev1.Pod) {
			if conflicts.Add(1) > 1 {
				return
			}
			for _, p := range bound {
				cur, err := env.Store.Get(ctx, resource.Pods, p.Namespace, p.Name)
				if err != nil {
					t.Error(err)
					return
				}
				cur.SetLabels(map[string]string{"touched": "yes"})
				if _, err := env.Store.Update(ctx, resource.Pods, cur); err != nil {
					t.Error(err)
				}
			}
		}
	})
	env.MustCreate(resource.Pods, testPod("p", "600m", "", ""))
	env.Eventually(30*time.Second, "bound after the conflict", func() error {
		o, err := env.Store.Get(env.Ctx, resource.Pods, "default", "p")
		if err != nil {
			return err
		}
		p := o.(*corev1.Pod)
		if p.Spec.NodeName != "n0" || p.Labels["touched"] != "yes" {
			return fmt.Errorf("%s labels=%v", describeConditions(p), p.Labels)
		}
		return nil
	})
	if conflicts.Load() < 2 {
		t.Fatalf("%d bind attempts, want a retry after the conflict", conflicts.Load())
	}
	env.Eventually(10*time.Second, "counted once", func() error {
		if n := s.cache.podCount("n0"); n != 1 {
			return fmt.Errorf("cache has %d pods on n0", n)
		}
		return nil
	})
	// A second 600m pod does not fit next to it: the accounting kept the first one.
	env.MustCreate(resource.Pods, testPod("q", "600m", "", ""))
	env.Eventually(30*time.Second, "second pod unschedulable", func() error {
		o, err := env.Store.Get(env.Ctx, resource.Pods, "default", "q")
		if err != nil {
			return err
		}
		p := o.(*corev1.Pod)
		if c := condition(p, corev1.PodScheduled); c == nil || c.Message != "0/1 nodes are available: 1 Insufficient cpu." {
			return fmt.Errorf("%s", describeConditions(p))
		}
		return nil
	})
	_ = metav1.Now
}

// TestExtendedResourcesAndNoNodes follows a GPU pod from a cluster without nodes ("no nodes
// available", kube-scheduler's words), through a node without GPUs, to a node with one.
func TestExtendedResourcesAndNoNodes(t *testing.T) {
	env := controllertest.New(t, nil)
	gpuPod := testPod("train", "100m", "", "")
	gpuPod.Spec.Containers[0].Resources.Requests["nvidia.com/gpu"] = apiresource.MustParse("1")
	env.MustCreate(resource.Pods, gpuPod)
	start(t, env, Config{InitialBackoff: 50 * time.Millisecond, MaxBackoff: 200 * time.Millisecond}, nil)
	unschedulable := func(want string) func() error {
		return func() error {
			o, err := env.Store.Get(env.Ctx, resource.Pods, "default", "train")
			if err != nil {
				return err
			}
			p := o.(*corev1.Pod)
			if c := condition(p, corev1.PodScheduled); p.Spec.NodeName != "" || c == nil || c.Message != want {
				return fmt.Errorf("%s", describeConditions(p))
			}
			return nil
		}
	}
	env.Eventually(30*time.Second, "no nodes", unschedulable("no nodes available to schedule pods"))

	env.MustCreate(resource.Nodes, testNode("cpu-only", "8", "8Gi", 110))
	env.Eventually(30*time.Second, "no GPU", unschedulable("0/1 nodes are available: 1 Insufficient nvidia.com/gpu."))

	withGPU := testNode("gpu", "8", "8Gi", 110)
	withGPU.Status.Allocatable["nvidia.com/gpu"] = apiresource.MustParse("1")
	env.MustCreate(resource.Nodes, withGPU)
	env.Eventually(30*time.Second, "bound to the GPU node", func() error {
		o, err := env.Store.Get(env.Ctx, resource.Pods, "default", "train")
		if err != nil {
			return err
		}
		if p := o.(*corev1.Pod); p.Spec.NodeName != "gpu" {
			return fmt.Errorf("%s", describeConditions(p))
		}
		return nil
	})
}
