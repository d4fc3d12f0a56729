package store_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/bosun-gitops/bosun/internal/resource"
	"github.com/bosun-gitops/bosun/operator/store"
	"github.com/bosun-gitops/bosun/operator/store/storetest"
	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func configMap(i int, size int) *corev1.ConfigMap {
	return &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Namespace: fmt.Sprintf("ns%d", i%10), Name: fmt.Sprintf("cm-%05d", i),
			Annotations: map[string]string{resource.AnnotationSource: fmt.Sprintf("apps/cm-%05d.yaml", i)}},
		Data: map[string]string{"payload": strings.Repeat("x", size)},
	}
}

// opObjects returns deep copies of the objects of ops.
func opObjects(ops []store.Op) []resource.Object {
	out := make([]resource.Object, len(ops))
	for i, op := range ops {
		out[i] = op.Object.DeepCopyObject().(resource.Object)
	}
	return out
}

// outcome summarises an OpResult: "ok", "ok-nil" or the error's reason.
func outcome(r store.OpResult) string {
	if r.Err != nil {
		return string(apierrors.ReasonForError(r.Err))
	}
	if r.Object == nil {
		return "ok-nil"
	}
	return "ok"
}

func TestBatch(t *testing.T) {
	ctx := context.Background()
	s := storetest.NewStoreWithOptions(t, store.Options{MaxTxnOps: 50})
	const n = 1000

	// 1 000 creates, 10 of which collide with objects created beforehand.
	var pre []resource.Object
	for i := 0; i < n; i += 100 {
		obj, err := s.Create(ctx, resource.ConfigMaps, configMap(i, 10))
		if err != nil {
			t.Fatal(err)
		}
		pre = append(pre, obj)
	}
	ops := make([]store.Op, n)
	want := make([]string, n)
	for i := range n {
		ops[i] = store.Op{Type: store.OpCreate, Resource: resource.ConfigMaps, Object: configMap(i, 1000)}
		want[i] = "ok"
		if i%100 == 0 {
			want[i] = string(metav1.StatusReasonAlreadyExists)
		}
	}
	before := opObjects(ops)
	results := s.Batch(ctx, ops)
	if diff := cmp.Diff(before, opObjects(ops)); diff != "" {
		t.Errorf("Batch modified the ops' objects (-before +after):\n%s", diff)
	}
	got := make([]string, n)
	for i, r := range results {
		got[i] = outcome(r)
		if r.Err == nil && (r.Object.GetName() != ops[i].Object.GetName() || r.Object.GetUID() == "" || r.Object.GetResourceVersion() == "") {
			t.Fatalf("result %d = %s uid %q rv %q", i, r.Object.GetName(), r.Object.GetUID(), r.Object.GetResourceVersion())
		}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("create results (-want +got):\n%s", diff)
	}
	list, err := s.List(ctx, resource.ConfigMaps, "", store.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Items) != n {
		t.Errorf("stored %d objects, want %d", len(list.Items), n)
	}
	stored, _ := s.Get(ctx, resource.ConfigMaps, "ns5", "cm-00005")
	if diff := cmp.Diff(results[5].Object, stored); diff != "" {
		t.Errorf("batch result differs from stored (-result +stored):\n%s", diff)
	}

	// Updates (some stale, some of missing objects, some unchanged), deletes (some stale, some
	// already gone) and a key touched twice, in one batch.
	ops = ops[:0]
	want = want[:0]
	for i := 1; i < 200; i++ {
		if results[i].Object == nil {
			continue // its create failed
		}
		cur := results[i].Object.DeepCopyObject().(*corev1.ConfigMap)
		switch {
		case i%10 == 1:
			cur.ResourceVersion = "1" // stale
			cur.Data["payload"] = "stale"
			ops = append(ops, store.Op{Type: store.OpUpdate, Resource: resource.ConfigMaps, Object: cur})
			want = append(want, string(metav1.StatusReasonConflict))
		case i%10 == 2:
			ops = append(ops, store.Op{Type: store.OpUpdate, Resource: resource.ConfigMaps, Object: cur}) // unchanged
			want = append(want, "ok")
		case i%10 == 3:
			cur.Data["payload"] = "new"
			cur.ResourceVersion = ""
			ops = append(ops, store.Op{Type: store.OpUpdate, Resource: resource.ConfigMaps, Object: cur})
			want = append(want, "ok")
		case i%10 == 4:
			ops = append(ops, store.Op{Type: store.OpDelete, Resource: resource.ConfigMaps, Object: cur})
			want = append(want, "ok-nil")
		case i%10 == 5:
			cur.ResourceVersion = "1"
			ops = append(ops, store.Op{Type: store.OpDelete, Resource: resource.ConfigMaps, Object: cur})
			want = append(want, string(metav1.StatusReasonConflict))
		case i%10 == 6:
			gone := configMap(100000+i, 1)
			ops = append(ops, store.Op{Type: store.OpDelete, Resource: resource.ConfigMaps, Object: gone})
			want = append(want, "ok-nil")
		case i%10 == 7:
			missing := configMap(200000+i, 1)
			ops = append(ops, store.Op{Type: store.OpUpdate, Resource: resource.ConfigMaps, Object: missing})
			want = append(want, string(metav1.StatusReasonNotFound))
		}
	}
	twice := results[9].Object.DeepCopyObject().(*corev1.ConfigMap)
	twice.ResourceVersion = ""
	twice.Data["payload"] = "first"
	second := twice.DeepCopy()
	second.Data["payload"] = "second"
	ops = append(ops,
		store.Op{Type: store.OpUpdate, Resource: resource.ConfigMaps, Object: twice},
		store.Op{Type: store.OpUpdate, Resource: resource.ConfigMaps, Object: second})
	want = append(want, "ok", "ok")

	before = opObjects(ops)
	results2 := s.Batch(ctx, ops)
	if diff := cmp.Diff(before, opObjects(ops)); diff != "" {
		t.Errorf("Batch modified the ops' objects (-before +after):\n%s", diff)
	}
	got = got[:0]
	for _, r := range results2 {
		got = append(got, outcome(r))
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("mixed results (-want +got):\n%s", diff)
	}
	for i, op := range ops {
		obj, err := s.Get(ctx, resource.ConfigMaps, op.Object.GetNamespace(), op.Object.GetName())
		switch {
		case op.Type == store.OpDelete && want[i] == "ok-nil":
			if !apierrors.IsNotFound(err) {
				t.Errorf("op %d: deleted object still there (%v)", i, err)
			}
		case op.Type == store.OpUpdate && want[i] == "ok" && i < len(ops)-2:
			if diff := cmp.Diff(results2[i].Object, obj); diff != "" {
				t.Errorf("op %d: stored differs from result:\n%s", i, diff)
			}
		case want[i] == string(metav1.StatusReasonConflict):
			if obj.(*corev1.ConfigMap).Data["payload"] == "stale" {
				t.Errorf("op %d: stale update was written", i)
			}
		}
	}
	last, _ := s.Get(ctx, resource.ConfigMaps, twice.Namespace, twice.Name)
	if p := last.(*corev1.ConfigMap).Data["payload"]; p != "second" {
		t.Errorf("key updated twice holds %q, want the second update", p)
	}

	// An object over the limit fails alone.
	big := configMap(5000, 1600*1024)
	results3 := s.Batch(ctx, []store.Op{
		{Type: store.OpCreate, Resource: resource.ConfigMaps, Object: configMap(5001, 10)},
		{Type: store.OpCreate, Resource: resource.ConfigMaps, Object: big},
	})
	if diff := cmp.Diff([]string{"ok", string(metav1.StatusReasonRequestEntityTooLarge)}, []string{outcome(results3[0]), outcome(results3[1])}); diff != "" {
		t.Errorf("size limit results (-want +got):\n%s", diff)
	}
}

