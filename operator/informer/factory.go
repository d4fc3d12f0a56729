package informer

import (
	"context"
	"sync"
	"time"

	"github.com/bosun-gitops/bosun/internal/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"
)

// Factory hands out one shared informer per resource, all started together.
type Factory struct {
	store  Store
	resync time.Duration

	mu        sync.Mutex
	informers map[*resource.Resource]cache.SharedIndexInformer
	started   map[*resource.Resource]bool
	// metadataOnly marks informers that only ForMetadata asked for: they cache metadata.
	metadataOnly map[*resource.Resource]bool
	// late are full informers asked for after the metadata-only one of their resource started.
	late map[*resource.Resource]cache.SharedIndexInformer
	ctx  context.Context
}

// NewFactory returns a factory whose informers resync their handlers every resync (0 = never).
func NewFactory(st Store, resync time.Duration) *Factory {
	return &Factory{
		store:        st,
		resync:       resync,
		informers:    map[*resource.Resource]cache.SharedIndexInformer{},
		started:      map[*resource.Resource]bool{},
		metadataOnly: map[*resource.Resource]bool{},
		late:         map[*resource.Resource]cache.SharedIndexInformer{},
	}
}

// For returns the shared informer of res, creating it on first use with a namespace index. Its
// objects are typed (*corev1.Pod for pods).
func (f *Factory) For(res *resource.Resource) cache.SharedIndexInformer {
	f.mu.Lock()
	defer f.mu.Unlock()
	inf, ok := f.informers[res]
	if !ok {
		return f.newLocked(res, false)
	}
	if !f.metadataOnly[res] {
		return inf
	}
	// A metadata-only informer becomes a full one if it has not started yet: the typed
	// objects carry the metadata its other users read.
	if err := inf.SetTransform(nil); err == nil {
		delete(f.metadataOnly, res)
		return inf
	}
	if late, ok := f.late[res]; ok {
		return late
	}
	late := cache.NewSharedIndexInformer(&ListWatch{Store: f.store, Resource: res}, res.New(), f.resync,
		cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	f.late[res] = late
	go late.RunWithContext(f.ctx)
	return late
}

// ForMetadata returns an informer of res for a caller that reads only object metadata (the
// garbage collector reads owner references and finalizers): the shared typed informer when
// another caller asks For(res) before the factory starts, else one whose cache holds
// *metav1.PartialObjectMetadata, so that the data of every ConfigMap and Secret is not kept in
// memory for nothing. Its objects implement metav1.Object either way.
func (f *Factory) ForMetadata(res *resource.Resource) cache.SharedIndexInformer {
	f.mu.Lock()
	defer f.mu.Unlock()
	if inf, ok := f.informers[res]; ok {
		return inf
	}
	return f.newLocked(res, true)
}

func (f *Factory) newLocked(res *resource.Resource, metadataOnly bool) cache.SharedIndexInformer {
	// The store's list and watch decode typed objects, so the informer expects the typed kind
	// even when its cache keeps metadata alone.
	inf := cache.NewSharedIndexInformer(&ListWatch{Store: f.store, Resource: res}, res.New(), f.resync,
		cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	if metadataOnly {
		if err := inf.SetTransform(toMetadata(res)); err != nil {
			panic(err) // a new informer has not started
		}
		f.metadataOnly[res] = true
	}
	f.informers[res] = inf
	if f.ctx != nil {
		// Start informers requested after Start at once.
		f.started[res] = true
		go inf.RunWithContext(f.ctx)
	}
	return inf
}

// toMetadata returns the transform that keeps apiVersion, kind and metadata of res's objects.
// The metadata is shared with the typed object, which is dropped.
func toMetadata(res *resource.Resource) cache.TransformFunc {
	tm := metav1.TypeMeta{APIVersion: res.APIVersion(), Kind: res.Kind}
	return func(obj any) (any, error) {
		if _, ok := obj.(*metav1.PartialObjectMetadata); ok {
			return obj, nil
		}
		a, ok := obj.(metav1.ObjectMetaAccessor)
		if !ok {
			return obj, nil
		}
		om, ok := a.GetObjectMeta().(*metav1.ObjectMeta)
		if !ok {
			return obj, nil
		}
		return &metav1.PartialObjectMetadata{TypeMeta: tm, ObjectMeta: *om}, nil
	}
}

// Lookup returns the typed object res/namespace/name from the factory's cache of res. cached is
// false when the factory has no synced informer of res with typed objects (none was asked for,
// it caches metadata alone, or it has not synced); obj is nil when the cache lacks the object.
// Unlike For, it never creates an informer.
func (f *Factory) Lookup(res *resource.Resource, namespace, name string) (obj resource.Object, cached bool) {
	f.mu.Lock()
	inf, ok := f.informers[res]
	if ok && f.metadataOnly[res] {
		inf, ok = f.late[res]
	}
	f.mu.Unlock()
	if !ok || !inf.HasSynced() {
		return nil, false
	}
	key := name
	if res.Namespaced {
		key = namespace + "/" + name
	}
	item, exists, err := inf.GetIndexer().GetByKey(key)
	if err != nil || !exists {
		return nil, true
	}
	o, ok := item.(resource.Object)
	if !ok {
		return nil, false
	}
	return o, true
}

// Start runs every informer created so far, and any created later, until ctx ends.
func (f *Factory) Start(ctx context.Context) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ctx = ctx
	for res, inf := range f.informers {
		if !f.started[res] {
			f.started[res] = true
			go inf.RunWithContext(ctx)
		}
	}
}

// WaitForCacheSync blocks until every started informer has synced or ctx ends; it reports
// whether all synced.
func (f *Factory) WaitForCacheSync(ctx context.Context) bool {
	f.mu.Lock()
	var synced []cache.InformerSynced
	for _, inf := range f.informers {
		synced = append(synced, inf.HasSynced)
	}
	for _, inf := range f.late {
		synced = append(synced, inf.HasSynced)
	}
	f.mu.Unlock()
	return cache.WaitForCacheSync(ctx.Done(), synced...)
}
