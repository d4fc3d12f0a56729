package store_test

import (
	"bytes"
	"context"
	"strconv"
	"strings"
	"testing"

	"github.com/bosun-gitops/bosun/internal/resource"
	"github.com/bosun-gitops/bosun/operator/store"
	"github.com/bosun-gitops/bosun/operator/store/storetest"
	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
)

func pod(ns, name, node string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{"app": "web"}},
		Spec:       corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "c", Image: "busybox"}}},
	}
}

func rvOf(t *testing.T, obj metav1.Object) int64 {
	t.Helper()
	n, err := strconv.ParseInt(obj.GetResourceVersion(), 10, 64)
	if err != nil {
		t.Fatalf("resourceVersion %q: %v", obj.GetResourceVersion(), err)
	}
	return n
}

func TestCreateGet(t *testing.T) {
	ctx := context.Background()
	s := storetest.NewStore(t)
	in := pod("default", "web-1", "")
	created, err := s.Create(ctx, resource.Pods, in)
	if err != nil {
		t.Fatal(err)
	}
	if in.UID != "" || in.ResourceVersion != "" {
		t.Errorf("Create mutated its argument: %+v", in.ObjectMeta)
	}
	if created.GetUID() == "" || created.GetGeneration() != 1 || created.GetCreationTimestamp().Time.IsZero() || rvOf(t, created) == 0 {
		t.Errorf("created metadata incomplete: %+v", created.(*corev1.Pod).ObjectMeta)
	}
	got, err := s.Get(ctx, resource.Pods, "default", "web-1")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(created, got); diff != "" {
		t.Errorf("Get differs from Create's result (-created +got):\n%s", diff)
	}
	if phase := got.(*corev1.Pod).Status.Phase; phase != corev1.PodPending {
		t.Errorf("a pod created without a phase has phase %q, want Pending (as the API server sets it)", phase)
	}
	if gvk := got.GetObjectKind().GroupVersionKind(); gvk.Kind != "Pod" || gvk.Version != "v1" {
		t.Errorf("type meta = %v, want v1 Pod", gvk)
	}
	raw, err := s.Client().Get(ctx, "/bosun/registry/core/pods/default/web-1")
	if err != nil || len(raw.Kvs) != 1 {
		t.Fatalf("raw key missing: %v %v", raw, err)
	}
	// Stored as kube-apiserver stores it: "k8s\x00", then a runtime.Unknown naming the kind.
	value := raw.Kvs[0].Value
	if !bytes.HasPrefix(value, []byte("k8s\x00")) {
		t.Fatalf("stored value %q does not start with the protobuf prefix k8s\\x00", value)
	}
	var unk runtime.Unknown
	if err := unk.Unmarshal(value[4:]); err != nil {
		t.Fatalf("stored value is not a runtime.Unknown: %v", err)
	}
	if unk.APIVersion != "v1" || unk.Kind != "Pod" {
		t.Errorf("stored value names %q %q, want v1 Pod", unk.APIVersion, unk.Kind)
	}
	var stored corev1.Pod
	if err := stored.Unmarshal(unk.Raw); err != nil {
		t.Fatalf("stored raw is not a protobuf Pod: %v", err)
	}
	if stored.Name != "web-1" || stored.ResourceVersion != "" {
		t.Errorf("stored pod is %q with resourceVersion %q, want web-1 with none (the revision is etcd's)", stored.Name, stored.ResourceVersion)
	}

	// Cluster-scoped kinds have no namespace segment.
	if _, err := s.Create(ctx, resource.Namespaces, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "prod"}}); err != nil {
		t.Fatal(err)
	}
	if raw, _ := s.Client().Get(ctx, "/bosun/registry/core/namespaces/prod"); len(raw.Kvs) != 1 {
		t.Errorf("namespace key not at /bosun/registry/core/namespaces/prod")
	}

	gen, err := s.Create(ctx, resource.Pods, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "default", GenerateName: "web-"}})
	if err != nil {
		t.Fatal(err)
	}
	if n := gen.GetName(); !strings.HasPrefix(n, "web-") || len(n) != len("web-")+5 {
		t.Errorf("generated name = %q, want web-xxxxx", n)
	}
}

