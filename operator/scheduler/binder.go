package scheduler

import (
	"context"
	"sync"

	"github.com/bosun-gitops/bosun/internal/resource"
	"github.com/bosun-gitops/bosun/operator/store"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// bindRequest is a pod assumed on node, waiting to be written.
type bindRequest struct {
	qp   *queuedPod
	node string
}

// binder writes bindings in batches: what arrived while the previous batch was being written
// goes out together, up to MaxBindBatch per Store.Batch and BindConcurrency batches at once.
// Each binding sets spec.nodeName and PodScheduled=True in one write, with the pod's
// resourceVersion as precondition, as the Kubernetes binding subresource does.
type binder struct {
	s       *Scheduler
	mu      sync.Mutex
	pending []*bindRequest
	wake    chan struct{}
}

func newBinder(s *Scheduler) *binder {
	return &binder{s: s, wake: make(chan struct{}, 1)}
}

func (b *binder) submit(r *bindRequest) {
	b.mu.Lock()
	b.pending = append(b.pending, r)
	b.mu.Unlock()
	select {
	case b.wake <- struct{}{}:
	default:
	}
}

func (b *binder) take() []*bindRequest {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := min(len(b.pending), b.s.cfg.MaxBindBatch)
	batch := b.pending[:n:n]
	b.pending = b.pending[n:]
	if len(b.pending) == 0 {
		b.pending = nil
	}
	return batch
}

// run writes batches until ctx ends, then waits for the batches in flight.
func (b *binder) run(ctx context.Context) {
	sem := make(chan struct{}, b.s.cfg.BindConcurrency)
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		select {
		case <-ctx.Done():
			return
		case <-b.wake:
		}
		for {
			batch := b.take()
			if len(batch) == 0 {
				break
			}
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				b.bind(ctx, batch)
			}()
		}
	}
}

// bindingFor returns the pod as bound to node: spec.nodeName set, PodScheduled=True.
func (b *binder) bindingFor(pod *corev1.Pod, node string) *corev1.Pod {
	p := pod.DeepCopy()
	p.Spec.NodeName = node
	setCondition(&p.Status, corev1.PodCondition{Type: corev1.PodScheduled, Status: corev1.ConditionTrue},
		metav1.NewTime(b.s.clock.Now()))
	return p
}

func (b *binder) bind(ctx context.Context, batch []*bindRequest) {
	s := b.s
	pods := make([]*corev1.Pod, len(batch))
	ops := make([]store.Op, len(batch))
	for i, r := range batch {
		pods[i] = b.bindingFor(r.qp.pod, r.node)
		// The pod as the informer holds it: the store writes against it without a read.
		ops[i] = store.Op{Type: store.OpUpdateWithStatus, Resource: resource.Pods, Object: pods[i], Base: r.qp.pod}
	}
	if s.beforeBind != nil {
		s.beforeBind(ctx, pods)
	}
	results := s.store.Batch(ctx, ops)
	for i, r := range batch {
		err := results[i].Err
		if err == nil {
			s.recorder.Eventf(r.qp.pod, corev1.EventTypeNormal, "Scheduled",
				"Successfully assigned %s/%s to %s", r.qp.pod.Namespace, r.qp.pod.Name, r.node)
			continue
		}
		s.cache.forget(r.qp.pod.UID)
		if ctx.Err() != nil {
			continue
		}
		switch {
		case apierrors.IsNotFound(err):
			// Deleted meanwhile: nothing to do.
		case apierrors.IsConflict(err):
			// The pod changed since we read it; the informer has (or will have) the new version.
			s.log.Debug("binding conflict; retrying", "pod", r.qp.key, "node", r.node)
			s.requeue(r.qp)
		default:
			s.log.Warn("binding failed; retrying", "pod", r.qp.key, "node", r.node, "err", err)
			s.recorder.Eventf(r.qp.pod, corev1.EventTypeWarning, "FailedScheduling", "Binding rejected: %v", err)
			s.requeue(r.qp)
		}
	}
}

// requeue puts a pod whose bind failed back with backoff, as the informer now knows it: an
// update that arrived while the pod was in flight was dropped, and retrying the old copy would
// only conflict again.
func (s *Scheduler) requeue(qp *queuedPod) {
	obj, ok, err := s.pods.GetIndexer().GetByKey(qp.key)
	if err != nil || !ok {
		return // deleted
	}
	latest := obj.(*corev1.Pod)
	if latest.UID != qp.pod.UID || !responsible(latest) {
		return // replaced, bound elsewhere or being deleted
	}
	qp.pod = latest
	s.queue.AddBackoff(qp)
}
