package scheduler

import (
	"container/heap"
	"context"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/utils/clock"
)

// Where a queued pod waits.
const (
	inActive = iota + 1
	inBackoff
	inUnschedulable
)

// queuedPod is a pending pod and its scheduling history.
type queuedPod struct {
	pod      *corev1.Pod
	key      string
	attempts int
	added    time.Time // first time queued: FIFO order within a priority
	// lastFailure is when the pod last failed; its backoff runs from there.
	lastFailure time.Time
	where       int
	index       int // position in its heap
}

// podHeap orders the active queue (higher priority first, then oldest) or the backoff queue
// (earliest backoff expiry first).
type podHeap struct {
	items []*queuedPod
	less  func(a, b *queuedPod) bool
}

func (h *podHeap) Len() int           { return len(h.items) }
func (h *podHeap) Less(i, j int) bool { return h.less(h.items[i], h.items[j]) }
func (h *podHeap) Swap(i, j int) {
	h.items[i], h.items[j] = h.items[j], h.items[i]
	h.items[i].index, h.items[j].index = i, j
}
func (h *podHeap) Push(x any) {
	qp := x.(*queuedPod)
	qp.index = len(h.items)
	h.items = append(h.items, qp)
}
func (h *podHeap) Pop() any {
	qp := h.items[len(h.items)-1]
	h.items = h.items[:len(h.items)-1]
	return qp
}

func podPriority(p *corev1.Pod) int32 {
	if p.Spec.Priority != nil {
		return *p.Spec.Priority
	}
	return 0
}

// schedulingQueue is kube-scheduler's three-part queue: pods ready to try (active), pods waiting
// out their backoff after a failure (backoff), and pods that fit nowhere, parked until a cluster
// event (a node added or changed, a pod deleted) might make them fit (unschedulable).
type schedulingQueue struct {
	clock          clock.WithTicker
	initialBackoff time.Duration
	maxBackoff     time.Duration
	// maxUnschedulable is how long a pod stays parked without any event before it is retried.
	maxUnschedulable time.Duration

	mu            sync.Mutex
	cond          *sync.Cond
	pods          map[string]*queuedPod
	active        *podHeap
	backoff       *podHeap
	closed        bool
	cycle         int64 // incremented by every Pop
	moveRequested int64 // the cycle of the last move request
}

func newSchedulingQueue(clk clock.WithTicker, initialBackoff, maxBackoff time.Duration) *schedulingQueue {
	q := &schedulingQueue{
		clock: clk, initialBackoff: initialBackoff, maxBackoff: maxBackoff,
		maxUnschedulable: 5 * time.Minute,
		pods:             map[string]*queuedPod{},
	}
	q.cond = sync.NewCond(&q.mu)
	q.active = &podHeap{less: func(a, b *queuedPod) bool {
		pa, pb := podPriority(a.pod), podPriority(b.pod)
		if pa != pb {
			return pa > pb
		}
		return a.added.Before(b.added)
	}}
	q.backoff = &podHeap{less: func(a, b *queuedPod) bool {
		return q.backoffExpiry(a).Before(q.backoffExpiry(b))
	}}
	return q
}

// backoffExpiry is the end of a pod's backoff: initialBackoff doubled per failed attempt, capped.
func (q *schedulingQueue) backoffExpiry(qp *queuedPod) time.Time {
	d := q.initialBackoff
	for i := 1; i < qp.attempts && d < q.maxBackoff; i++ {
		d *= 2
	}
	return qp.lastFailure.Add(min(d, q.maxBackoff))
}

func (q *schedulingQueue) removeLocked(qp *queuedPod) {
	switch qp.where {
	case inActive:
		heap.Remove(q.active, qp.index)
	case inBackoff:
		heap.Remove(q.backoff, qp.index)
	}
	qp.where = 0
}

func (q *schedulingQueue) moveToActiveLocked(qp *queuedPod) {
	q.removeLocked(qp)
	qp.where = inActive
	heap.Push(q.active, qp)
	q.cond.Broadcast()
}

func (q *schedulingQueue) moveToBackoffLocked(qp *queuedPod) {
	q.removeLocked(qp)
	qp.where = inBackoff
	heap.Push(q.backoff, qp)
}

// Add queues a new pending pod, or refreshes the object of a pod already queued.
func (q *schedulingQueue) Add(pod *corev1.Pod) {
	q.mu.Lock()
	defer q.mu.Unlock()
	key := podKey(pod)
	if qp, ok := q.pods[key]; ok {
		qp.pod = pod
		return
	}
	qp := &queuedPod{pod: pod, key: key, added: q.clock.Now()}
	q.pods[key] = qp
	q.moveToActiveLocked(qp)
}

