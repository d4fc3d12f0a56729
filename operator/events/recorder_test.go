package events

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/bosun-gitops/bosun/internal/resource"
	"github.com/bosun-gitops/bosun/operator/store"
	"github.com/bosun-gitops/bosun/operator/store/storetest"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	clocktesting "k8s.io/utils/clock/testing"
)

// logRecords is a slog handler that keeps every record, to count what the recorder logs.
type logRecords struct {
	mu      sync.Mutex
	records []slog.Record
}

func (l *logRecords) Enabled(context.Context, slog.Level) bool { return true }
func (l *logRecords) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.records = append(l.records, r.Clone())
	return nil
}
func (l *logRecords) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logRecords) WithGroup(string) slog.Handler      { return l }

func (l *logRecords) all() []slog.Record {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]slog.Record(nil), l.records...)
}

// attr returns the value of key in r, or nil.
func attr(r slog.Record, key string) any {
	var v any
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == key {
			v = a.Value.Any()
			return false
		}
		return true
	})
	return v
}

func storedEvents(t *testing.T, st *store.Store) []*corev1.Event {
	t.Helper()
	list, err := st.List(context.Background(), resource.Events, "", store.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	out := make([]*corev1.Event, len(list.Items))
	for i, o := range list.Items {
		out[i] = o.(*corev1.Event)
	}
	return out
}

func testPod(i int) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: fmt.Sprintf("web-%d", i), UID: types.UID(fmt.Sprintf("uid-%d", i))}}
}

func runRecorder(t *testing.T, r *StoreRecorder) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
}

// eventually polls cond; the timeout only guards against a hang.
func eventually(t *testing.T, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestRecorderAggregatesAndExpires(t *testing.T) {
	st := storetest.NewStore(t)
	clk := clocktesting.NewFakeClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	r := NewRecorder(st, "test-controller", slog.Default(), clk)
	ctx := context.Background()
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web-1", UID: "u1"}}
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1", UID: "u2"}}

	r.Eventf(pod, corev1.EventTypeWarning, "BackOff", "restarting %s", "c")
	r.flush(ctx)
	r.Eventf(pod, corev1.EventTypeWarning, "BackOff", "restarting %s", "c")
	r.Eventf(pod, corev1.EventTypeWarning, "Failed", "pulling: %s", "denied") // same object and clock tick
	r.Eventf(node, corev1.EventTypeNormal, "NodeNotReady", "lease expired")
	r.flush(ctx)
	list := storedEvents(t, st)
	if len(list) != 3 {
		t.Fatalf("%d events stored, want 3 (the repeat aggregated)", len(list))
	}
	for _, ev := range list {
		switch ev.Reason {
		case "BackOff":
			if ev.Count != 2 || ev.Namespace != "shop" || ev.InvolvedObject.Kind != "Pod" || ev.Source.Component != "test-controller" {
				t.Errorf("aggregated event = count %d ns %s kind %s source %s", ev.Count, ev.Namespace, ev.InvolvedObject.Kind, ev.Source.Component)
			}
		case "NodeNotReady":
			if ev.Namespace != "default" || ev.InvolvedObject.Kind != "Node" {
				t.Errorf("cluster-scoped object's event in ns %q kind %q, want default/Node", ev.Namespace, ev.InvolvedObject.Kind)
			}
		}
	}

	// An event deleted behind the recorder's back is created afresh when it recurs.
	for _, ev := range list {
		if ev.Reason == "NodeNotReady" {
			st.Delete(ctx, resource.Events, ev.Namespace, ev.Name, store.DeleteOptions{})
		}
	}
	r.Eventf(node, corev1.EventTypeNormal, "NodeNotReady", "lease expired")
	r.flush(ctx)
	if list = storedEvents(t, st); len(list) != 3 {
		t.Fatalf("%d events after a deleted one recurred, want 3", len(list))
	}

	clk.Step(2 * time.Hour)
	r.expire(ctx)
	if list = storedEvents(t, st); len(list) != 0 {
		t.Fatalf("%d events left after the TTL, want 0", len(list))
	}
}

// TestRecorderBurst records 20 000 events about 10 000 pods at once, as a large scale-up does
// (one Scheduled and one Started each), while Run writes them: every one is stored and nothing
// is logged.
func TestRecorderBurst(t *testing.T) {
	st := storetest.NewStore(t)
	logs := &logRecords{}
	r := NewRecorder(st, "scheduler", slog.New(logs), nil)
	runRecorder(t, r)
	const pods = 10000
	start := time.Now()
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < pods; i += 4 {
				p := testPod(i)
				r.Eventf(p, corev1.EventTypeNormal, "Scheduled", "Successfully assigned shop/%s to node-%d", p.Name, i%5000)
				r.Eventf(p, corev1.EventTypeNormal, "Started", "Started container web")
			}
		}()
	}
	wg.Wait()
	recorded := time.Since(start)
	eventually(t, "every event stored", func() error {
		if n := len(storedEvents(t, st)); n != 2*pods {
			return fmt.Errorf("%d events stored, want %d", n, 2*pods)
		}
		return nil
	})
	written := time.Since(start)
	t.Logf("recorded %d events in %v (%.0f/s), all stored after %v (%.0f/s)", 2*pods, recorded,
		2*pods/recorded.Seconds(), written, 2*pods/written.Seconds())
	seen := map[string]bool{}
	for _, ev := range storedEvents(t, st) {
		k := ev.InvolvedObject.Name + " " + ev.Reason
		if seen[k] || ev.Count != 1 {
			t.Errorf("event %s: count %d, seen before %v", k, ev.Count, seen[k])
		}
		seen[k] = true
	}
	r.reportDrops()
	if recs := logs.all(); len(recs) != 0 {
		t.Errorf("%d log lines for a burst the recorder kept whole, want none; first: %s", len(recs), recs[0].Message)
	}
}

