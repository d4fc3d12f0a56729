package controllers

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/bosun-gitops/bosun/internal/resource"
	"github.com/bosun-gitops/bosun/operator/events"
	"github.com/bosun-gitops/bosun/operator/informer"
	"github.com/bosun-gitops/bosun/operator/store"
	bosunv1 "github.com/bosun-gitops/bosun/repo-layout/v1alpha1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/clock"
)

// Controller is one reconciler. Run blocks until ctx ends; it returns an error only when it cannot
// go on at all (a failed reconcile of one object is retried, not returned).
type Controller interface {
	Name() string
	Run(ctx context.Context) error
}

// Context is what every controller is built from. Controllers must register the informers they
// need (Informers.For, or Informers.ForMetadata for a controller that reads only metadata) in
// their constructor, before the factory starts: one informer per kind is shared by all.
type Context struct {
	Store     *store.Store
	Informers *informer.Factory
	Recorder  events.Recorder
	// Cluster returns the current cluster settings (bosun.yaml with defaults applied).
	Cluster func() *bosunv1.Cluster
	Logger  *slog.Logger
	Clock   clock.WithTicker
	// Workers is the number of concurrent reconciles per controller (default 4).
	Workers int
}

// Constructor builds a controller from the shared context.
type Constructor func(*Context) (Controller, error)

// Set is a group of built controllers sharing one Context.
type Set struct {
	ctx   *Context
	ctrls []Controller
}

// Build constructs the controllers; each registers the informers it needs.
func Build(c *Context, constructors map[string]Constructor) (*Set, error) {
	if c.Workers <= 0 {
		c.Workers = 4
	}
	set := &Set{ctx: c}
	for name, newCtrl := range constructors {
		ctrl, err := newCtrl(c)
		if err != nil {
			return nil, fmt.Errorf("building controller %s: %w", name, err)
		}
		set.ctrls = append(set.ctrls, ctrl)
	}
	return set, nil
}

// Run starts the informers, waits for their caches to sync, and runs every controller until ctx
// ends or one fails.
func (s *Set) Run(ctx context.Context) error {
	c := s.ctx
	c.Informers.Start(ctx)
	if !c.Informers.WaitForCacheSync(ctx) {
		return ctx.Err()
	}
	c.Logger.Info("controllers starting", "count", len(s.ctrls))
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, len(s.ctrls))
	var wg sync.WaitGroup
	for _, ctrl := range s.ctrls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := ctrl.Run(ctx); err != nil && ctx.Err() == nil {
				errc <- fmt.Errorf("controller %s: %w", ctrl.Name(), err)
			}
		}()
	}
	var err error
	select {
	case err = <-errc:
	case <-ctx.Done():
	}
	cancel()
	wg.Wait()
	return err
}

// RunAll is Build followed by Run.
func RunAll(ctx context.Context, c *Context, constructors map[string]Constructor) error {
	set, err := Build(c, constructors)
	if err != nil {
		return err
	}
	return set.Run(ctx)
}

// DefaultCluster returns the cluster settings used when bosun.yaml does not say otherwise.
func DefaultCluster() *bosunv1.Cluster {
	return &bosunv1.Cluster{Spec: bosunv1.ClusterSpec{
		PodCIDR: "10.244.0.0/16", ServiceCIDR: "10.96.0.0/16", ClusterDomain: "cluster.local",
		NodeMonitorGracePeriod: &metav1.Duration{Duration: 40 * time.Second},
		PodEvictionTimeout:     &metav1.Duration{Duration: 300 * time.Second},
		Upgrade:                bosunv1.UpgradePolicy{MaxUnavailable: 1},
	}}
}

// ClusterFromInformer returns a Cluster getter backed by the Cluster informer: the first Cluster
// object (a repository has at most one) with unset fields filled from DefaultCluster.
func ClusterFromInformer(f *informer.Factory) func() *bosunv1.Cluster {
	inf := f.For(resource.Clusters)
	return func() *bosunv1.Cluster {
		def := DefaultCluster()
		items := inf.GetStore().List()
		if len(items) == 0 {
			return def
		}
		c := items[0].(*bosunv1.Cluster).DeepCopy()
		s := &c.Spec
		if s.PodCIDR == "" {
			s.PodCIDR = def.Spec.PodCIDR
		}
		if s.ServiceCIDR == "" {
			s.ServiceCIDR = def.Spec.ServiceCIDR
		}
		if s.ClusterDomain == "" {
			s.ClusterDomain = def.Spec.ClusterDomain
		}
		if s.NodeMonitorGracePeriod == nil {
			s.NodeMonitorGracePeriod = def.Spec.NodeMonitorGracePeriod
		}
		if s.PodEvictionTimeout == nil {
			s.PodEvictionTimeout = def.Spec.PodEvictionTimeout
		}
		if s.Upgrade.MaxUnavailable == 0 {
			s.Upgrade.MaxUnavailable = 1
		}
		return c
	}
}