func TestErrors(t *testing.T) {
	ctx := context.Background()
	s := storetest.NewStore(t)
	existing, err := s.Create(ctx, resource.Pods, pod("default", "exists", ""))
	if err != nil {
		t.Fatal(err)
	}
	stale := existing.DeepCopyObject().(*corev1.Pod)
	stale.ResourceVersion = strconv.FormatInt(rvOf(t, existing)-1, 10)
	wrongUID := types.UID("nope")
	withRV := pod("default", "new", "")
	withRV.ResourceVersion = "5"

	tests := []struct {
		name    string
		op      func() error
		check   func(error) bool
		message string
	}{
		{"create existing", func() error { _, err := s.Create(ctx, resource.Pods, pod("default", "exists", "")); return err },
			apierrors.IsAlreadyExists, `pods "exists" already exists`},
		{"create with resourceVersion", func() error { _, err := s.Create(ctx, resource.Pods, withRV); return err },
			apierrors.IsBadRequest, "resourceVersion should not be set"},
		{"create without name", func() error { _, err := s.Create(ctx, resource.Pods, pod("default", "", "")); return err },
			apierrors.IsBadRequest, "name is required"},
		{"create without namespace", func() error { _, err := s.Create(ctx, resource.Pods, pod("", "x", "")); return err },
			apierrors.IsBadRequest, "namespace is required"},
		{"create bad name", func() error { _, err := s.Create(ctx, resource.Pods, pod("default", "a/b", "")); return err },
			apierrors.IsInvalid, "metadata.name"},
		{"get missing", func() error { _, err := s.Get(ctx, resource.Pods, "default", "missing"); return err },
			apierrors.IsNotFound, `pods "missing" not found`},
		{"update missing", func() error { _, err := s.Update(ctx, resource.Pods, pod("default", "missing", "")); return err },
			apierrors.IsNotFound, `pods "missing" not found`},
		{"update stale", func() error { _, err := s.Update(ctx, resource.Pods, stale); return err },
			apierrors.IsConflict, `Operation cannot be fulfilled on pods "exists": the object has been modified; please apply your changes to the latest version and try again`},
		{"update status stale", func() error { _, err := s.UpdateStatus(ctx, resource.Pods, stale); return err },
			apierrors.IsConflict, "the object has been modified"},
		{"update status of kind without status", func() error {
			_, err := s.UpdateStatus(ctx, resource.ConfigMaps, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "x"}})
			return err
		}, apierrors.IsMethodNotSupported, "update status"},
		{"update bad resourceVersion", func() error {
			p := pod("default", "exists", "")
			p.ResourceVersion = "abc"
			_, err := s.Update(ctx, resource.Pods, p)
			return err
		}, apierrors.IsBadRequest, "invalid resourceVersion"},
		{"delete missing", func() error {
			_, err := s.Delete(ctx, resource.Pods, "default", "missing", store.DeleteOptions{})
			return err
		},
			apierrors.IsNotFound, "not found"},
		{"delete wrong uid", func() error {
			_, err := s.Delete(ctx, resource.Pods, "default", "exists", store.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &wrongUID}})
			return err
		}, apierrors.IsConflict, "Precondition failed: UID in precondition: nope"},
		{"delete stale", func() error {
			rv := stale.ResourceVersion
			_, err := s.Delete(ctx, resource.Pods, "default", "exists", store.DeleteOptions{Preconditions: &metav1.Preconditions{ResourceVersion: &rv}})
			return err
		}, apierrors.IsConflict, "Precondition failed: ResourceVersion"},
		{"too large", func() error {
			cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "big"},
				Data: map[string]string{"blob": strings.Repeat("x", 1600*1024)}}
			_, err := s.Create(ctx, resource.ConfigMaps, cm)
			return err
		}, apierrors.IsRequestEntityTooLargeError, "over the 1572864-byte limit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.op()
			if !tt.check(err) {
				t.Fatalf("error = %v (%T), wrong kind", err, err)
			}
			if !strings.Contains(err.Error(), tt.message) {
				t.Errorf("error = %q, want it to contain %q", err, tt.message)
			}
		})
	}
	// The failed writes changed nothing.
	got, err := s.Get(ctx, resource.Pods, "default", "exists")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(existing, got); diff != "" {
		t.Errorf("object changed by failed writes (-want +got):\n%s", diff)
	}
}