// TestRecorderDropsAreCountedNotLogged: beyond MaxPending, events are dropped and reported as one
// line with the count.
func TestRecorderDropsAreCountedNotLogged(t *testing.T) {
	st := storetest.NewStore(t)
	logs := &logRecords{}
	r := NewRecorder(st, "scheduler", slog.New(logs), nil)
	r.MaxPending = 100
	for i := range 1000 {
		r.Eventf(testPod(i), corev1.EventTypeNormal, "Scheduled", "assigned")
	}
	r.flush(context.Background())
	if n := len(storedEvents(t, st)); n != 100 {
		t.Errorf("%d events stored, want MaxPending (100)", n)
	}
	if recs := logs.all(); len(recs) != 0 {
		t.Fatalf("%d log lines before the drop report, want none; first: %s", len(recs), recs[0].Message)
	}
	r.reportDrops()
	r.reportDrops() // nothing new: no second line
	recs := logs.all()
	if len(recs) != 1 {
		t.Fatalf("%d log lines after two reports, want 1", len(recs))
	}
	if got := attr(recs[0], "queueFull"); got != int64(900) {
		t.Errorf("reported queueFull = %v, want 900 (%s)", got, recs[0].Message)
	}
}

// TestRecorderRateLimitsPerObject: an object emitting many distinct events gets client-go's burst
// of 25; other objects are not affected, and the drop is reported once.
func TestRecorderRateLimitsPerObject(t *testing.T) {
	st := storetest.NewStore(t)
	logs := &logRecords{}
	clk := clocktesting.NewFakeClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	r := NewRecorder(st, "scheduler", slog.New(logs), clk)
	noisy, quiet := testPod(1), testPod(2)
	for i := range 40 {
		r.Eventf(noisy, corev1.EventTypeWarning, "FailedScheduling", "attempt %d: 0/3 nodes are available", i)
	}
	r.Eventf(quiet, corev1.EventTypeWarning, "FailedScheduling", "0/3 nodes are available")
	r.flush(context.Background())
	byObject := map[string]int{}
	for _, ev := range storedEvents(t, st) {
		byObject[ev.InvolvedObject.Name]++
	}
	if byObject["web-1"] != spamBurst || byObject["web-2"] != 1 {
		t.Errorf("events stored per object = %v, want web-1: %d (the burst), web-2: 1", byObject, spamBurst)
	}
	r.reportDrops()
	recs := logs.all()
	if len(recs) != 1 || attr(recs[0], "rateLimited") != int64(40-spamBurst) {
		t.Fatalf("log lines %d, want one reporting rateLimited=%d", len(recs), 40-spamBurst)
	}
	// Five minutes later the object has one token more.
	clk.Step(301 * time.Second)
	r.Eventf(noisy, corev1.EventTypeWarning, "FailedScheduling", "later")
	r.Eventf(noisy, corev1.EventTypeWarning, "FailedScheduling", "later still")
	r.flush(context.Background())
	later := 0
	for _, ev := range storedEvents(t, st) {
		if ev.InvolvedObject.Name == "web-1" && (ev.Message == "later" || ev.Message == "later still") {
			later++
		}
	}
	if later != 1 {
		t.Errorf("%d events stored 5 minutes later, want 1 (one token refilled)", later)
	}
}

