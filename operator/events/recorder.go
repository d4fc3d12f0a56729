// Package events records v1.Events for the operator's decisions, the way client-go's event
// broadcaster and correlator do: asynchronously (recording never blocks a reconcile),
// aggregated (a repeated event bumps count and lastTimestamp of one Event instead of creating
// another), rate-limited per object, written in batches, and expired after a TTL.
//
//	Eventf ──> pending: one entry per (object, type, reason, message); a repeat of a pending
//	   │       entry only bumps its count. A new entry costs the object a token (burst 25, one
//	   │       more every 5 minutes, as client-go's spam filter): without one, a repeat of a
//	   │       stored event is carried to the next housekeeping tick, anything else is dropped.
//	   ▼
//	Run ──> store.Batch: creates for new events, count/lastTimestamp updates for stored ones
//	   └──> every HousekeepingInterval: carried repeats written, one log line counting the
//	        drops, events older than TTL deleted
package events

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/bosun-gitops/bosun/internal/resource"
	"github.com/bosun-gitops/bosun/operator/store"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/utils/clock"
	"k8s.io/utils/lru"
)

// Recorder records an event about an object. eventType is corev1.EventTypeNormal or
// corev1.EventTypeWarning; reason is a short UpperCamelCase word such as "ScalingReplicaSet".
type Recorder interface {
	Eventf(obj resource.Object, eventType, reason, format string, args ...any)
}

// Store is the subset of the object store the recorder writes through.
type Store interface {
	Batch(ctx context.Context, ops []store.Op) []store.OpResult
	List(ctx context.Context, res *resource.Resource, namespace string, opts store.ListOptions) (*store.ListResult, error)
}

const (
	// DefaultMaxPending bounds the distinct events waiting to be written: a burst of this many
	// (one per pod of a large scale-up, say) is kept whole; beyond it new events are dropped.
	DefaultMaxPending = 1 << 15
	// DefaultHousekeepingInterval is how often dropped events are logged (as one line with
	// counts), carried repeats written and expired events deleted.
	DefaultHousekeepingInterval = time.Minute
	// maxBatch is the number of events written in one store.Batch.
	maxBatch = 1024
	// spamBurst and spamQPS are client-go's per-object event rate limit (EventSourceObjectSpamFilter).
	spamBurst = 25
	spamQPS   = 1.0 / 300
	// cacheSize bounds the stored events remembered for aggregation and the per-object limiters.
	cacheSize = 1 << 14
)

// StoreRecorder writes events to the store. Run must be running for events to be written.
type StoreRecorder struct {
	store     Store
	component string
	log       *slog.Logger
	clock     clock.WithTicker
	// TTL is how long an event is kept after it last happened (Kubernetes: 1 h).
	TTL time.Duration
	// MaxPending and HousekeepingInterval: see DefaultMaxPending and DefaultHousekeepingInterval.
	MaxPending           int
	HousekeepingInterval time.Duration

	wake chan struct{} // a pending event waits for Run

	mu       sync.Mutex
	pending  map[string]*pendingEvent // by aggregation key
	order    []string                 // pending keys, oldest first
	stored   *lru.Cache               // aggregation key -> *storedEvent
	limiters *lru.Cache               // spam key -> *tokenBucket
	carried  map[string]bool          // keys of stored events with carried repeats
	drops    drops
	lastName int64 // the suffix of the last generated event name
}

// pendingEvent is an event waiting to be written and how often it happened meanwhile.
type pendingEvent struct {
	ev    *corev1.Event // the first occurrence, with the LastTimestamp of the latest
	count int32
}

// storedEvent is what an update of a written Event needs beyond the new occurrence (whose
// aggregation key names the same object, type, reason and message), and the repeats not written
// yet because its object ran out of tokens. It keeps these few fields rather than the Event:
// the recorder remembers up to cacheSize events.
type storedEvent struct {
	name, uid  string
	involvedRV string // InvolvedObject.ResourceVersion of the first occurrence
	count      int32
	first      metav1.Time
	// carriedEv is the latest held-back repeat, kept only while carried > 0.
	carriedEv                 *corev1.Event
	carried                   int32
	carriedFirst, carriedLast metav1.Time
}

func newStoredEvent(ev *corev1.Event) *storedEvent {
	s := &storedEvent{}
	s.update(ev)
	return s
}

