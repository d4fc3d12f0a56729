package store_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/bosun-gitops/bosun/internal/resource"
	"github.com/bosun-gitops/bosun/operator/store"
	"github.com/bosun-gitops/bosun/operator/store/storetest"
	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/watch"
)

// next reads one event; a generous deadline only guards against a hung test.
func next(t *testing.T, ch <-chan store.Event) store.Event {
	t.Helper()
	select {
	case ev, ok := <-ch:
		if !ok {
			t.Fatal("watch channel closed")
		}
		return ev
	case <-time.After(30 * time.Second):
		t.Fatal("no watch event within 30s")
	}
	return store.Event{}
}

// describe renders an event as "TYPE ns/name rv" for comparisons.
func describe(ev store.Event) string {
	if ev.Type == watch.Error {
		return fmt.Sprintf("ERROR %v", ev.Err)
	}
	return fmt.Sprintf("%s %s/%s %s", ev.Type, ev.Object.GetNamespace(), ev.Object.GetName(), ev.Object.GetResourceVersion())
}

func expect(t *testing.T, ch <-chan store.Event, want ...string) {
	t.Helper()
	var got []string
	for range want {
		got = append(got, describe(next(t, ch)))
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
}

func ev(typ watch.EventType, ns, name string, rv string) string {
	return fmt.Sprintf("%s %s/%s %s", typ, ns, name, rv)
}

func TestWatch(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := storetest.NewStore(t)
	p1, err := s.Create(ctx, resource.Pods, pod("a", "p1", ""))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Create(ctx, resource.Pods, pod("b", "other-ns", "")); err != nil {
		t.Fatal(err)
	}

	// ResourceVersion 0: current state first, then changes, in order.
	all, err := s.Watch(ctx, resource.Pods, "a", store.WatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	expect(t, all, ev(watch.Added, "a", "p1", p1.GetResourceVersion()))

	p2, _ := s.Create(ctx, resource.Pods, pod("a", "p2", ""))
	mod := p1.DeepCopyObject().(*corev1.Pod)
	mod.Spec.NodeName = "n1"
	p1b, err := s.Update(ctx, resource.Pods, mod)
	if err != nil {
		t.Fatal(err)
	}
	del, err := s.Delete(ctx, resource.Pods, "a", "p2", store.DeleteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	expect(t, all,
		ev(watch.Added, "a", "p2", p2.GetResourceVersion()),
		ev(watch.Modified, "a", "p1", p1b.GetResourceVersion()),
		ev(watch.Deleted, "a", "p2", del.GetResourceVersion()),
	)

	// Resume from a revision: only later events, exclusive.
	resumed, err := s.Watch(ctx, resource.Pods, "", store.WatchOptions{ResourceVersion: rvOf(t, p2)})
	if err != nil {
		t.Fatal(err)
	}
	expect(t, resumed,
		ev(watch.Modified, "a", "p1", p1b.GetResourceVersion()),
		ev(watch.Deleted, "a", "p2", del.GetResourceVersion()),
	)

	// Cancelling the context closes the channel.
	wctx, wcancel := context.WithCancel(ctx)
	short, err := s.Watch(wctx, resource.Pods, "", store.WatchOptions{ResourceVersion: rvOf(t, del)})
	if err != nil {
		t.Fatal(err)
	}
	wcancel()
	select {
	case e, ok := <-short:
		if ok {
			t.Errorf("event after cancel: %s", describe(e))
		}
	case <-time.After(30 * time.Second):
		t.Fatal("channel not closed after cancel")
	}
}

func TestWatchSelectorTransitions(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := storetest.NewStore(t)
	rv, _ := s.CurrentRevision(ctx)
	byLabel, err := s.Watch(ctx, resource.Pods, "", store.WatchOptions{ResourceVersion: rv, LabelSelector: labels.SelectorFromSet(labels.Set{"tier": "front"})})
	if err != nil {
		t.Fatal(err)
	}
	byNode, err := s.Watch(ctx, resource.Pods, "", store.WatchOptions{ResourceVersion: rv, FieldSelector: fields.OneTermEqualSelector("spec.nodeName", "n1")})
	if err != nil {
		t.Fatal(err)
	}
	p, _ := s.Create(ctx, resource.Pods, pod("a", "p", "")) // matches neither
	step := func(f func(p *corev1.Pod)) string {
		cur, err := s.Get(ctx, resource.Pods, "a", "p")
		if err != nil {
			t.Fatal(err)
		}
		c := cur.DeepCopyObject().(*corev1.Pod)
		f(c)
		out, err := s.Update(ctx, resource.Pods, c)
		if err != nil {
			t.Fatal(err)
		}
		return out.GetResourceVersion()
	}
	_ = p
	rvIn := step(func(p *corev1.Pod) { p.Labels["tier"] = "front" })                   // label: ADDED
	rvMod := step(func(p *corev1.Pod) { p.Annotations = map[string]string{"x": "1"} }) // label: MODIFIED
	rvNode := step(func(p *corev1.Pod) { p.Spec.NodeName = "n1" })                     // label: MODIFIED, node: ADDED
	rvOut := step(func(p *corev1.Pod) { delete(p.Labels, "tier") })                    // label: DELETED, node: MODIFIED
	// Forced (grace period 0): no node is there to stop the bound pod.
	d, err := s.Delete(ctx, resource.Pods, "a", "p", store.DeleteOptions{GracePeriodSeconds: new(int64(0))})
	if err != nil {
		t.Fatal(err)
	}
	expect(t, byLabel,
		ev(watch.Added, "a", "p", rvIn),
		ev(watch.Modified, "a", "p", rvMod),
		ev(watch.Modified, "a", "p", rvNode),
		ev(watch.Deleted, "a", "p", rvOut),
	)
	expect(t, byNode,
		ev(watch.Added, "a", "p", rvNode),
		ev(watch.Modified, "a", "p", rvOut),
		ev(watch.Deleted, "a", "p", d.GetResourceVersion()),
	)
	// The label watch must not see the final delete (the object no longer matched).
	select {
	case e := <-byLabel:
		t.Errorf("unexpected event: %s", describe(e))
	case <-time.After(200 * time.Millisecond):
	}
}

func TestWatchCompacted(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := storetest.NewStore(t)
	first, _ := s.Create(ctx, resource.Pods, pod("a", "p0", ""))
	for i := 1; i < 5; i++ {
		if _, err := s.Create(ctx, resource.Pods, pod("a", fmt.Sprintf("p%d", i), "")); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Compact(ctx, 1, 0); err != nil {
		t.Fatal(err)
	}
	ch, err := s.Watch(ctx, resource.Pods, "", store.WatchOptions{ResourceVersion: rvOf(t, first)})
	if err != nil {
		t.Fatal(err)
	}
	e := next(t, ch)
	if e.Type != watch.Error || !apierrors.IsResourceExpired(e.Err) || !apierrors.IsGone(e.Err) && !apierrors.IsResourceExpired(e.Err) {
		t.Fatalf("event = %s, want a 410 ResourceExpired error", describe(e))
	}
	if status, ok := e.Err.(apierrors.APIStatus); !ok || status.Status().Code != 410 {
		t.Errorf("error %v is not a 410 status", e.Err)
	}
	if _, ok := <-ch; ok {
		t.Errorf("channel still open after the error")
	}
}

func TestWatchBookmarks(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := storetest.NewStoreWithOptions(t, store.Options{BookmarkInterval: 100 * time.Millisecond})
	created, _ := s.Create(ctx, resource.Pods, pod("a", "p", ""))
	ch, err := s.Watch(ctx, resource.Pods, "", store.WatchOptions{ResourceVersion: rvOf(t, created), Bookmarks: true})
	if err != nil {
		t.Fatal(err)
	}
	// etcd reports progress only once the revision reaches the watch's start: write elsewhere.
	cm, err := s.Create(ctx, resource.ConfigMaps, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "a", Name: "c"}})
	if err != nil {
		t.Fatal(err)
	}
	e := next(t, ch)
	if e.Type != watch.Bookmark || rvOf(t, e.Object) < rvOf(t, cm) {
		t.Fatalf("event = %s, want a bookmark at >= %s", describe(e), cm.GetResourceVersion())
	}
}

func TestWatchSlowConsumer(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := storetest.NewStoreWithOptions(t, store.Options{WatchBuffer: 2, WatchSendTimeout: 200 * time.Millisecond})
	rv, _ := s.CurrentRevision(ctx)
	ch, err := s.Watch(ctx, resource.Pods, "", store.WatchOptions{ResourceVersion: rv})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 6 {
		if _, err := s.Create(ctx, resource.Pods, pod("a", fmt.Sprintf("p%d", i), "")); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(time.Second) // do not read: let the watch give up on us
	var types []watch.EventType
	for e := range ch {
		types = append(types, e.Type)
		if e.Type == watch.Error && !apierrors.IsServiceUnavailable(e.Err) {
			t.Errorf("error = %v, want ServiceUnavailable", e.Err)
		}
	}
	want := []watch.EventType{watch.Added, watch.Added, watch.Error}
	if diff := cmp.Diff(want, types); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
}

// TestWatchesShareDecodedObjects checks that the watches of one resource receive the same object
// for the same event, whatever their namespace or selectors, and that the store's metrics count
// each decode and each shared one.
func TestWatchesShareDecodedObjects(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := storetest.NewStore(t)
	anchor, err := s.Create(ctx, resource.Pods, pod("a", "anchor", ""))
	if err != nil {
		t.Fatal(err)
	}
	from := store.WatchOptions{ResourceVersion: rvOf(t, anchor)}
	selected := from
	selected.LabelSelector = labels.SelectorFromSet(labels.Set{"app": "web"})
	var watches []<-chan store.Event
	for _, w := range []struct {
		ns   string
		opts store.WatchOptions
	}{{"", from}, {"a", from}, {"a", selected}} {
		ch, err := s.Watch(ctx, resource.Pods, w.ns, w.opts)
		if err != nil {
			t.Fatal(err)
		}
		watches = append(watches, ch)
	}

	created, err := s.Create(ctx, resource.Pods, pod("a", "p", ""))
	if err != nil {
		t.Fatal(err)
	}
	mod := created.DeepCopyObject().(*corev1.Pod)
	mod.Spec.NodeName = "n1"
	updated, err := s.Update(ctx, resource.Pods, mod)
	if err != nil {
		t.Fatal(err)
	}
	// Forced (grace period 0): no node is there to stop the bound pod.
	deleted, err := s.Delete(ctx, resource.Pods, "a", "p", store.DeleteOptions{GracePeriodSeconds: new(int64(0))})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		ev(watch.Added, "a", "p", created.GetResourceVersion()),
		ev(watch.Modified, "a", "p", updated.GetResourceVersion()),
		ev(watch.Deleted, "a", "p", deleted.GetResourceVersion()),
	} {
		var first store.Event
		for i, ch := range watches {
			e := next(t, ch)
			if got := describe(e); got != want {
				t.Fatalf("watch %d: got %s, want %s", i, got, want)
			}
			if i == 0 {
				first = e
			} else if e.Object != first.Object {
				t.Errorf("watch %d got its own copy of %s: the event's object was decoded again", i, want)
			}
		}
	}

	// Decodes asked for: three per event, plus the update's previous state for the watch with
	// a selector (it must know whether the pod matched before).
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(s.Collectors()...)
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	counts := map[string]float64{}
	for _, f := range families {
		counts[f.GetName()] = f.GetMetric()[0].GetCounter().GetValue()
	}
	decoded, shared := counts["bosun_store_watch_decodes_total"], counts["bosun_store_watch_shared_decodes_total"]
	if decoded+shared != 10 || shared < 1 {
		t.Errorf("metrics %v; want 10 decodes asked for in all, some shared", counts)
	}
}
