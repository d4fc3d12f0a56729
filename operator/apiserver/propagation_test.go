package apiserver_test

import (
	"context"
	"fmt"
	"os/exec"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/bosun-gitops/bosun/operator/controllers"
	"github.com/bosun-gitops/bosun/operator/controllers/controllertest"
	"github.com/bosun-gitops/bosun/operator/controllers/gc"
	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/utils/ptr"
)

// startServerWithGC is an API server on a store that Bosun's garbage collector also runs on, so
// that deletions propagate to dependents as in a cluster.
func startServerWithGC(t *testing.T) *testServer {
	t.Helper()
	env := controllertest.New(t, nil)
	env.Start(map[string]controllers.Constructor{gc.Name: gc.New})
	ts := startServerOn(t, env.Store, t.TempDir())
	ts.createNamespace(t, "default")
	return ts
}

// replicaSetWithPods creates a ReplicaSet and, standing in for its controller, n pods that it
// controls with blockOwnerDeletion (as the ReplicaSet controller sets them). Pods named in hold
// carry a finalizer of the test's, so that their deletion waits until the test removes it.
func replicaSetWithPods(t *testing.T, ts *testServer, name string, n int, hold ...string) (*appsv1.ReplicaSet, []string) {
	t.Helper()
	ctx := testCtx(t)
	labels := map[string]string{"app": name}
	rs, err := ts.client.AppsV1().ReplicaSets("default").Create(ctx, &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: appsv1.ReplicaSetSpec{
			Replicas: ptr.To(int32(n)),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "main", Image: "busybox"}}},
			},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create replica set %s: %v", name, err)
	}
	ref := metav1.OwnerReference{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: rs.Name, UID: rs.UID,
		Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true)}
	var pods []string
	for i := range n {
		p := testPod(fmt.Sprintf("%s-%d", name, i), "", labels)
		p.OwnerReferences = []metav1.OwnerReference{ref}
		if slices.Contains(hold, p.Name) {
			p.Finalizers = []string{"test.bosun.dev/hold"}
		}
		if _, err := ts.client.CoreV1().Pods("default").Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatalf("create pod %s: %v", p.Name, err)
		}
		pods = append(pods, p.Name)
	}
	return rs, pods
}

// deletions records the resourceVersion at which each object was deleted, from a watch of pods
// and one of ReplicaSets started before the test deletes anything.
type deletions struct {
	mu sync.Mutex
	rv map[string]int64 // "pod/name" or "rs/name" -> deletion revision
	// rsFinalizers are the finalizers the ReplicaSet was seen with while it was being deleted.
	rsFinalizers map[string][]string
}

