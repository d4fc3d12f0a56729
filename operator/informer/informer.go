// Package informer feeds client-go's shared informers from the operator's own store, in process:
// the controllers and the scheduler get client-go's caches, indexers and typed listers without a
// round trip through HTTP and JSON.
//
//	store.List/Watch ──ListWatch──> cache.SharedIndexInformer ──> listers, event handlers
//
// A watch that falls behind compaction gets "410 Gone" from the store; client-go's reflector then
// re-lists, exactly as it does against a Kubernetes API server.
package informer

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/bosun-gitops/bosun/internal/resource"
	"github.com/bosun-gitops/bosun/operator/store"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
)

// Store is the subset of the object store an informer reads.
type Store interface {
	List(ctx context.Context, res *resource.Resource, namespace string, opts store.ListOptions) (*store.ListResult, error)
	Watch(ctx context.Context, res *resource.Resource, namespace string, opts store.WatchOptions) (<-chan store.Event, error)
}

var _ Store = (*store.Store)(nil)

// ListWatch lists and watches one resource of the store, in namespace ("" = all).
type ListWatch struct {
	Store     Store
	Resource  *resource.Resource
	Namespace string
}

var (
	_ cache.ListerWatcherWithContext = (*ListWatch)(nil)
	_ cache.ListerWatcher            = (*ListWatch)(nil)
)

// IsWatchListSemanticsUnSupported tells client-go's reflector to list then watch: the store
// serves consistent lists directly, so streaming lists buy nothing in process.
func (lw *ListWatch) IsWatchListSemanticsUnSupported() bool { return true }

func selectors(opts metav1.ListOptions) (labels.Selector, fields.Selector, error) {
	ls, fs := labels.Everything(), fields.Everything()
	var err error
	if opts.LabelSelector != "" {
		if ls, err = labels.Parse(opts.LabelSelector); err != nil {
			return nil, nil, apierrors.NewBadRequest(err.Error())
		}
	}
	if opts.FieldSelector != "" {
		if fs, err = fields.ParseSelector(opts.FieldSelector); err != nil {
			return nil, nil, apierrors.NewBadRequest(err.Error())
		}
	}
	return ls, fs, nil
}

// ListWithContext returns a typed list (for example *corev1.PodList).
func (lw *ListWatch) ListWithContext(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
	ls, fs, err := selectors(opts)
	if err != nil {
		return nil, err
	}
	res, err := lw.Store.List(ctx, lw.Resource, lw.Namespace, store.ListOptions{
		LabelSelector: ls, FieldSelector: fs, Limit: opts.Limit, Continue: opts.Continue,
	})
	if err != nil {
		return nil, err
	}
	list := lw.Resource.NewList()
	items := make([]runtime.Object, len(res.Items))
	for i, o := range res.Items {
		items[i] = o
	}
	if err := meta.SetList(list, items); err != nil {
		return nil, fmt.Errorf("building %s list: %w", lw.Resource, err)
	}
	lm, err := meta.ListAccessor(list)
	if err != nil {
		return nil, err
	}
	lm.SetResourceVersion(strconv.FormatInt(res.ResourceVersion, 10))
	lm.SetContinue(res.Continue)
	return list, nil
}

// List implements the context-free cache.ListerWatcher.
func (lw *ListWatch) List(opts metav1.ListOptions) (runtime.Object, error) {
	return lw.ListWithContext(context.Background(), opts)
}

// WatchWithContext streams the store's events as a watch.Interface.
func (lw *ListWatch) WatchWithContext(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
	ls, fs, err := selectors(opts)
	if err != nil {
		return nil, err
	}
	var rv int64
	if opts.ResourceVersion != "" {
		if rv, err = strconv.ParseInt(opts.ResourceVersion, 10, 64); err != nil {
			return nil, apierrors.NewBadRequest(fmt.Sprintf("resourceVersion %q: %v", opts.ResourceVersion, err))
		}
	}
	wctx, cancel := context.WithCancel(ctx)
	if opts.TimeoutSeconds != nil && *opts.TimeoutSeconds > 0 {
		wctx, cancel = context.WithTimeout(ctx, time.Duration(*opts.TimeoutSeconds)*time.Second)
	}
	events, err := lw.Store.Watch(wctx, lw.Resource, lw.Namespace, store.WatchOptions{
		ResourceVersion: rv, LabelSelector: ls, FieldSelector: fs,
		Bookmarks: opts.AllowWatchBookmarks,
	})
	if err != nil {
		cancel()
		return nil, err
	}
	w := &streamWatcher{result: make(chan watch.Event), cancel: cancel, done: make(chan struct{})}
	go w.pump(events, lw.Resource)
	return w, nil
}

// Watch implements the context-free cache.ListerWatcher.
func (lw *ListWatch) Watch(opts metav1.ListOptions) (watch.Interface, error) {
	return lw.WatchWithContext(context.Background(), opts)
}

// streamWatcher adapts the store's event channel to watch.Interface.
type streamWatcher struct {
	result chan watch.Event
	cancel context.CancelFunc
	once   sync.Once
	done   chan struct{}
}

func (w *streamWatcher) pump(events <-chan store.Event, res *resource.Resource) {
	defer close(w.result)
	for ev := range events {
		out := watch.Event{Type: ev.Type, Object: ev.Object}
		if ev.Type == watch.Error {
			status := apierrors.NewInternalError(ev.Err).Status()
			if se, ok := ev.Err.(apierrors.APIStatus); ok {
				status = se.Status()
			}
			out.Object = &status
		} else if ev.Type == watch.Bookmark && ev.Object == nil {
			continue
		}
		select {
		case w.result <- out:
		case <-w.done:
			return
		}
	}
}

func (w *streamWatcher) Stop() {
	w.once.Do(func() {
		close(w.done)
		w.cancel()
	})
}

func (w *streamWatcher) ResultChan() <-chan watch.Event { return w.result }
