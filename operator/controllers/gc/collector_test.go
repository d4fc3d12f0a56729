package gc_test

import (
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/bosun-gitops/bosun/internal/resource"
	"github.com/bosun-gitops/bosun/operator/controllers"
	"github.com/bosun-gitops/bosun/operator/controllers/controllertest"
	"github.com/bosun-gitops/bosun/operator/controllers/gc"
	"github.com/bosun-gitops/bosun/operator/store"
	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

func ownerRef(res *resource.Resource, obj resource.Object, block bool) metav1.OwnerReference {
	return metav1.OwnerReference{APIVersion: res.APIVersion(), Kind: res.Kind, Name: obj.GetName(), UID: obj.GetUID(),
		Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(block)}
}

func pod(name string, owners ...metav1.OwnerReference) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name, OwnerReferences: owners},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox"}}},
	}
}

func names(env *controllertest.Env, res *resource.Resource) []string {
	out := []string{}
	for _, o := range env.List(res, "default") {
		out = append(out, o.GetName())
	}
	sort.Strings(out)
	return out
}

func want(env *controllertest.Env, res *resource.Resource, w []string) func() error {
	return func() error {
		if diff := cmp.Diff(w, names(env, res)); diff != "" {
			return fmt.Errorf("%s (-want +got):\n%s", res, diff)
		}
		return nil
	}
}

func start(env *controllertest.Env, opts gc.Options) {
	env.Start(map[string]controllers.Constructor{gc.Name: gc.NewWithOptions(opts)})
}

func TestCascadingDeleteTwoLevels(t *testing.T) {
	env := controllertest.New(t, nil)
	start(env, gc.Options{})
	dep := env.MustCreate(resource.Deployments, &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "web"}})
	keep := env.MustCreate(resource.ReplicaSets, &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "other"}})
	rs := env.MustCreate(resource.ReplicaSets, &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "web-1",
		OwnerReferences: []metav1.OwnerReference{ownerRef(resource.Deployments, dep, true)}}})
	env.MustCreate(resource.Pods, pod("web-1-a", ownerRef(resource.ReplicaSets, rs, true)))
	env.MustCreate(resource.Pods, pod("web-1-b", ownerRef(resource.ReplicaSets, rs, true)))
	// Two owners, one survives: only the dangling reference goes.
	env.MustCreate(resource.Pods, pod("shared", ownerRef(resource.ReplicaSets, rs, false), ownerRef(resource.ReplicaSets, keep, false)))
	env.MustCreate(resource.Pods, pod("unowned"))

	time.Sleep(200 * time.Millisecond)
	if err := want(env, resource.Pods, []string{"shared", "unowned", "web-1-a", "web-1-b"})(); err != nil {
		t.Fatalf("collected with every owner alive: %v", err)
	}
	if _, err := env.Store.Delete(env.Ctx, resource.Deployments, "default", "web", store.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	env.Eventually(20*time.Second, "replica set collected", want(env, resource.ReplicaSets, []string{"other"}))
	env.Eventually(20*time.Second, "pods collected", want(env, resource.Pods, []string{"shared", "unowned"}))
	env.Eventually(20*time.Second, "dangling reference removed", func() error {
		obj, err := env.Store.Get(env.Ctx, resource.Pods, "default", "shared")
		if err != nil {
			return err
		}
		if refs := obj.GetOwnerReferences(); len(refs) != 1 || refs[0].Name != "other" {
			return fmt.Errorf("owner references %+v", refs)
		}
		return nil
	})
}

func TestOwnerGoneBeforeStart(t *testing.T) {
	env := controllertest.New(t, nil)
	rs := env.MustCreate(resource.ReplicaSets, &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "gone"}})
	env.MustCreate(resource.Pods, pod("p", ownerRef(resource.ReplicaSets, rs, true)))
	if _, err := env.Store.Delete(env.Ctx, resource.ReplicaSets, "default", "gone", store.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	// A new object reusing the name is another owner (different uid).
	env.MustCreate(resource.ReplicaSets, &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "gone"}})
	start(env, gc.Options{})
	env.Eventually(20*time.Second, "pod of a deleted owner collected", want(env, resource.Pods, []string{}))
}

func TestOrphanPropagation(t *testing.T) {
	env := controllertest.New(t, nil)
	start(env, gc.Options{})
	rs := env.MustCreate(resource.ReplicaSets, &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "rs",
		Finalizers: []string{metav1.FinalizerOrphanDependents}}})
	env.MustCreate(resource.Pods, pod("a", ownerRef(resource.ReplicaSets, rs, true)))
	env.MustCreate(resource.Pods, pod("b", ownerRef(resource.ReplicaSets, rs, true)))
	if _, err := env.Store.Delete(env.Ctx, resource.ReplicaSets, "default", "rs", store.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	env.Eventually(20*time.Second, "owner gone", want(env, resource.ReplicaSets, []string{}))
	env.Eventually(20*time.Second, "dependents released", func() error {
		for _, o := range env.List(resource.Pods, "default") {
			if len(o.GetOwnerReferences()) != 0 {
				return fmt.Errorf("%s still owned: %+v", o.GetName(), o.GetOwnerReferences())
			}
		}
		return nil
	})
	time.Sleep(200 * time.Millisecond)
	if err := want(env, resource.Pods, []string{"a", "b"})(); err != nil {
		t.Fatalf("orphaned pods were deleted: %v", err)
	}
}

