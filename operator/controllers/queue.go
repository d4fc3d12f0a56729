package controllers

import (
	"context"
	"log/slog"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
)

// ReconcileFunc reconciles the object with key "namespace/name" (or "name"). Returning an error
// retries the key with exponential backoff; RequeueAfter asks for another look later.
type ReconcileFunc func(ctx context.Context, key string) (Result, error)

// Result tells the queue runner what to do with a key after a successful reconcile.
type Result struct {
	// RequeueAfter > 0 reconciles the key again after that delay (for time-based decisions such
	// as progress deadlines or lease expiry).
	RequeueAfter time.Duration
}

// Queue is a rate-limited work queue of object keys with a reconcile loop.
type Queue struct {
	name      string
	q         workqueue.TypedRateLimitingInterface[string]
	reconcile ReconcileFunc
	log       *slog.Logger
}

// NewQueue returns a queue whose failed keys back off from 5 ms to 1000 s (client-go's default
// controller limiter, with an overall 10 qps / 100 burst bucket).
func NewQueue(name string, log *slog.Logger, reconcile ReconcileFunc) *Queue {
	return &Queue{
		name: name,
		q: workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[string](),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: name}),
		reconcile: reconcile,
		log:       log.With("controller", name),
	}
}

// Add enqueues a key.
func (q *Queue) Add(key string) { q.q.Add(key) }

// AddAfter enqueues a key after a delay.
func (q *Queue) AddAfter(key string, d time.Duration) { q.q.AddAfter(key, d) }

// Len is the number of keys waiting.
func (q *Queue) Len() int { return q.q.Len() }

// Enqueue adds the key of an informer object (handles DeletedFinalStateUnknown tombstones).
func (q *Queue) Enqueue(obj any) {
	key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj)
	if err != nil {
		q.log.Warn("cannot compute key", "err", err)
		return
	}
	q.q.Add(key)
}

// Handler returns informer event handlers that enqueue the object itself on every change.
func (q *Queue) Handler() cache.ResourceEventHandler {
	return cache.ResourceEventHandlerFuncs{
		AddFunc:    q.Enqueue,
		UpdateFunc: func(_, obj any) { q.Enqueue(obj) },
		DeleteFunc: q.Enqueue,
	}
}

// Run processes keys with workers goroutines until ctx ends, then shuts the queue down.
func (q *Queue) Run(ctx context.Context, workers int) {
	if workers <= 0 {
		workers = 4
	}
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for q.next(ctx) {
			}
		}()
	}
	<-ctx.Done()
	q.q.ShutDown()
	wg.Wait()
}

func (q *Queue) next(ctx context.Context) bool {
	key, quit := q.q.Get()
	if quit {
		return false
	}
	defer q.q.Done(key)
	res, err := q.reconcile(ctx, key)
	switch {
	case err == nil:
		q.q.Forget(key)
		if res.RequeueAfter > 0 {
			q.q.AddAfter(key, res.RequeueAfter)
		}
	case ctx.Err() != nil:
	default:
		level := slog.LevelWarn
		if apierrors.IsConflict(err) {
			// Someone else wrote first; the next reconcile reads the new state.
			level = slog.LevelDebug
		}
		q.log.Log(ctx, level, "reconcile failed; retrying", "key", key, "retries", q.q.NumRequeues(key), "err", err)
		q.q.AddRateLimited(key)
	}
	return true
}
