package gitsync

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/bosun-gitops/bosun/internal/resource"
	"github.com/bosun-gitops/bosun/operator/store/storetest"
	repolayout "github.com/bosun-gitops/bosun/repo-layout"
	bosunv1 "github.com/bosun-gitops/bosun/repo-layout/v1alpha1"
	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

func pod(ns, name string) string {
	return fmt.Sprintf("apiVersion: v1\nkind: Pod\nmetadata:\n  name: %s\n  namespace: %s\nspec:\n  containers:\n  - name: app\n    image: registry.example.com/app:1\n", name, ns)
}

// TestSyncRefusesToAdoptControlledObjects: Git naming an object that a controller owns (a pod of
// a ReplicaSet) is refused at the manifest's file:line and the commit applies nothing; an
// object owned without controller: true is adopted as before.
func TestSyncRefusesToAdoptControlledObjects(t *testing.T) {
	ctx := context.Background()
	st := storetest.NewStore(t)
	f := newGitFixture(t)
	yes, no := true, false
	for _, p := range []struct {
		name       string
		controller *bool
	}{{"web-abc-x1", &yes}, {"helper", &no}} {
		obj := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: p.name, OwnerReferences: []metav1.OwnerReference{{
				APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "web-abc", UID: types.UID("rs-uid"), Controller: p.controller,
			}}},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "registry.example.com/app:1"}}},
		}
		resource.Pods.SetTypeMeta(obj)
		if _, err := st.Create(ctx, resource.Pods, obj); err != nil {
			t.Fatal(err)
		}
	}
	f.write("cm.yaml", configMap("default", "cm", "1"))
	f.write("pods/helper.yaml", pod("default", "helper"))
	f.write("pods/stolen.yaml", namespace("other")+"---\n"+pod("default", "web-abc-x1"))
	f.commitPush("adopt a controlled pod", "main")
	s := newSyncer(t, f, st, nil)

	// A plan of the commit reports what the sync will refuse, not an adoption.
	plan, err := s.PlanRef(ctx, "main", "")
	if err != nil {
		t.Fatalf("PlanRef: %v", err)
	}
	if len(plan.Errors) != 1 || plan.Errors[0].File != "pods/stolen.yaml" || plan.Errors[0].Line != 6 || len(plan.Changes) != 0 {
		t.Errorf("plan: errors %v, %d changes; want the controlled pod refused at pods/stolen.yaml:6 and no changes", plan.Errors, len(plan.Changes))
	}

	_, err = s.SyncOnce(ctx)
	var list repolayout.ErrorList
	if !errors.As(err, &list) {
		t.Fatalf("SyncOnce = %v, want the commit refused with file:line errors", err)
	}
	want := []string{"pods/stolen.yaml:6: metadata.name: default/web-abc-x1 is owned by ReplicaSet web-abc (controller); rename the object in Git or remove it"}
	var got []string
	for _, e := range list {
		got = append(got, e.Error())
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("errors (-want +got):\n%s", diff)
	}
	if cms := names(t, st, resource.ConfigMaps); len(cms) != 0 {
		t.Errorf("the refused commit applied %v", keys(cms))
	}
	pods := names(t, st, resource.Pods)
	for _, name := range []string{"default/web-abc-x1", "default/helper"} {
		if isManaged(pods[name]) {
			t.Errorf("%s was adopted by a refused commit", name)
		}
	}
	status := gitSyncStatus(t, st, "default")
	wantErrs := []bosunv1.FileError{{File: "pods/stolen.yaml", Line: 6, Field: "metadata.name",
		Message: "default/web-abc-x1 is owned by ReplicaSet web-abc (controller); rename the object in Git or remove it"}}
	if diff := cmp.Diff(wantErrs, status.Errors); diff != "" || status.State != bosunv1.SyncStateFailed {
		t.Errorf("status %s, errors (-want +got):\n%s", status.State, diff)
	}

	// Without the controlled pod the commit goes through, and the pod owned without
	// controller: true is adopted.
	f.remove("pods/stolen.yaml")
	f.commitPush("leave the ReplicaSet's pod alone", "main")
	res := mustSync(t, s)
	if res.Counts.Created != 2 || res.Counts.Updated != 1 {
		t.Errorf("counts = %+v, want the ConfigMap and the Cluster created and the helper pod adopted", res.Counts)
	}
	pods = names(t, st, resource.Pods)
	if !isManaged(pods["default/helper"]) || isManaged(pods["default/web-abc-x1"]) {
		t.Errorf("managed: helper %v, web-abc-x1 %v; want only helper", isManaged(pods["default/helper"]), isManaged(pods["default/web-abc-x1"]))
	}
}
