package store_test

import (
	"context"
	"testing"

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
