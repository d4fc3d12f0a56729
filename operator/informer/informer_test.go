package informer

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bosun-gitops/bosun/internal/resource"
	"github.com/bosun-gitops/bosun/operator/store/storetest"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	listersv1 "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
)

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

func pod(ns, name string) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{"app": "x"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox"}}}}
}

func TestInformerFollowsStore(t *testing.T) {
	st := storetest.NewStore(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for i := range 3 {
		if _, err := st.Create(ctx, resource.Pods, pod("a", fmt.Sprintf("p%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	f := NewFactory(st, 0)
	inf := f.For(resource.Pods)
	var deleted atomic.Int32
	inf.AddEventHandler(cache.ResourceEventHandlerFuncs{DeleteFunc: func(obj any) {
		if p, ok := obj.(*corev1.Pod); ok && p.Name == "late" {
			deleted.Add(1)
		}
	}})
	f.Start(ctx)
	if !f.WaitForCacheSync(ctx) {
		t.Fatal("cache did not sync")
	}
	lister := listersv1.NewPodLister(inf.GetIndexer())
	if pods, _ := lister.Pods("a").List(everything()); len(pods) != 3 {
		t.Fatalf("listed %d pods after sync, want 3", len(pods))
	}

	p, err := st.Create(ctx, resource.Pods, pod("b", "late"))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the new pod in the cache", func() bool {
		got, err := lister.Pods("b").Get("late")
		return err == nil && got.ResourceVersion == p.GetResourceVersion()
	})
	upd := p.DeepCopyObject().(*corev1.Pod)
	upd.Spec.NodeName = "n1"
	u, err := st.Update(ctx, resource.Pods, upd)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the update in the cache", func() bool {
		got, err := lister.Pods("b").Get("late")
		return err == nil && got.Spec.NodeName == "n1" && got.ResourceVersion == u.GetResourceVersion()
	})
	if _, err := st.Delete(ctx, resource.Pods, "b", "late", storeDelete()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the delete in the cache", func() bool {
		_, err := lister.Pods("b").Get("late")
		return err != nil && deleted.Load() == 1
	})
}

// TestInformerRelistsAfterCompaction stops the informer's watch by compacting past it while the
// informer is not running, then checks that a restarted reflector re-lists and converges.
func TestInformerRelistsAfterCompaction(t *testing.T) {
	st := storetest.NewStore(t)
	ctx := context.Background()
	if _, err := st.Create(ctx, resource.Pods, pod("a", "first")); err != nil {
		t.Fatal(err)
	}
	lw := &ListWatch{Store: st, Resource: resource.Pods}
	list, err := lw.ListWithContext(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	rv := list.(*corev1.PodList).ResourceVersion
	for i := range 5 {
		if _, err := st.Create(ctx, resource.Pods, pod("a", fmt.Sprintf("more%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	cur, _ := st.CurrentRevision(ctx)
	if _, err := st.Client().Compact(ctx, cur); err != nil {
		t.Fatal(err)
	}
	w, err := lw.WatchWithContext(ctx, metav1.ListOptions{ResourceVersion: rv})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	ev, ok := <-w.ResultChan()
	if !ok {
		t.Fatal("watch closed without an event")
	}
	status, isStatus := ev.Object.(*metav1.Status)
	if !isStatus || status.Code != 410 {
		t.Fatalf("watch from a compacted revision: got %v %#v, want an Error event with code 410", ev.Type, ev.Object)
	}

	// A fresh informer lists at the current revision and sees all six pods.
	f := NewFactory(st, 0)
	inf := f.For(resource.Pods)
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	f.Start(cctx)
	f.WaitForCacheSync(cctx)
	if n := len(inf.GetStore().List()); n != 6 {
		t.Fatalf("informer after compaction has %d pods, want 6", n)
	}
}
