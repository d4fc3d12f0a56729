package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/bosun-gitops/bosun/internal/resource"
	"github.com/bosun-gitops/bosun/operator/store"
	"github.com/bosun-gitops/bosun/operator/store/storetest"
	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestDeletePropagationPolicy checks the finalizers a Delete leaves, as Kubernetes' API server
// computes them from propagationPolicy: deleting twice (first, then second) shows how an
// object already being deleted changes policy.
func TestDeletePropagationPolicy(t *testing.T) {
	ctx := context.Background()
	s := storetest.NewStore(t)
	orphan, foreground, background := ptr(metav1.DeletePropagationOrphan), ptr(metav1.DeletePropagationForeground), ptr(metav1.DeletePropagationBackground)
	const custom = "bosun.dev/cleanup"
	for _, tc := range []struct {
		name       string
		res        *resource.Resource
		finalizers []string
		first      *metav1.DeletionPropagation
		want1      []string // finalizers after the first delete; nil: deleted
		second     *metav1.DeletionPropagation
		want2      []string
	}{
		{name: "nil deletes", res: resource.Pods},
		{name: "background deletes", res: resource.Pods, first: background},
		{name: "orphan marks", res: resource.Pods, first: orphan, want1: []string{metav1.FinalizerOrphanDependents},
			second: orphan, want2: []string{metav1.FinalizerOrphanDependents}},
		{name: "foreground marks", res: resource.ConfigMaps, first: foreground, want1: []string{metav1.FinalizerDeleteDependents},
			second: nil, want2: []string{metav1.FinalizerDeleteDependents}},
		{name: "orphan then foreground", res: resource.Pods, first: orphan, want1: []string{metav1.FinalizerOrphanDependents},
			second: foreground, want2: []string{metav1.FinalizerDeleteDependents}},
		{name: "orphan then background", res: resource.Pods, first: orphan, want1: []string{metav1.FinalizerOrphanDependents},
			second: background},
		{name: "background keeps other finalizers", res: resource.Pods, finalizers: []string{custom},
			first: background, want1: []string{custom}, second: nil, want2: []string{custom}},
		{name: "orphan next to another finalizer", res: resource.Pods, finalizers: []string{custom},
			first: orphan, want1: []string{custom, metav1.FinalizerOrphanDependents},
			second: background, want2: []string{custom}},
		{name: "events take no propagation finalizer", res: resource.Events, first: orphan},
	} {
		t.Run(tc.name, func(t *testing.T) {
			obj := tc.res.New()
			obj.SetNamespace("default")
			obj.SetName("obj")
			obj.SetFinalizers(tc.finalizers)
			created, err := s.Create(ctx, tc.res, obj)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				if cur, err := s.Get(ctx, tc.res, "default", "obj"); err == nil {
					cur.SetFinalizers(nil)
					s.Update(ctx, tc.res, cur)
					s.Delete(ctx, tc.res, "default", "obj", store.DeleteOptions{})
				}
			})
			check := func(step string, policy *metav1.DeletionPropagation, want []string) metav1.Object {
				t.Helper()
				if _, err := s.Delete(ctx, tc.res, "default", "obj", store.DeleteOptions{PropagationPolicy: policy}); err != nil {
					t.Fatalf("%s delete: %v", step, err)
				}
				got, err := s.Get(ctx, tc.res, "default", "obj")
				if want == nil {
					if !apierrors.IsNotFound(err) {
						t.Fatalf("after the %s delete: Get error = %v, want NotFound", step, err)
					}
					return nil
				}
				if err != nil {
					t.Fatalf("after the %s delete: %v", step, err)
				}
				if diff := cmp.Diff(want, got.GetFinalizers()); diff != "" {
					t.Errorf("finalizers after the %s delete (-want +got):\n%s", step, diff)
				}
				if got.GetDeletionTimestamp() == nil {
					t.Errorf("after the %s delete: no deletionTimestamp", step)
				}
				return got
			}
			first := check("first", tc.first, tc.want1)
			if first == nil {
				return
			}
			if rvOf(t, first) <= rvOf(t, created) {
				t.Errorf("marking did not write: rv %s, created at %s", first.GetResourceVersion(), created.GetResourceVersion())
			}
			second := check("second", tc.second, tc.want2)
			if second != nil && !second.GetDeletionTimestamp().Equal(first.GetDeletionTimestamp()) {
				t.Errorf("second delete moved deletionTimestamp from %v to %v", first.GetDeletionTimestamp(), second.GetDeletionTimestamp())
			}
		})
	}
}

// TestDeleteOrphanThenFinalizerRemoved: the collector's last step, removing the propagation
// finalizer, completes the deletion.
func TestDeleteOrphanThenFinalizerRemoved(t *testing.T) {
	ctx := context.Background()
	s := storetest.NewStore(t)
	if _, err := s.Create(ctx, resource.Pods, pod("default", "p", "")); err != nil {
		t.Fatal(err)
	}
	marked, err := s.Delete(ctx, resource.Pods, "default", "p", store.DeleteOptions{PropagationPolicy: ptr(metav1.DeletePropagationOrphan)})
	if err != nil {
		t.Fatal(err)
	}
	next := marked.DeepCopyObject().(*corev1.Pod)
	next.Finalizers = nil
	if _, err := s.Update(ctx, resource.Pods, next); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, resource.Pods, "default", "p"); !apierrors.IsNotFound(err) {
		t.Errorf("after the orphan finalizer was removed: Get error = %v, want NotFound", err)
	}
}