// Update refreshes a queued pod; a parked pod whose spec or metadata changed (not merely its
// status) is tried again, as kube-scheduler does.
func (q *schedulingQueue) Update(oldPod, newPod *corev1.Pod) {
	q.mu.Lock()
	qp, ok := q.pods[podKey(newPod)]
	if !ok {
		q.mu.Unlock()
		q.Add(newPod)
		return
	}
	defer q.mu.Unlock()
	qp.pod = newPod
	if qp.where == inUnschedulable && podChanged(oldPod, newPod) {
		if q.clock.Now().Before(q.backoffExpiry(qp)) {
			q.moveToBackoffLocked(qp)
		} else {
			q.moveToActiveLocked(qp)
		}
	}
}

func podChanged(a, b *corev1.Pod) bool {
	strip := func(p *corev1.Pod) *corev1.Pod {
		p = p.DeepCopy()
		p.ResourceVersion, p.Generation, p.ManagedFields = "", 0, nil
		p.Status = corev1.PodStatus{}
		return p
	}
	return !equality.Semantic.DeepEqual(strip(a), strip(b))
}

// Delete drops a pod (deleted, or bound by someone).
func (q *schedulingQueue) Delete(pod *corev1.Pod) {
	q.mu.Lock()
	defer q.mu.Unlock()
	key := podKey(pod)
	if qp, ok := q.pods[key]; ok {
		q.removeLocked(qp)
		delete(q.pods, key)
	}
}

// Pop blocks until a pod is active and returns it, with the scheduling cycle it starts; it
// returns nil when the queue is closed. The pod leaves the queue until it is re-added.
func (q *schedulingQueue) Pop() (*queuedPod, int64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for q.active.Len() == 0 && !q.closed {
		q.cond.Wait()
	}
	if q.closed {
		return nil, 0
	}
	qp := heap.Pop(q.active).(*queuedPod)
	qp.where = 0
	delete(q.pods, qp.key)
	qp.attempts++
	q.cycle++
	return qp, q.cycle
}

// AddUnschedulable parks a pod that fit no node in the given cycle. When a move request came
// while it was being scheduled (a node appeared meanwhile), it goes to backoff instead, so that
// the event is not missed.
func (q *schedulingQueue) AddUnschedulable(qp *queuedPod, cycle int64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if _, ok := q.pods[qp.key]; ok {
		return // re-added by an update meanwhile; that newer copy wins
	}
	qp.lastFailure = q.clock.Now()
	q.pods[qp.key] = qp
	if q.moveRequested >= cycle {
		q.moveToBackoffLocked(qp)
		return
	}
	qp.where = inUnschedulable
}

// AddBackoff re-queues a pod after an error (a failed bind, a conflict) with backoff.
func (q *schedulingQueue) AddBackoff(qp *queuedPod) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if _, ok := q.pods[qp.key]; ok {
		return
	}
	qp.lastFailure = q.clock.Now()
	q.pods[qp.key] = qp
	q.moveToBackoffLocked(qp)
}

// MoveAllToActiveOrBackoff is called on cluster events that may make parked pods fit: each goes
// to backoff if its backoff has not expired yet, else straight to active.
func (q *schedulingQueue) MoveAllToActiveOrBackoff() {
	q.mu.Lock()
	defer q.mu.Unlock()
	now := q.clock.Now()
	for _, qp := range q.pods {
		if qp.where != inUnschedulable {
			continue
		}
		if now.Before(q.backoffExpiry(qp)) {
			q.moveToBackoffLocked(qp)
		} else {
			q.moveToActiveLocked(qp)
		}
	}
	q.moveRequested = q.cycle
}

// flush moves pods whose backoff ended to active, and pods parked longer than maxUnschedulable
// to active or backoff.
func (q *schedulingQueue) flush() {
	q.mu.Lock()
	defer q.mu.Unlock()
	now := q.clock.Now()
	for q.backoff.Len() > 0 {
		qp := q.backoff.items[0]
		if now.Before(q.backoffExpiry(qp)) {
			break
		}
		q.moveToActiveLocked(qp)
	}
	for _, qp := range q.pods {
		if qp.where == inUnschedulable && now.Sub(qp.lastFailure) > q.maxUnschedulable {
			q.moveToActiveLocked(qp)
		}
	}
}

// Run flushes the backoff and unschedulable pods every second until ctx ends, then closes the
// queue (unblocking Pop).
func (q *schedulingQueue) Run(ctx context.Context) {
	t := q.clock.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			q.mu.Lock()
			q.closed = true
			q.cond.Broadcast()
			q.mu.Unlock()
			return
		case <-t.C():
			q.flush()
		}
	}
}

// counts returns the number of pods active, backing off and parked (for tests and logs).
func (q *schedulingQueue) counts() (active, backoff, unschedulable int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.active.Len(), q.backoff.Len(), len(q.pods) - q.active.Len() - q.backoff.Len()
}

func podKey(p *corev1.Pod) string { return p.Namespace + "/" + p.Name }
