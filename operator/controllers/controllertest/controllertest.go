// Package controllertest runs controllers against a real embedded etcd for tests: a store, a
// shared informer factory, an event recorder writing to the store, and helpers to wait for a
// condition on stored objects.
package controllertest

import (
	"context"
	"testing"
	"time"

	"github.com/bosun-gitops/bosun/internal/resource"
	"github.com/bosun-gitops/bosun/operator/controllers"
	"github.com/bosun-gitops/bosun/operator/events"
	"github.com/bosun-gitops/bosun/operator/informer"
	"github.com/bosun-gitops/bosun/operator/store"
	"github.com/bosun-gitops/bosun/operator/store/storetest"
	"k8s.io/utils/clock"
)

// Env is a controller test environment.
type Env struct {
	T        testing.TB
	Store    *store.Store
	Context  *controllers.Context
	Recorder *events.StoreRecorder
	Ctx      context.Context
}

// New returns an environment with a fresh store; pass a fake clock to control time-based logic
// (nil = real time).
func New(t testing.TB, clk clock.WithTicker) *Env {
	t.Helper()
	st := storetest.NewStore(t)
	if clk == nil {
		clk = clock.RealClock{}
	}
	log := storetest.Logger(t)
	f := informer.NewFactory(st, 0)
	rec := events.NewRecorder(st, "test", log, clk)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go rec.Run(ctx)
	return &Env{
		T: t, Store: st, Recorder: rec, Ctx: ctx,
		Context: &controllers.Context{
			Store: st, Informers: f, Recorder: rec, Cluster: controllers.ClusterFromInformer(f),
			Logger: log, Clock: clk, Workers: 2,
		},
	}
}

// Start builds the controllers, waits for the informer caches to sync and runs the controllers in
// the background until the test ends.
func (e *Env) Start(constructors map[string]controllers.Constructor) {
	e.T.Helper()
	set, err := controllers.Build(e.Context, constructors)
	if err != nil {
		e.T.Fatal(err)
	}
	e.Context.Informers.Start(e.Ctx)
	if !e.Context.Informers.WaitForCacheSync(e.Ctx) {
		e.T.Fatal("informer caches did not sync")
	}
	go func() {
		if err := set.Run(e.Ctx); err != nil {
			e.T.Errorf("controllers stopped: %v", err)
		}
	}()
}

// Eventually polls cond until it returns nil, failing the test with cond's last error after
// timeout.
func (e *Env) Eventually(timeout time.Duration, what string, cond func() error) {
	e.T.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for time.Now().Before(deadline) {
		if err = cond(); err == nil {
			return
		}
		time.Sleep(25 * time.Millisecond)
	}
	e.T.Fatalf("%s: not within %s: %v", what, timeout, err)
}

// List returns every stored object of res in namespace ("" = all).
func (e *Env) List(res *resource.Resource, namespace string) []resource.Object {
	e.T.Helper()
	l, err := e.Store.List(e.Ctx, res, namespace, store.ListOptions{})
	if err != nil {
		e.T.Fatal(err)
	}
	return l.Items
}

// MustCreate creates obj and returns the stored copy.
func (e *Env) MustCreate(res *resource.Resource, obj resource.Object) resource.Object {
	e.T.Helper()
	out, err := e.Store.Create(e.Ctx, res, obj)
	if err != nil {
		e.T.Fatalf("creating %s %s: %v", res.Kind, obj.GetName(), err)
	}
	return out
}