func TestUpdateGenerationAndStatus(t *testing.T) {
	ctx := context.Background()
	s := storetest.NewStore(t)
	created, err := s.Create(ctx, resource.Pods, pod("default", "p", ""))
	if err != nil {
		t.Fatal(err)
	}

	// Status write keeps spec and metadata; bumps only resourceVersion.
	st := created.DeepCopyObject().(*corev1.Pod)
	st.Status.Phase = corev1.PodRunning
	st.Spec.NodeName = "ignored"
	st.Labels = map[string]string{"ignored": "yes"}
	afterStatus, err := s.UpdateStatus(ctx, resource.Pods, st)
	if err != nil {
		t.Fatal(err)
	}
	want := created.DeepCopyObject().(*corev1.Pod)
	want.Status.Phase = corev1.PodRunning
	want.ResourceVersion = afterStatus.GetResourceVersion()
	if diff := cmp.Diff(want, afterStatus); diff != "" {
		t.Errorf("UpdateStatus result (-want +got):\n%s", diff)
	}
	if rvOf(t, afterStatus) <= rvOf(t, created) {
		t.Errorf("resourceVersion did not grow: %s -> %s", created.GetResourceVersion(), afterStatus.GetResourceVersion())
	}

	tests := []struct {
		name    string
		mutate  func(p *corev1.Pod)
		wantGen int64
	}{
		{"metadata only keeps generation", func(p *corev1.Pod) { p.Labels = map[string]string{"tier": "1"} }, 1},
		{"spec change bumps generation", func(p *corev1.Pod) { p.Spec.NodeName = "node-a" }, 2},
		{"status in a spec write is ignored", func(p *corev1.Pod) { p.Status.Phase = corev1.PodFailed }, 2},
		{"uid and creation timestamp are kept", func(p *corev1.Pod) {
			p.UID = ""
			p.CreationTimestamp = metav1.Time{}
		}, 2},
		{"second spec change", func(p *corev1.Pod) { p.Spec.Containers[0].Image = "busybox:2" }, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cur, err := s.Get(ctx, resource.Pods, "default", "p")
			if err != nil {
				t.Fatal(err)
			}
			next := cur.DeepCopyObject().(*corev1.Pod)
			tt.mutate(next)
			next.ResourceVersion = "" // unconditional
			got, err := s.Update(ctx, resource.Pods, next)
			if err != nil {
				t.Fatal(err)
			}
			gp := got.(*corev1.Pod)
			if gp.Generation != tt.wantGen {
				t.Errorf("generation = %d, want %d", gp.Generation, tt.wantGen)
			}
			if gp.Status.Phase != corev1.PodRunning {
				t.Errorf("stored status lost: phase %q", gp.Status.Phase)
			}
			if gp.UID != created.GetUID() || !gp.CreationTimestamp.Equal(ptr(created.GetCreationTimestamp())) {
				t.Errorf("uid/creationTimestamp changed: %v %v", gp.UID, gp.CreationTimestamp)
			}
			reread, _ := s.Get(ctx, resource.Pods, "default", "p")
			if diff := cmp.Diff(got, reread); diff != "" {
				t.Errorf("Update result differs from stored object (-got +stored):\n%s", diff)
			}
		})
	}

	// An update that changes nothing writes nothing.
	cur, _ := s.Get(ctx, resource.Pods, "default", "p")
	same, err := s.Update(ctx, resource.Pods, cur)
	if err != nil {
		t.Fatal(err)
	}
	if same.GetResourceVersion() != cur.GetResourceVersion() {
		t.Errorf("no-op update wrote: %s -> %s", cur.GetResourceVersion(), same.GetResourceVersion())
	}

	// Kinds without a status subresource: a ConfigMap's data counts as spec.
	cm, err := s.Create(ctx, resource.ConfigMaps, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "c"}, Data: map[string]string{"a": "1"}})
	if err != nil {
		t.Fatal(err)
	}
	cm2 := cm.DeepCopyObject().(*corev1.ConfigMap)
	cm2.Data["a"] = "2"
	got, err := s.Update(ctx, resource.ConfigMaps, cm2)
	if err != nil {
		t.Fatal(err)
	}
	if got.GetGeneration() != 2 || got.(*corev1.ConfigMap).Data["a"] != "2" {
		t.Errorf("configmap update: generation %d data %v", got.GetGeneration(), got.(*corev1.ConfigMap).Data)
	}
}