func TestForegroundDeletion(t *testing.T) {
	env := controllertest.New(t, nil)
	start(env, gc.Options{})
	dep := env.MustCreate(resource.Deployments, &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "d",
		Finalizers: []string{metav1.FinalizerDeleteDependents}}})
	rs := env.MustCreate(resource.ReplicaSets, &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "d-1",
		OwnerReferences: []metav1.OwnerReference{ownerRef(resource.Deployments, dep, true)}}})
	env.MustCreate(resource.Pods, pod("d-1-a", ownerRef(resource.ReplicaSets, rs, true)))
	deleted, err := env.Store.Delete(env.Ctx, resource.Deployments, "default", "d", store.DeleteOptions{})
	if err != nil || deleted.GetDeletionTimestamp() == nil {
		t.Fatalf("delete: %v, %v", deleted, err)
	}
	env.Eventually(20*time.Second, "everything gone, owner last", func() error {
		if n := names(env, resource.Pods); len(n) != 0 {
			return fmt.Errorf("pods %v", n)
		}
		if n := names(env, resource.ReplicaSets); len(n) != 0 {
			return fmt.Errorf("replica sets %v", n)
		}
		if _, err := env.Store.Get(env.Ctx, resource.Deployments, "default", "d"); !apierrors.IsNotFound(err) {
			return fmt.Errorf("deployment still there: %v", err)
		}
		return nil
	})
}

func TestTerminatedPodsToDelete(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	mk := func(name string, phase corev1.PodPhase, age int) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name, CreationTimestamp: metav1.NewTime(t0.Add(time.Duration(-age) * time.Minute))},
			Status: corev1.PodStatus{Phase: phase}}
	}
	pods := []*corev1.Pod{
		mk("new-ok", corev1.PodSucceeded, 1), mk("old-fail", corev1.PodFailed, 9), mk("running", corev1.PodRunning, 20),
		mk("mid-ok", corev1.PodSucceeded, 5), mk("oldest-ok", corev1.PodSucceeded, 10),
	}
	tests := []struct {
		threshold int
		want      []string
	}{
		{threshold: 4, want: nil},
		{threshold: 2, want: []string{"oldest-ok", "old-fail"}},
		{threshold: 0, want: []string{"oldest-ok", "old-fail", "mid-ok", "new-ok"}},
		{threshold: -1, want: nil},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.threshold), func(t *testing.T) {
			var got []string
			for _, p := range gc.TerminatedPodsToDelete(pods, tt.threshold) {
				got = append(got, p.Name)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestPodGC(t *testing.T) {
	env := controllertest.New(t, nil)
	env.MustCreate(resource.Nodes, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "alive"}})
	finished := func(name string, phase corev1.PodPhase) {
		p := pod(name)
		p.Spec.NodeName = "alive"
		p.Status.Phase = phase
		env.MustCreate(resource.Pods, p)
	}
	finished("done-1", corev1.PodSucceeded)
	time.Sleep(1100 * time.Millisecond) // creationTimestamp has a one-second resolution
	finished("done-2", corev1.PodFailed)
	time.Sleep(1100 * time.Millisecond)
	finished("done-3", corev1.PodSucceeded)
	finished("running", corev1.PodRunning)
	ghost := pod("on-ghost")
	ghost.Spec.NodeName = "ghost"
	env.MustCreate(resource.Pods, ghost)
	env.MustCreate(resource.Pods, pod("unbound"))

	start(env, gc.Options{TerminatedPodThreshold: 1, PodGCPeriod: 100 * time.Millisecond})
	env.Eventually(20*time.Second, "oldest finished pods and the orphan deleted",
		want(env, resource.Pods, []string{"done-3", "running", "unbound"}))
}

// TestMetadataCachedDependents: the collector caches ConfigMaps and Secrets as metadata only;
// removing a dangling owner reference still writes the whole object (its data survives), and a
// dependent of a deleted owner is collected.
func TestMetadataCachedDependents(t *testing.T) {
	env := controllertest.New(t, nil)
	start(env, gc.Options{})
	gone := env.MustCreate(resource.Deployments, &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "gone"}})
	keep := env.MustCreate(resource.Deployments, &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "keep"}})
	env.MustCreate(resource.ConfigMaps, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "shared",
			OwnerReferences: []metav1.OwnerReference{ownerRef(resource.Deployments, gone, false), ownerRef(resource.Deployments, keep, false)}},
		Data: map[string]string{"settings.yaml": "level: info\n"},
	})
	env.MustCreate(resource.Secrets, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "token",
			OwnerReferences: []metav1.OwnerReference{ownerRef(resource.Deployments, gone, true)}},
		Data: map[string][]byte{"token": []byte("s3cr3t")},
	})
	if _, err := env.Store.Delete(env.Ctx, resource.Deployments, "default", "gone", store.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	env.Eventually(20*time.Second, "the secret of the deleted owner collected", want(env, resource.Secrets, []string{}))
	env.Eventually(20*time.Second, "the dangling reference removed, the data kept", func() error {
		obj, err := env.Store.Get(env.Ctx, resource.ConfigMaps, "default", "shared")
		if err != nil {
			return err
		}
		cm := obj.(*corev1.ConfigMap)
		if refs := cm.OwnerReferences; len(refs) != 1 || refs[0].Name != "keep" {
			return fmt.Errorf("owner references %+v", refs)
		}
		if cm.Data["settings.yaml"] != "level: info\n" {
			return fmt.Errorf("data %v, want settings.yaml kept", cm.Data)
		}
		return nil
	})
}