// TestBatchUpdateFromBase: updates made from a Base (an informer's copy) are written without a
// read when the Base is current, fail with Conflict when the object changed since, keep what
// only the stored object has (uid, creation time, status for OpUpdate) and leave the Base as
// it was.
func TestBatchUpdateFromBase(t *testing.T) {
	ctx := context.Background()
	s := storetest.NewStore(t)
	pod := func(name string) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "a", Name: name},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox"}}}}
	}
	var bases []*corev1.Pod
	for _, name := range []string{"fresh", "changed", "status"} {
		obj, err := s.Create(ctx, resource.Pods, pod(name))
		if err != nil {
			t.Fatal(err)
		}
		bases = append(bases, obj.(*corev1.Pod))
	}
	// "changed" is written by someone else after its Base was read.
	other := bases[1].DeepCopy()
	other.Labels = map[string]string{"by": "someone else"}
	if _, err := s.Update(ctx, resource.Pods, other); err != nil {
		t.Fatal(err)
	}
	// "status" has a status the Base knows; an OpUpdate keeps it, whatever Object says.
	bases[2].Status.Phase = corev1.PodRunning
	st, err := s.UpdateStatus(ctx, resource.Pods, bases[2])
	if err != nil {
		t.Fatal(err)
	}
	bases[2] = st.(*corev1.Pod)
	frozen := []*corev1.Pod{bases[0].DeepCopy(), bases[1].DeepCopy(), bases[2].DeepCopy()}

	bound := func(b *corev1.Pod) *corev1.Pod {
		p := b.DeepCopy()
		p.Spec.NodeName = "n1"
		p.Status.Phase = corev1.PodUnknown
		return p
	}
	results := s.Batch(ctx, []store.Op{
		{Type: store.OpUpdateWithStatus, Resource: resource.Pods, Object: bound(bases[0]), Base: bases[0]},
		{Type: store.OpUpdateWithStatus, Resource: resource.Pods, Object: bound(bases[1]), Base: bases[1]},
		{Type: store.OpUpdate, Resource: resource.Pods, Object: bound(bases[2]), Base: bases[2]},
	})
	got := []string{outcome(results[0]), outcome(results[1]), outcome(results[2])}
	if diff := cmp.Diff([]string{"ok", string(metav1.StatusReasonConflict), "ok"}, got); diff != "" {
		t.Fatalf("results (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(frozen, bases); diff != "" {
		t.Errorf("Batch modified the bases (-before +after):\n%s", diff)
	}
	for i, name := range []string{"fresh", "changed", "status"} {
		obj, err := s.Get(ctx, resource.Pods, "a", name)
		if err != nil {
			t.Fatal(err)
		}
		p := obj.(*corev1.Pod)
		wantNode, wantPhase := "n1", corev1.PodUnknown
		switch name {
		case "changed":
			wantNode, wantPhase = "", frozen[i].Status.Phase
		case "status":
			wantPhase = corev1.PodRunning
		}
		if p.Spec.NodeName != wantNode || p.Status.Phase != wantPhase || p.UID != frozen[i].UID ||
			!p.CreationTimestamp.Equal(&frozen[i].CreationTimestamp) {
			t.Errorf("stored pod %s: node %q phase %q uid %s created %v; want node %q phase %q uid %s created %v", name,
				p.Spec.NodeName, p.Status.Phase, p.UID, p.CreationTimestamp, wantNode, wantPhase, frozen[i].UID, frozen[i].CreationTimestamp)
		}
		if results[i].Err == nil && results[i].Object.GetResourceVersion() != p.ResourceVersion {
			t.Errorf("result %s has resourceVersion %s, stored %s", name, results[i].Object.GetResourceVersion(), p.ResourceVersion)
		}
	}
}