// update takes the written state of ev.
func (s *storedEvent) update(ev *corev1.Event) {
	s.name, s.uid = ev.Name, string(ev.UID)
	s.involvedRV = ev.InvolvedObject.ResourceVersion
	s.count, s.first = ev.Count, ev.FirstTimestamp
}

// written is the Event as last written, rebuilt from like, an occurrence with the same
// aggregation key.
func (s *storedEvent) written(like *corev1.Event) *corev1.Event {
	ev := like.DeepCopy()
	ev.Name, ev.UID = s.name, types.UID(s.uid)
	ev.InvolvedObject.ResourceVersion = s.involvedRV
	ev.Count, ev.FirstTimestamp = s.count, s.first
	return ev
}

// drops counts events lost since the last drop report.
type drops struct {
	rateLimited, queueFull, writeFailed, forgotten int
	lastErr                                        error
}

func (d drops) total() int { return d.rateLimited + d.queueFull + d.writeFailed + d.forgotten }

var _ Recorder = (*StoreRecorder)(nil)

// NewRecorder returns a recorder that attributes its events to component (for example
// "deployment-controller").
func NewRecorder(st Store, component string, log *slog.Logger, clk clock.WithTicker) *StoreRecorder {
	if clk == nil {
		clk = clock.RealClock{}
	}
	r := &StoreRecorder{
		store: st, component: component, log: log.With("component", "events"), clock: clk,
		TTL: time.Hour, MaxPending: DefaultMaxPending, HousekeepingInterval: DefaultHousekeepingInterval,
		wake: make(chan struct{}, 1), pending: map[string]*pendingEvent{}, carried: map[string]bool{},
		limiters: lru.New(cacheSize),
	}
	// Called with r.mu held (from Add): carried repeats of a forgotten event are lost.
	r.stored = lru.NewWithEvictionFunc(cacheSize, func(key lru.Key, value any) {
		if s := value.(*storedEvent); s.carried > 0 {
			r.drops.forgotten += int(s.carried)
			delete(r.carried, key.(string))
		}
	})
	return r
}

// Eventf queues an event. It never blocks: a repeat of a queued event is folded into it, and
// when the object is over its rate or the queue is full the event is counted as dropped.
func (r *StoreRecorder) Eventf(obj resource.Object, eventType, reason, format string, args ...any) {
	ref := corev1.ObjectReference{
		Namespace:       obj.GetNamespace(),
		Name:            obj.GetName(),
		UID:             obj.GetUID(),
		ResourceVersion: obj.GetResourceVersion(),
	}
	if res, ok := resource.ForObject(obj); ok {
		ref.Kind, ref.APIVersion = res.Kind, res.APIVersion()
	}
	ns := obj.GetNamespace()
	if ns == "" {
		ns = metav1.NamespaceDefault
	}
	now := metav1.NewTime(r.clock.Now())
	ev := &corev1.Event{
		ObjectMeta:          metav1.ObjectMeta{Namespace: ns},
		InvolvedObject:      ref,
		Type:                eventType,
		Reason:              reason,
		Message:             fmt.Sprintf(format, args...),
		Source:              corev1.EventSource{Component: r.component},
		FirstTimestamp:      now,
		LastTimestamp:       now,
		Count:               1,
		ReportingController: "bosun.dev/" + r.component,
	}
	key := aggregationKey(ev)

	r.mu.Lock()
	defer r.mu.Unlock()
	if p := r.pending[key]; p != nil {
		p.count++
		p.ev.LastTimestamp = now
		return
	}
	if !r.allow(ev, now.Time) {
		if s, ok := r.stored.Get(key); ok {
			s := s.(*storedEvent)
			if s.carried == 0 {
				s.carriedFirst = now
			}
			s.carried++
			s.carriedLast = now
			s.carriedEv = ev
			r.carried[key] = true
		} else {
			r.drops.rateLimited++
		}
		return
	}
	if len(r.pending) >= r.MaxPending {
		r.drops.queueFull++
		return
	}
	r.pending[key] = &pendingEvent{ev: ev, count: 1}
	r.order = append(r.order, key)
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

func aggregationKey(ev *corev1.Event) string {
	o := ev.InvolvedObject
	return o.Kind + "/" + o.Namespace + "/" + o.Name + "/" + string(o.UID) + "/" + ev.Type + "/" + ev.Reason + "/" + ev.Message
}

// spamKey is what client-go rate-limits on: the source, the object and the event type.
func spamKey(ev *corev1.Event) string {
	o := ev.InvolvedObject
	return ev.Source.Component + "/" + o.Kind + "/" + o.Namespace + "/" + o.Name + "/" + string(o.UID) + "/" + ev.Type
}

// allow takes a token from the event's object; r.mu is held.
func (r *StoreRecorder) allow(ev *corev1.Event, now time.Time) bool {
	k := spamKey(ev)
	b, ok := r.limiters.Get(k)
	if !ok {
		b = &tokenBucket{tokens: spamBurst, last: now}
		r.limiters.Add(k, b)
	}
	return b.(*tokenBucket).take(now)
}

// tokenBucket holds up to spamBurst tokens and gains spamQPS per second.
type tokenBucket struct {
	tokens float64
	last   time.Time
}

func (b *tokenBucket) take(now time.Time) bool {
	if now.After(b.last) {
		b.tokens = min(spamBurst, b.tokens+now.Sub(b.last).Seconds()*spamQPS)
		b.last = now
	}
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// Run writes queued events, reports drops and deletes expired events until ctx ends.
func (r *StoreRecorder) Run(ctx context.Context) error {
	housekeeping := r.clock.NewTicker(r.HousekeepingInterval)
	defer housekeeping.Stop()
	defer r.reportDrops()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-r.wake:
			r.flush(ctx)
		case <-housekeeping.C():
			r.queueCarried()
			r.flush(ctx)
			r.reportDrops()
			r.expire(ctx)
		}
	}
}