// TestGracefulPodDeletion checks Kubernetes' graceful deletion of pods: a pod bound to a node and
// not finished is marked (deletionTimestamp = now + grace, deletionGracePeriodSeconds = grace)
// and stays, through status writes, until a delete with grace 0 (its node's); a later delete may
// only shorten the grace period; unbound and finished pods, and other kinds, go at once.
func TestGracefulPodDeletion(t *testing.T) {
	ctx := context.Background()
	s := storetest.NewStore(t)
	get := func(name string) *corev1.Pod {
		t.Helper()
		o, err := s.Get(ctx, resource.Pods, "default", name)
		if apierrors.IsNotFound(err) {
			return nil
		}
		if err != nil {
			t.Fatal(err)
		}
		return o.(*corev1.Pod)
	}
	grace := func(g int64) *int64 { return &g }
	create := func(name, node string, phase corev1.PodPhase, specGrace *int64) {
		t.Helper()
		p := pod("default", name, node)
		p.Spec.TerminationGracePeriodSeconds = specGrace
		created, err := s.Create(ctx, resource.Pods, p)
		if err != nil {
			t.Fatal(err)
		}
		if phase != "" {
			c := created.(*corev1.Pod)
			c.Status.Phase = phase
			if _, err := s.UpdateStatus(ctx, resource.Pods, c); err != nil {
				t.Fatal(err)
			}
		}
	}
	del := func(name string, g *int64) {
		t.Helper()
		if _, err := s.Delete(ctx, resource.Pods, "default", name, store.DeleteOptions{GracePeriodSeconds: g}); err != nil {
			t.Fatal(err)
		}
	}

	create("unbound", "", "", nil)
	create("finished", "n1", corev1.PodSucceeded, nil)
	del("unbound", nil)
	del("finished", nil)
	if get("unbound") != nil || get("finished") != nil {
		t.Error("an unbound or finished pod was kept: it has no running containers to wait for")
	}

	create("web", "n1", corev1.PodRunning, grace(20))
	before := time.Now()
	del("web", nil)
	p := get("web")
	if p == nil || p.DeletionTimestamp == nil || p.DeletionGracePeriodSeconds == nil || *p.DeletionGracePeriodSeconds != 20 {
		t.Fatalf("bound running pod after delete: %+v, want it marked with its grace period of 20 s", p)
	}
	if d := p.DeletionTimestamp.Sub(before); d < 19*time.Second || d > 22*time.Second {
		t.Errorf("deletionTimestamp %s after the delete, want about 20 s", d)
	}
	// A longer grace period changes nothing; a shorter one brings the deadline forward.
	del("web", grace(60))
	if again := get("web"); *again.DeletionGracePeriodSeconds != 20 || !again.DeletionTimestamp.Equal(p.DeletionTimestamp) {
		t.Errorf("a delete with a longer grace period changed the marked pod: %v %v", again.DeletionTimestamp, *again.DeletionGracePeriodSeconds)
	}
	del("web", grace(5))
	p = get("web")
	if *p.DeletionGracePeriodSeconds != 5 || time.Until(p.DeletionTimestamp.Time) > 6*time.Second {
		t.Errorf("after a delete with grace 5: %v %v, want the deadline brought forward", p.DeletionTimestamp, *p.DeletionGracePeriodSeconds)
	}
	// Its node keeps writing status while it stops the containers.
	p.Status.Phase = corev1.PodFailed
	if _, err := s.UpdateStatus(ctx, resource.Pods, p); err != nil {
		t.Fatal(err)
	}
	if get("web") == nil {
		t.Fatal("a status write removed the pod being deleted gracefully")
	}
	del("web", grace(0))
	if get("web") != nil {
		t.Error("a delete with grace 0 left the pod")
	}

	// With a finalizer: the node's delete (grace 0) ends the grace period, and the pod goes
	// when the finalizer does; a later delete does not lengthen a grace period that ended.
	create("held", "n1", corev1.PodRunning, grace(20))
	held := get("held")
	held.Finalizers = []string{"bosun.dev/test"}
	if _, err := s.Update(ctx, resource.Pods, held); err != nil {
		t.Fatal(err)
	}
	del("held", nil)
	del("held", grace(0))
	if p := get("held"); p == nil || p.DeletionGracePeriodSeconds == nil || *p.DeletionGracePeriodSeconds != 0 || time.Until(p.DeletionTimestamp.Time) > time.Second {
		t.Fatalf("a pod its finalizer holds, after its node's delete: %+v, want it marked with no grace pending", p)
	}
	del("held", nil)
	held = get("held")
	if *held.DeletionGracePeriodSeconds != 0 {
		t.Errorf("a delete after the grace period ended set it to %d s again", *held.DeletionGracePeriodSeconds)
	}
	held.Finalizers = nil
	if _, err := s.Update(ctx, resource.Pods, held); err != nil {
		t.Fatal(err)
	}
	if get("held") != nil {
		t.Error("the pod stayed after its last finalizer was removed")
	}

	create("default-grace", "n1", corev1.PodRunning, nil)
	del("default-grace", nil)
	if p := get("default-grace"); p == nil || *p.DeletionGracePeriodSeconds != corev1.DefaultTerminationGracePeriodSeconds {
		t.Errorf("a pod without terminationGracePeriodSeconds: %+v, want the default 30 s", p)
	}
}