func ptr[T any](v T) *T { return &v }

func TestFinalizersAndDelete(t *testing.T) {
	ctx := context.Background()
	s := storetest.NewStore(t)
	p := pod("default", "f", "")
	p.Finalizers = []string{"bosun.dev/cleanup"}
	created, err := s.Create(ctx, resource.Pods, p)
	if err != nil {
		t.Fatal(err)
	}
	marked, err := s.Delete(ctx, resource.Pods, "default", "f", store.DeleteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if marked.GetDeletionTimestamp() == nil || rvOf(t, marked) <= rvOf(t, created) {
		t.Fatalf("delete with finalizers did not mark: %+v", marked.(*corev1.Pod).ObjectMeta)
	}
	again, err := s.Delete(ctx, resource.Pods, "default", "f", store.DeleteOptions{})
	if err != nil || again.GetResourceVersion() != marked.GetResourceVersion() {
		t.Errorf("second delete: %v, rv %s want %s", err, again.GetResourceVersion(), marked.GetResourceVersion())
	}
	stored, err := s.Get(ctx, resource.Pods, "default", "f")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(marked, stored); diff != "" {
		t.Errorf("marked object (-returned +stored):\n%s", diff)
	}
	// An update cannot clear the deletion timestamp.
	clear := stored.DeepCopyObject().(*corev1.Pod)
	clear.DeletionTimestamp = nil
	clear.Labels = map[string]string{"x": "y"}
	upd, err := s.Update(ctx, resource.Pods, clear)
	if err != nil {
		t.Fatal(err)
	}
	if upd.GetDeletionTimestamp() == nil {
		t.Errorf("update cleared deletionTimestamp")
	}
	// Removing the last finalizer completes the deletion.
	fin := upd.DeepCopyObject().(*corev1.Pod)
	fin.Finalizers = nil
	if _, err := s.Update(ctx, resource.Pods, fin); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, resource.Pods, "default", "f"); !apierrors.IsNotFound(err) {
		t.Errorf("after finalizers removed: Get error = %v, want NotFound", err)
	}

	// Plain delete returns the last state with the deletion's revision.
	plain, err := s.Create(ctx, resource.Pods, pod("default", "plain", ""))
	if err != nil {
		t.Fatal(err)
	}
	uid := plain.GetUID()
	gone, err := s.Delete(ctx, resource.Pods, "default", "plain", store.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}})
	if err != nil {
		t.Fatal(err)
	}
	if gone.GetName() != "plain" || rvOf(t, gone) <= rvOf(t, plain) {
		t.Errorf("deleted object = %s rv %s", gone.GetName(), gone.GetResourceVersion())
	}
	if _, err := s.Get(ctx, resource.Pods, "default", "plain"); !apierrors.IsNotFound(err) {
		t.Errorf("Get after delete: %v", err)
	}
}