// write is one event to write: a new one, or count more occurrences of prev.
type write struct {
	key   string
	ev    *corev1.Event
	count int32
	prev  *corev1.Event // last stored state; nil: create
}

// flush writes every pending event, in batches, oldest first.
func (r *StoreRecorder) flush(ctx context.Context) {
	for {
		ws := r.take(maxBatch)
		if len(ws) == 0 {
			return
		}
		r.writeBatch(ctx, ws)
	}
}

// take removes up to n pending events from the queue. Repeats of a taken event that come in
// while it is written queue a new entry, written in a later batch as an update of it.
func (r *StoreRecorder) take(n int) []write {
	r.mu.Lock()
	defer r.mu.Unlock()
	n = min(n, len(r.order))
	ws := make([]write, 0, n)
	for _, key := range r.order[:n] {
		p := r.pending[key]
		delete(r.pending, key)
		w := write{key: key, ev: p.ev, count: p.count}
		if s, ok := r.stored.Get(key); ok {
			s := s.(*storedEvent)
			w.prev = s.written(p.ev)
			w.count += s.carried // repeats the rate limit held back go along
			s.carried, s.carriedEv = 0, nil
			delete(r.carried, key)
		}
		ws = append(ws, w)
	}
	r.order = r.order[n:]
	if len(r.order) == 0 {
		r.order = nil // let the backing array of a burst go
	}
	return ws
}

// queueCarried queues the repeats that the rate limit held back, one write per event.
func (r *StoreRecorder) queueCarried() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for key := range r.carried {
		delete(r.carried, key)
		v, ok := r.stored.Get(key)
		if !ok || r.pending[key] != nil {
			continue // written with the pending entry, which take adds the carried count to
		}
		s := v.(*storedEvent)
		ev := s.written(s.carriedEv)
		ev.FirstTimestamp, ev.LastTimestamp = s.carriedFirst, s.carriedLast // used if it expired
		r.pending[key] = &pendingEvent{ev: ev, count: s.carried}
		s.carried, s.carriedEv = 0, nil
		r.order = append(r.order, key)
	}
}

// writeBatch writes ws with one store.Batch; events expired or deleted since they were last
// written, and generated names that collide, are created afresh in a second Batch.
func (r *StoreRecorder) writeBatch(ctx context.Context, ws []write) {
	for attempt := 0; len(ws) > 0; attempt++ {
		ops := make([]store.Op, len(ws))
		for i, w := range ws {
			ops[i] = r.op(w)
		}
		results := r.store.Batch(ctx, ops)
		var again []write
		for i, res := range results {
			w := ws[i]
			switch {
			case res.Err == nil:
				if ev, ok := res.Object.(*corev1.Event); ok {
					r.remember(w.key, ev)
				}
			case attempt == 0 && ops[i].Type == store.OpUpdate && apierrors.IsNotFound(res.Err):
				w.prev = nil
				again = append(again, w)
			case attempt == 0 && ops[i].Type == store.OpCreate && apierrors.IsAlreadyExists(res.Err):
				again = append(again, w)
			default:
				r.mu.Lock()
				r.drops.writeFailed += int(w.count)
				r.drops.lastErr = res.Err
				r.mu.Unlock()
			}
		}
		ws = again
	}
}