func watchDeletions(t *testing.T, ts *testServer) *deletions {
	t.Helper()
	ctx, cancel := context.WithCancel(testCtx(t))
	t.Cleanup(cancel)
	d := &deletions{rv: map[string]int64{}, rsFinalizers: map[string][]string{}}
	pw, err := ts.client.CoreV1().Pods("default").Watch(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	rw, err := ts.client.AppsV1().ReplicaSets("default").Watch(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	follow := func(w watch.Interface, prefix string) {
		defer w.Stop()
		for ev := range w.ResultChan() {
			m, err := metaOf(ev.Object)
			if err != nil {
				continue
			}
			d.mu.Lock()
			switch {
			case ev.Type == watch.Deleted:
				rv, _ := strconv.ParseInt(m.GetResourceVersion(), 10, 64)
				d.rv[prefix+m.GetName()] = rv
			case prefix == "rs/" && m.GetDeletionTimestamp() != nil:
				for _, f := range m.GetFinalizers() {
					if !slices.Contains(d.rsFinalizers[m.GetName()], f) {
						d.rsFinalizers[m.GetName()] = append(d.rsFinalizers[m.GetName()], f)
					}
				}
			}
			d.mu.Unlock()
		}
	}
	go follow(pw, "pod/")
	go follow(rw, "rs/")
	return d
}

func metaOf(obj any) (metav1.Object, error) {
	m, ok := obj.(metav1.Object)
	if !ok {
		return nil, fmt.Errorf("%T has no metadata", obj)
	}
	return m, nil
}

func (d *deletions) deletedAt(key string) (int64, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	rv, ok := d.rv[key]
	return rv, ok
}

func (d *deletions) finalizersSeen(rs string) []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := slices.Clone(d.rsFinalizers[rs])
	sort.Strings(out)
	return out
}

func podOwners(t *testing.T, ts *testServer, names []string) map[string][]types.UID {
	t.Helper()
	out := map[string][]types.UID{}
	for _, n := range names {
		p, err := ts.client.CoreV1().Pods("default").Get(testCtx(t), n, metav1.GetOptions{})
		if err != nil {
			t.Fatalf("pod %s after the owner's orphaning delete: %v", n, err)
		}
		out[n] = []types.UID{}
		for _, r := range p.OwnerReferences {
			out[n] = append(out[n], r.UID)
		}
	}
	return out
}

// TestDeletePropagationThroughClientGo deletes ReplicaSets with each propagationPolicy through
// client-go against the API server, with the garbage collector running on the same store.
func TestDeletePropagationThroughClientGo(t *testing.T) {
	ts := startServerWithGC(t)
	rsets := ts.client.AppsV1().ReplicaSets("default")

	t.Run("orphan leaves the pods without an owner reference", func(t *testing.T) {
		ctx := testCtx(t)
		d := watchDeletions(t, ts)
		_, pods := replicaSetWithPods(t, ts, "orphan", 3)
		if err := rsets.Delete(ctx, "orphan", metav1.DeleteOptions{PropagationPolicy: ptr.To(metav1.DeletePropagationOrphan)}); err != nil {
			t.Fatalf("delete: %v", err)
		}
		waitFor(t, "the ReplicaSet to go", func() bool { _, ok := d.deletedAt("rs/orphan"); return ok })
		want := map[string][]types.UID{}
		for _, p := range pods {
			want[p] = []types.UID{}
		}
		if diff := cmp.Diff(want, podOwners(t, ts, pods)); diff != "" {
			t.Errorf("pods after the orphaning delete, name -> owner uids (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff([]string{metav1.FinalizerOrphanDependents}, d.finalizersSeen("orphan")); diff != "" {
			t.Errorf("finalizers of the ReplicaSet while it was deleted (-want +got):\n%s", diff)
		}
		for _, p := range pods {
			if _, ok := d.deletedAt("pod/" + p); ok {
				t.Errorf("orphaned pod %s was deleted", p)
			}
		}
	})

	t.Run("foreground deletes the pods before the ReplicaSet", func(t *testing.T) {
		ctx := testCtx(t)
		d := watchDeletions(t, ts)
		// fg-2's finalizer holds it, and with it the ReplicaSet, until the test lets go.
		_, pods := replicaSetWithPods(t, ts, "fg", 3, "fg-2")
		if err := rsets.Delete(ctx, "fg", metav1.DeleteOptions{PropagationPolicy: ptr.To(metav1.DeletePropagationForeground)}); err != nil {
			t.Fatalf("delete: %v", err)
		}
		waitFor(t, "fg-0 and fg-1 to go", func() bool {
			_, a := d.deletedAt("pod/fg-0")
			_, b := d.deletedAt("pod/fg-1")
			return a && b
		})
		held, err := ts.client.CoreV1().Pods("default").Get(ctx, "fg-2", metav1.GetOptions{})
		if err != nil || held.DeletionTimestamp == nil {
			t.Fatalf("fg-2 is not being deleted: %v %+v", err, held.ObjectMeta)
		}
		rs, err := rsets.Get(ctx, "fg", metav1.GetOptions{})
		if err != nil {
			t.Fatalf("the ReplicaSet went while a dependent that blocks it remains: %v", err)
		}
		if rs.DeletionTimestamp == nil || !slices.Contains(rs.Finalizers, metav1.FinalizerDeleteDependents) {
			t.Errorf("waiting ReplicaSet: deletionTimestamp %v finalizers %v, want set and %s", rs.DeletionTimestamp, rs.Finalizers, metav1.FinalizerDeleteDependents)
		}
		held.Finalizers = nil
		if _, err := ts.client.CoreV1().Pods("default").Update(ctx, held, metav1.UpdateOptions{}); err != nil {
			t.Fatalf("releasing fg-2: %v", err)
		}
		waitFor(t, "the ReplicaSet to go", func() bool { _, ok := d.deletedAt("rs/fg"); return ok })
		rsGone, _ := d.deletedAt("rs/fg")
		for _, p := range pods {
			rv, ok := d.deletedAt("pod/" + p)
			if !ok || rv >= rsGone {
				t.Errorf("pod %s deleted at revision %d (seen %v), the ReplicaSet at %d: want every pod first", p, rv, ok, rsGone)
			}
		}
	})

	t.Run("background deletes the ReplicaSet at once and the pods after it", func(t *testing.T) {
		ctx := testCtx(t)
		d := watchDeletions(t, ts)
		_, pods := replicaSetWithPods(t, ts, "bg", 2)
		if err := rsets.Delete(ctx, "bg", metav1.DeleteOptions{PropagationPolicy: ptr.To(metav1.DeletePropagationBackground)}); err != nil {
			t.Fatalf("delete: %v", err)
		}
		if _, err := rsets.Get(ctx, "bg", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("Get after a background delete: err = %v, want NotFound at once", err)
		}
		waitFor(t, "the pods to be collected", func() bool {
			for _, p := range pods {
				if _, ok := d.deletedAt("pod/" + p); !ok {
					return false
				}
			}
			return true
		})
		waitFor(t, "the ReplicaSet's deletion in the watch", func() bool { _, ok := d.deletedAt("rs/bg"); return ok })
		rsGone, _ := d.deletedAt("rs/bg")
		for _, p := range pods {
			if rv, _ := d.deletedAt("pod/" + p); rv <= rsGone {
				t.Errorf("pod %s deleted at revision %d, before its owner (%d)", p, rv, rsGone)
			}
		}
	})

	t.Run("orphanDependents and propagationPolicy together are refused", func(t *testing.T) {
		replicaSetWithPods(t, ts, "both", 0)
		err := rsets.Delete(testCtx(t), "both", metav1.DeleteOptions{OrphanDependents: ptr.To(true), PropagationPolicy: ptr.To(metav1.DeletePropagationOrphan)})
		if !apierrors.IsBadRequest(err) {
			t.Errorf("err = %v, want 400", err)
		}
	})

	t.Run("kubectl --cascade=orphan", func(t *testing.T) {
		kubectl, err := exec.LookPath("kubectl")
		if err != nil {
			t.Skip("kubectl not installed")
		}
		_, pods := replicaSetWithPods(t, ts, "kubectl", 2)
		cmd := exec.Command(kubectl, "--kubeconfig", ts.srv.AdminKubeconfigPath(), "--cache-dir", t.TempDir(),
			"delete", "replicaset", "kubectl", "--namespace", "default", "--cascade=orphan", "--timeout=60s")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("kubectl delete --cascade=orphan: %v\n%s", err, out)
		}
		// kubectl waits until the ReplicaSet is gone, which the collector allows only once
		// it has orphaned the pods.
		if _, err := rsets.Get(testCtx(t), "kubectl", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("ReplicaSet after kubectl returned: err = %v, want NotFound", err)
		}
		for name, owners := range podOwners(t, ts, pods) {
			if len(owners) != 0 {
				t.Errorf("pod %s still has owners %v", name, owners)
			}
		}
		if out, err := exec.Command(kubectl, "--kubeconfig", ts.srv.AdminKubeconfigPath(), "--cache-dir", t.TempDir(),
			"get", "pods", "--namespace", "default", "-l", "app=kubectl", "-o", "name").CombinedOutput(); err != nil ||
			strings.Count(string(out), "pod/") != 2 {
			t.Errorf("kubectl get pods after the orphaning delete: %v\n%s", err, out)
		}
	})
}
