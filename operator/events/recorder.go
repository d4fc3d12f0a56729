// Package events records v1.Events for the operator's decisions, the way Kubernetes' event
// recorder does: asynchronously (recording never blocks a reconcile), aggregated (a repeated
// event bumps count and lastTimestamp instead of creating a new object), and expired after a TTL.
package events

import (
	"context"
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
	"k8s.io/utils/clock"
)

// Recorder records an event about an object. eventType is corev1.EventTypeNormal or
// corev1.EventTypeWarning; reason is a short UpperCamelCase word such as "ScalingReplicaSet".
type Recorder interface {
	Eventf(obj resource.Object, eventType, reason, format string, args ...any)
}

// Store is the subset of the object store the recorder writes through.
type Store interface {
	Create(ctx context.Context, res *resource.Resource, obj resource.Object) (resource.Object, error)
	Update(ctx context.Context, res *resource.Resource, obj resource.Object) (resource.Object, error)
	List(ctx context.Context, res *resource.Resource, namespace string, opts store.ListOptions) (*store.ListResult, error)
	Delete(ctx context.Context, res *resource.Resource, namespace, name string, opts store.DeleteOptions) (resource.Object, error)
}

// StoreRecorder writes events to the store. Run must be running for events to be written.
type StoreRecorder struct {
	store     Store
	component string
	log       *slog.Logger
	clock     clock.WithTicker
	// TTL is how long an event is kept after it last happened (Kubernetes: 1 h).
	TTL time.Duration

	queue chan *corev1.Event
	mu    sync.Mutex
	seen  map[string]*corev1.Event // aggregation key -> last written event
}

var _ Recorder = (*StoreRecorder)(nil)

// NewRecorder returns a recorder that attributes its events to component (for example
// "deployment-controller").
func NewRecorder(st Store, component string, log *slog.Logger, clk clock.WithTicker) *StoreRecorder {
	if clk == nil {
		clk = clock.RealClock{}
	}
	return &StoreRecorder{
		store: st, component: component, log: log.With("component", "events"), clock: clk,
		TTL: time.Hour, queue: make(chan *corev1.Event, 4096), seen: map[string]*corev1.Event{},
	}
}

// Eventf queues an event; when the queue is full the event is dropped and logged, as recording
// must never slow a reconcile down.
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
	select {
	case r.queue <- ev:
	default:
		r.log.Warn("event queue full; dropping event", "object", ref.Kind+"/"+ref.Name, "reason", reason)
	}
}

func aggregationKey(ev *corev1.Event) string {
	o := ev.InvolvedObject
	return o.Kind + "/" + o.Namespace + "/" + o.Name + "/" + string(o.UID) + "/" + ev.Type + "/" + ev.Reason + "/" + ev.Message
}

// Run writes queued events and deletes expired ones until ctx ends.
func (r *StoreRecorder) Run(ctx context.Context) error {
	expire := r.clock.NewTicker(time.Minute)
	defer expire.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev := <-r.queue:
			r.write(ctx, ev)
		case <-expire.C():
			r.expire(ctx)
		}
	}
}

func (r *StoreRecorder) write(ctx context.Context, ev *corev1.Event) {
	key := aggregationKey(ev)
	r.mu.Lock()
	prev := r.seen[key]
	r.mu.Unlock()
	if prev != nil {
		upd := prev.DeepCopy()
		upd.Count++
		upd.LastTimestamp = ev.LastTimestamp
		upd.ResourceVersion = ""
		out, err := r.store.Update(ctx, resource.Events, upd)
		if err == nil {
			r.remember(key, out.(*corev1.Event))
			return
		}
		if !apierrors.IsNotFound(err) {
			r.log.Warn("updating event", "reason", ev.Reason, "err", err)
			return
		}
		// Expired or deleted meanwhile: write a new one.
	}
	ev.Name = fmt.Sprintf("%s.%s", ev.InvolvedObject.Name, strconv.FormatInt(ev.FirstTimestamp.UnixNano(), 16))
	out, err := r.store.Create(ctx, resource.Events, ev)
	if err != nil {
		r.log.Warn("creating event", "reason", ev.Reason, "err", err)
		return
	}
	r.remember(key, out.(*corev1.Event))
}

func (r *StoreRecorder) remember(key string, ev *corev1.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.seen) > 10000 {
		// Bound memory: forget everything; repeats then start a new event object.
		r.seen = map[string]*corev1.Event{}
	}
	r.seen[key] = ev
}

// expire deletes events whose last occurrence is older than TTL.
func (r *StoreRecorder) expire(ctx context.Context) {
	list, err := r.store.List(ctx, resource.Events, "", store.ListOptions{})
	if err != nil {
		r.log.Warn("listing events to expire", "err", err)
		return
	}
	cutoff := r.clock.Now().Add(-r.TTL)
	for _, o := range list.Items {
		ev := o.(*corev1.Event)
		last := ev.LastTimestamp.Time
		if last.IsZero() {
			last = ev.CreationTimestamp.Time
		}
		if last.Before(cutoff) {
			if _, err := r.store.Delete(ctx, resource.Events, ev.Namespace, ev.Name, store.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
				r.log.Warn("deleting expired event", "event", ev.Name, "err", err)
			}
		}
	}
	r.mu.Lock()
	for k, ev := range r.seen {
		if ev.LastTimestamp.Time.Before(cutoff) {
			delete(r.seen, k)
		}
	}
	r.mu.Unlock()
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