// op is the store write of w: an update of the stored event, or a create under a new name.
func (r *StoreRecorder) op(w write) store.Op {
	if w.prev != nil {
		upd := w.prev.DeepCopy()
		upd.Count += w.count
		upd.LastTimestamp = w.ev.LastTimestamp
		upd.ResourceVersion = "" // only this recorder writes its events
		return store.Op{Type: store.OpUpdate, Resource: resource.Events, Object: upd}
	}
	ev := w.ev.DeepCopy()
	ev.Count = w.count
	ev.Name = r.eventName(ev)
	ev.ResourceVersion = ""
	ev.UID = ""
	return store.Op{Type: store.OpCreate, Resource: resource.Events, Object: ev}
}

// eventName is Kubernetes' "<object>.<hex timestamp>", the suffix made unique per recorder so
// that two events about one object in the same clock tick do not collide.
func (r *StoreRecorder) eventName(ev *corev1.Event) string {
	r.mu.Lock()
	n := max(ev.LastTimestamp.UnixNano(), r.lastName+1)
	r.lastName = n
	r.mu.Unlock()
	suffix := "." + strconv.FormatInt(n, 16)
	base := ev.InvolvedObject.Name
	if limit := validation.DNS1123SubdomainMaxLength - len(suffix); len(base) > limit {
		base = base[:limit]
	}
	return base + suffix
}

func (r *StoreRecorder) remember(key string, ev *corev1.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if v, ok := r.stored.Get(key); ok {
		v.(*storedEvent).update(ev) // keep what was carried meanwhile
		return
	}
	r.stored.Add(key, newStoredEvent(ev))
}

// reportDrops logs the events dropped since the last report, as one line.
func (r *StoreRecorder) reportDrops() {
	r.mu.Lock()
	d := r.drops
	r.drops = drops{}
	r.mu.Unlock()
	if d.total() == 0 {
		return
	}
	args := []any{"dropped", d.total(), "rateLimited", d.rateLimited, "queueFull", d.queueFull,
		"writeFailed", d.writeFailed, "forgotten", d.forgotten, "interval", r.HousekeepingInterval}
	if d.lastErr != nil {
		args = append(args, "lastErr", d.lastErr)
	}
	r.log.Warn("events dropped: objects over their event rate, a burst beyond the queue, or failed writes", args...)
}

// expire deletes events whose last occurrence is older than TTL.
func (r *StoreRecorder) expire(ctx context.Context) {
	list, err := r.store.List(ctx, resource.Events, "", store.ListOptions{})
	if err != nil {
		r.log.Warn("listing events to expire", "err", err)
		return
	}
	cutoff := r.clock.Now().Add(-r.TTL)
	var ops []store.Op
	for _, o := range list.Items {
		ev := o.(*corev1.Event)
		last := ev.LastTimestamp.Time
		if last.IsZero() {
			last = ev.CreationTimestamp.Time
		}
		if last.Before(cutoff) {
			// The resourceVersion precondition spares an event that recurred meanwhile.
			ops = append(ops, store.Op{Type: store.OpDelete, Resource: resource.Events, Object: ev})
		}
	}
	var errs []error
	for _, res := range r.store.Batch(ctx, ops) {
		if res.Err != nil && !apierrors.IsNotFound(res.Err) && !apierrors.IsConflict(res.Err) {
			errs = append(errs, res.Err)
		}
	}
	if len(errs) > 0 {
		r.log.Warn("deleting expired events", "failed", len(errs), "of", len(ops), "err", errors.Join(errs...))
	}
}

// FakeRecorder collects events in memory, for unit tests of controllers.
type FakeRecorder struct {
	mu     sync.Mutex
	Events []string // "Type Reason Message"
}

var _ Recorder = (*FakeRecorder)(nil)

// Eventf records "Type Reason Message".
func (f *FakeRecorder) Eventf(_ resource.Object, eventType, reason, format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.Events = append(f.Events, eventType+" "+reason+" "+fmt.Sprintf(format, args...))
}

// List returns a copy of the recorded events.
func (f *FakeRecorder) List() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.Events...)
}
