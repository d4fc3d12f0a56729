package apiserver_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/bosun-gitops/bosun/internal/resource"
	"github.com/bosun-gitops/bosun/operator/store"
	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"
)

// nextEvent waits for one watch event; the timeout only guards against a hang.
func nextEvent(t *testing.T, w watch.Interface) watch.Event {
	t.Helper()
	select {
	case ev, ok := <-w.ResultChan():
		if !ok {
			t.Fatal("watch closed")
		}
		return ev
	case <-time.After(30 * time.Second):
		t.Fatal("no watch event within 30s")
	}
	return watch.Event{}
}

func TestWatchSeesChangesInOrder(t *testing.T) {
	ts := startServer(t)
	ctx := testCtx(t)
	ts.createNamespace(t, "a")
	pods := ts.client.CoreV1().Pods("a")
	l, err := pods.List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	w, err := pods.Watch(ctx, metav1.ListOptions{ResourceVersion: l.ResourceVersion, LabelSelector: "app=web"})
	if err != nil {
		t.Fatalf("watch: %v", err)
	}
	defer w.Stop()
	p, err := pods.Create(ctx, testPod("web", "", map[string]string{"app": "web"}), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pods.Create(ctx, testPod("db", "", map[string]string{"app": "db"}), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	p.Spec.NodeName = "node-1"
	if _, err := pods.Update(ctx, p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	// Forced (grace period 0): no node is there to stop the bound pod.
	if err := pods.Delete(ctx, "web", metav1.DeleteOptions{GracePeriodSeconds: new(int64(0))}); err != nil {
		t.Fatal(err)
	}
	var got []string
	var lastRV string
	for range 3 {
		ev := nextEvent(t, w)
		pod, ok := ev.Object.(*corev1.Pod)
		if !ok {
			t.Fatalf("event object is %T: %v", ev.Object, ev.Object)
		}
		if pod.ResourceVersion == "" || pod.ResourceVersion == lastRV {
			t.Errorf("event %s has resourceVersion %q after %q", ev.Type, pod.ResourceVersion, lastRV)
		}
		lastRV = pod.ResourceVersion
		got = append(got, fmt.Sprintf("%s %s %s", ev.Type, pod.Name, pod.Spec.NodeName))
	}
	want := []string{"ADDED web ", "MODIFIED web node-1", "DELETED web node-1"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}

	// The legacy /watch/ path for one object, from the start (synthetic ADDED).
	res := ts.client.CoreV1().RESTClient().Get().AbsPath("/api/v1/watch/namespaces/a/pods/db")
	lw, err := res.Watch(ctx)
	if err != nil {
		t.Fatalf("legacy watch: %v", err)
	}
	defer lw.Stop()
	if ev := nextEvent(t, lw); ev.Type != watch.Added || ev.Object.(*corev1.Pod).Name != "db" {
		t.Errorf("legacy watch first event = %s %v", ev.Type, ev.Object)
	}
}

func TestWatchAfterCompactionIsGone(t *testing.T) {
	ts := startServer(t)
	ctx := testCtx(t)
	ts.createNamespace(t, "a")
	pods := ts.client.CoreV1().Pods("a")
	l, err := pods.List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if _, err := pods.Create(ctx, testPod(fmt.Sprintf("p%d", i), "", nil), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := ts.store.Compact(ctx, 0, 0); err != nil {
		t.Fatalf("compacting: %v", err)
	}
	w, err := pods.Watch(ctx, metav1.ListOptions{ResourceVersion: l.ResourceVersion})
	if err != nil {
		t.Fatalf("watch: %v", err)
	}
	defer w.Stop()
	ev := nextEvent(t, w)
	if ev.Type != watch.Error {
		t.Fatalf("first event = %s, want ERROR", ev.Type)
	}
	if err := apierrors.FromObject(ev.Object); !apierrors.IsResourceExpired(err) && !apierrors.IsGone(err) {
		t.Errorf("error event = %v, want 410 Gone", err)
	}
}

// eventLog collects informer notifications.
type eventLog struct {
	mu   sync.Mutex
	seen map[string]bool
}

func (e *eventLog) add(what string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.seen[what] = true
}

func (e *eventLog) has(what string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.seen[what]
}

func (e *eventLog) handler() cache.ResourceEventHandlerFuncs {
	name := func(o any) string {
		if d, ok := o.(cache.DeletedFinalStateUnknown); ok {
			o = d.Obj
		}
		return o.(metav1.Object).GetName()
	}
	return cache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { e.add("add " + name(o)) },
		UpdateFunc: func(_, o any) { e.add("update " + name(o)) },
		DeleteFunc: func(o any) { e.add("delete " + name(o)) },
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second) // hang guard only
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestSharedInformerSyncsAndFollows(t *testing.T) {
	ts := startServer(t)
	ctx := testCtx(t)
	ts.createNamespace(t, "a")
	pods := ts.client.CoreV1().Pods("a")
	if _, err := pods.Create(ctx, testPod("before", "", nil), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	factory := informers.NewSharedInformerFactory(ts.client, 0)
	inf := factory.Core().V1().Pods().Informer()
	log := &eventLog{seen: map[string]bool{}}
	if _, err := inf.AddEventHandler(log.handler()); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	defer func() { close(stop); factory.Shutdown() }()
	factory.Start(stop)
	syncCtx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if !cache.WaitForCacheSync(syncCtx.Done(), inf.HasSynced) {
		t.Fatal("informer did not sync")
	}
	if !log.has("add before") {
		t.Error("informer did not report the existing pod")
	}
	p, err := pods.Create(ctx, testPod("after", "", nil), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p.Labels = map[string]string{"x": "y"}
	if _, err := pods.Update(ctx, p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := pods.Delete(ctx, "before", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "informer events", func() bool {
		return log.has("add after") && log.has("update after") && log.has("delete before")
	})
	lister := factory.Core().V1().Pods().Lister()
	waitFor(t, "lister to show the change", func() bool {
		got, err := lister.Pods("a").Get("after")
		return err == nil && got.Labels["x"] == "y"
	})
}

// compactingListWatch is a list-then-watch source (no watch-list) whose first watch starts
// from a revision that has just been compacted, as after a long disconnection.
type compactingListWatch struct {
	cache.ListerWatcher
	once    sync.Once
	compact func()
}

func (c *compactingListWatch) Watch(opts metav1.ListOptions) (watch.Interface, error) {
	c.once.Do(c.compact)
	return c.ListerWatcher.Watch(opts)
}

// IsWatchListSemanticsUnSupported makes the reflector list then watch.
func (c *compactingListWatch) IsWatchListSemanticsUnSupported() bool { return true }

func TestInformerRecoversFromCompaction(t *testing.T) {
	ts := startServer(t)
	ctx := testCtx(t)
	ts.createNamespace(t, "a")
	pods := ts.client.CoreV1().Pods("a")
	if _, err := pods.Create(ctx, testPod("old", "", nil), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	lw := &compactingListWatch{
		ListerWatcher: cache.NewListWatchFromClient(ts.client.CoreV1().RESTClient(), "pods", "a", fields.Everything()),
		compact: func() {
			// Changes the watch would have delivered, then history removed.
			if _, err := ts.store.Create(ctx, resource.Pods, withNS(testPod("missed", "", nil), "a")); err != nil {
				t.Error(err)
			}
			if _, err := ts.store.Compact(ctx, 0, 0); err != nil {
				t.Error(err)
			}
		},
	}
	if _, err := lw.List(metav1.ListOptions{ResourceVersion: "0"}); err != nil {
		t.Fatalf("list through the ListWatch: %v", err)
	}
	log := &eventLog{seen: map[string]bool{}}
	inf := cache.NewSharedIndexInformer(lw, &corev1.Pod{}, 0, cache.Indexers{})
	if _, err := inf.AddEventHandler(log.handler()); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	defer close(stop)
	go inf.Run(stop)
	waitFor(t, "informer to re-list after 410", func() bool { return log.has("add old") && log.has("add missed") })
	if _, err := pods.Create(ctx, testPod("later", "", nil), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "informer to follow after recovery", func() bool { return log.has("add later") })
}

func withNS(p *corev1.Pod, ns string) *corev1.Pod {
	p.Namespace = ns
	return p
}

var (
	_ runtime.Object = (*corev1.Pod)(nil)
	_                = store.ListOptions{}
)

func TestWatchTimeoutSecondsEndsTheStream(t *testing.T) {
	ts := startServer(t)
	ctx := testCtx(t)
	ts.createNamespace(t, "a")
	w, err := ts.client.CoreV1().Pods("a").Watch(ctx, metav1.ListOptions{TimeoutSeconds: ptrInt64(1)})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	select {
	case ev, ok := <-w.ResultChan():
		if ok {
			t.Errorf("unexpected event %s", ev.Type)
		}
	case <-time.After(60 * time.Second): // hang guard only
		t.Fatal("watch with timeoutSeconds=1 did not end")
	}
}

func ptrInt64(v int64) *int64 { return &v }