// TestRecorderRepeatedEventCounts records one event N times while Run writes: one Event with
// count N, even when the repeats outlast the object's rate (they are carried to the next
// housekeeping tick rather than dropped).
func TestRecorderRepeatedEventCounts(t *testing.T) {
	st := storetest.NewStore(t)
	logs := &logRecords{}
	clk := clocktesting.NewFakeClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	r := NewRecorder(st, "kubelet", slog.New(logs), clk)
	runRecorder(t, r)
	for !clk.HasWaiters() { // Run's tickers exist
		time.Sleep(time.Millisecond)
	}
	const n = 3000
	pod := testPod(7)
	for i := range n {
		r.Eventf(pod, corev1.EventTypeWarning, "BackOff", "Back-off restarting failed container")
		if i%100 == 0 {
			time.Sleep(2 * time.Millisecond) // let Run write in between, as over a real crash loop
		}
	}
	clk.Step(r.HousekeepingInterval) // housekeeping: carried repeats are written
	eventually(t, "one event counting every repeat", func() error {
		list := storedEvents(t, st)
		if len(list) != 1 || list[0].Count != n {
			counts := []int32{}
			for _, ev := range list {
				counts = append(counts, ev.Count)
			}
			return fmt.Errorf("events stored with counts %v, want one with %d", counts, n)
		}
		return nil
	})
	for _, rec := range logs.all() {
		t.Errorf("unexpected log line: %s", rec.Message)
	}
}

// TestRecorderUpdateKeepsFirstOccurrence: a repeat updates the stored Event in place — same
// name and uid, firstTimestamp and the involved object's resourceVersion of the first
// occurrence, lastTimestamp and count of the latest — including repeats held back by the rate
// limit and written at housekeeping. The recorder rebuilds these from the few fields it keeps.
func TestRecorderUpdateKeepsFirstOccurrence(t *testing.T) {
	st := storetest.NewStore(t)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clk := clocktesting.NewFakeClock(t0)
	r := NewRecorder(st, "scheduler", slog.Default(), clk)
	ctx := context.Background()
	pod := testPod(3)
	pod.ResourceVersion = "10"
	r.Eventf(pod, corev1.EventTypeWarning, "FailedScheduling", "0/0 nodes are available")
	r.flush(ctx)
	first := storedEvents(t, st)
	if len(first) != 1 {
		t.Fatalf("%d events stored, want 1", len(first))
	}

	check := func(when string, count int32, last time.Time) {
		t.Helper()
		var list []*corev1.Event
		for _, ev := range storedEvents(t, st) {
			if ev.Message == first[0].Message {
				list = append(list, ev)
			}
		}
		if len(list) != 1 {
			t.Fatalf("%s: %d events with message %q stored, want 1", when, len(list), first[0].Message)
		}
		got, want := list[0], first[0]
		if got.Name != want.Name || got.UID != want.UID || !got.FirstTimestamp.Equal(&want.FirstTimestamp) ||
			got.InvolvedObject.ResourceVersion != "10" || got.Count != count || !got.LastTimestamp.Time.Equal(last) ||
			got.Message != want.Message || got.Source != want.Source || got.ReportingController != want.ReportingController {
			t.Errorf("%s: event = name %s uid %s first %v involvedRV %s count %d last %v; want name %s uid %s first %v involvedRV 10 count %d last %v",
				when, got.Name, got.UID, got.FirstTimestamp, got.InvolvedObject.ResourceVersion, got.Count, got.LastTimestamp,
				want.Name, want.UID, want.FirstTimestamp, count, last)
		}
	}
	clk.Step(time.Minute)
	pod.ResourceVersion = "11"
	r.Eventf(pod, corev1.EventTypeWarning, "FailedScheduling", "0/0 nodes are available")
	r.flush(ctx)
	check("after a repeat", 2, clk.Now())

	// Spend the object's tokens on other events, so that the next repeats are carried.
	for i := range spamBurst {
		r.Eventf(pod, corev1.EventTypeWarning, "FailedScheduling", "other %d", i)
	}
	r.flush(ctx)
	clk.Step(time.Minute)
	for range 3 {
		r.Eventf(pod, corev1.EventTypeWarning, "FailedScheduling", "0/0 nodes are available")
	}
	r.flush(ctx)
	check("with the repeats carried", 2, t0.Add(time.Minute))
	r.queueCarried()
	r.flush(ctx)
	check("after housekeeping wrote the carried repeats", 5, clk.Now())
}
