package scheduler

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/bosun-gitops/bosun/internal/resource"
	"github.com/bosun-gitops/bosun/operator/controllers"
	"github.com/bosun-gitops/bosun/operator/events"
	"github.com/bosun-gitops/bosun/operator/scheduler/framework"
	"github.com/bosun-gitops/bosun/operator/scheduler/plugins"
	"github.com/bosun-gitops/bosun/operator/store"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/clock"
)

// Name is the scheduler's controller name.
const Name = "scheduler"

// DefaultSchedulerName is the spec.schedulerName this scheduler serves (an empty one too).
const DefaultSchedulerName = corev1.DefaultSchedulerName

// Store is the subset of the object store the scheduler writes through.
type Store interface {
	Batch(ctx context.Context, ops []store.Op) []store.OpResult
	UpdateStatus(ctx context.Context, res *resource.Resource, obj resource.Object) (resource.Object, error)
}

// Config tunes the scheduler; zero values take the defaults.
type Config struct {
	// PercentageOfNodesToScore is the share of nodes to find feasible before scoring in large
	// clusters (0: adaptive, 50% - nodes/125, at least 5%, as kube-scheduler).
	PercentageOfNodesToScore int
	// Plugins are the enabled plugins (default plugins.DefaultPlugins()).
	Plugins []framework.PluginConfig
	// InitialBackoff and MaxBackoff bound the retry delay of a pod that failed (default 1 s, 10 s).
	InitialBackoff, MaxBackoff time.Duration
	// MaxBindBatch is the most binds written in one Store.Batch (default 500); BindConcurrency
	// the number of batches in flight (default 4).
	MaxBindBatch, BindConcurrency int
}

func (c *Config) setDefaults() {
	if len(c.Plugins) == 0 {
		c.Plugins = plugins.DefaultPlugins()
	}
	if c.InitialBackoff <= 0 {
		c.InitialBackoff = time.Second
	}
	if c.MaxBackoff <= 0 {
		c.MaxBackoff = 10 * time.Second
	}
	if c.MaxBindBatch <= 0 {
		c.MaxBindBatch = 500
	}
	if c.BindConcurrency <= 0 {
		c.BindConcurrency = 4
	}
}

// Scheduler binds pending pods to nodes.
type Scheduler struct {
	cfg      Config
	store    Store
	recorder events.Recorder
	log      *slog.Logger
	clock    clock.WithTicker
	fwk      *framework.Framework
	cache    *nodeCache
	queue    *schedulingQueue
	binder   *binder
	pods     cache.SharedIndexInformer
	nodes    cache.SharedIndexInformer
	// nextStart is where the next cycle starts looking through the nodes (rotated so that every
	// node gets its turn when only a sample is evaluated).
	nextStart int
	// feasibleBuf and scoreBuf are reused by every cycle (under cache.mu, as nextStart).
	feasibleBuf []*framework.NodeInfo
	scoreBuf    framework.ScoreBuffer
	// beforeBind, when set (tests), runs before each batch of binds is written.
	beforeBind func(ctx context.Context, pods []*corev1.Pod)
}

var _ controllers.Controller = (*Scheduler)(nil)

// New builds the scheduler with the default configuration from the controllers' context.
func New(c *controllers.Context) (controllers.Controller, error) {
	return NewWithConfig(c, Config{})
}

// NewWithConfig builds the scheduler with cfg.
func NewWithConfig(c *controllers.Context, cfg Config) (*Scheduler, error) {
	cfg.setDefaults()
	fwk, err := framework.New(plugins.NewRegistry(), cfg.Plugins)
	if err != nil {
		return nil, fmt.Errorf("building the scheduler framework: %w", err)
	}
	clk := c.Clock
	if clk == nil {
		clk = clock.RealClock{}
	}
	s := &Scheduler{
		cfg: cfg, store: c.Store, recorder: c.Recorder, clock: clk, fwk: fwk,
		log:   c.Logger.With("component", Name),
		cache: newNodeCache(),
		queue: newSchedulingQueue(clk, cfg.InitialBackoff, cfg.MaxBackoff),
		pods:  c.Informers.For(resource.Pods),
		nodes: c.Informers.For(resource.Nodes),
	}
	s.binder = newBinder(s)
	if _, err := s.nodes.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    s.onNodeAdd,
		UpdateFunc: s.onNodeUpdate,
		DeleteFunc: s.onNodeDelete,
	}); err != nil {
		return nil, fmt.Errorf("watching nodes: %w", err)
	}
	if _, err := s.pods.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    s.onPodAdd,
		UpdateFunc: s.onPodUpdate,
		DeleteFunc: s.onPodDelete,
	}); err != nil {
		return nil, fmt.Errorf("watching pods: %w", err)
	}
	return s, nil
}

// Name implements controllers.Controller.
func (s *Scheduler) Name() string { return Name }

// Run schedules pods until ctx ends.
func (s *Scheduler) Run(ctx context.Context) error {
	if !cache.WaitForCacheSync(ctx.Done(), s.pods.HasSynced, s.nodes.HasSynced) {
		return ctx.Err()
	}
	s.log.Info("scheduler started")
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.binder.run(ctx)
	}()
	go s.queue.Run(ctx)
	for {
		qp, cycle := s.queue.Pop()
		if qp == nil {
			break
		}
		s.scheduleOne(ctx, qp, cycle)
	}
	<-done
	return nil
}

// responsible reports whether the pod is this scheduler's to place: pending, unbound, for the
// default scheduler, not being deleted and not finished.
func responsible(p *corev1.Pod) bool {
	return p.Spec.NodeName == "" && (p.Spec.SchedulerName == "" || p.Spec.SchedulerName == DefaultSchedulerName) &&
		p.DeletionTimestamp == nil && !terminal(p)
}

func terminal(p *corev1.Pod) bool {
	return p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed
}

func (s *Scheduler) onNodeAdd(obj any) {
	if n, ok := obj.(*corev1.Node); ok {
		s.cache.setNode(n)
		s.queue.MoveAllToActiveOrBackoff()
	}
}

func (s *Scheduler) onNodeUpdate(_, obj any) {
	// Any change (readiness, taints, labels, allocatable, unschedulable) may help a parked pod.
	s.onNodeAdd(obj)
}

func (s *Scheduler) onNodeDelete(obj any) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	if n, ok := obj.(*corev1.Node); ok {
		s.cache.removeNode(n.Name)
	}
}

func (s *Scheduler) onPodAdd(obj any) {
	p, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	switch {
	case p.Spec.NodeName != "" && !terminal(p):
		s.cache.addPod(p)
	case responsible(p):
		s.queue.Add(p)
	}
}

func (s *Scheduler) onPodUpdate(oldObj, obj any) {
	old, ok1 := oldObj.(*corev1.Pod)
	p, ok2 := obj.(*corev1.Pod)
	if !ok1 || !ok2 {
		return
	}
	switch {
	case p.Spec.NodeName != "":
		s.queue.Delete(p)
		if terminal(p) {
			// A finished pod frees its node's resources, as a deleted one does.
			s.cache.removePod(p.UID)
			if !terminal(old) {
				s.queue.MoveAllToActiveOrBackoff()
			}
		} else {
			s.cache.addPod(p)
		}
	case responsible(p):
		s.queue.Update(old, p)
	default:
		s.queue.Delete(p)
	}
}

func (s *Scheduler) onPodDelete(obj any) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	p, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	s.queue.Delete(p)
	if p.Spec.NodeName != "" || s.cache.isKnown(p.UID) {
		s.cache.removePod(p.UID)
		s.queue.MoveAllToActiveOrBackoff()
	}
}
