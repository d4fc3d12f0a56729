package informer

import (
	"context"
	"sync"
	"time"

	"github.com/bosun-gitops/bosun/internal/resource"
	"k8s.io/client-go/tools/cache"
)

// Factory hands out one shared informer per resource, all started together.
type Factory struct {
	store  Store
	resync time.Duration

	mu        sync.Mutex
	informers map[*resource.Resource]cache.SharedIndexInformer
	started   map[*resource.Resource]bool
	ctx       context.Context
}

// NewFactory returns a factory whose informers resync their handlers every resync (0 = never).
func NewFactory(st Store, resync time.Duration) *Factory {
	return &Factory{
		store:     st,
		resync:    resync,
		informers: map[*resource.Resource]cache.SharedIndexInformer{},
		started:   map[*resource.Resource]bool{},
	}
}

// For returns the shared informer of res, creating it on first use with a namespace index.
func (f *Factory) For(res *resource.Resource) cache.SharedIndexInformer {
	f.mu.Lock()
	defer f.mu.Unlock()
	if inf, ok := f.informers[res]; ok {
		return inf
	}
	inf := cache.NewSharedIndexInformer(&ListWatch{Store: f.store, Resource: res}, res.New(), f.resync,
		cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	f.informers[res] = inf
	if f.ctx != nil {
		// Start informers requested after Start at once.
		f.started[res] = true
		go inf.RunWithContext(f.ctx)
	}
	return inf
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
	f.mu.Unlock()
	return cache.WaitForCacheSync(ctx.Done(), synced...)
}
