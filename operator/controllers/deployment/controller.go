// Package deployment rolls Deployments out through ReplicaSets, as Kubernetes' deployment
// controller: one ReplicaSet per pod template (named <deployment>-<pod-template-hash>),
// RollingUpdate within maxSurge/maxUnavailable or Recreate, revision annotations and history
// cleanup, proportional scaling, pause, and the Progressing/Available conditions. A template
// that goes back to an older one (a Git revert) reuses that older ReplicaSet with a new revision.
//
//	deployment/replicaset/pod events ──> queue(deployment key) ──> reconcile:
//	    claim ReplicaSets ─> being deleted? status only
//	                         paused/scaling? sync : rollout (rolling | recreate) ─> status
package deployment

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/bosun-gitops/bosun/internal/resource"
	"github.com/bosun-gitops/bosun/operator/controllers"
	"github.com/bosun-gitops/bosun/operator/controllers/replicaset"
	"github.com/bosun-gitops/bosun/operator/events"
	"github.com/bosun-gitops/bosun/operator/store"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/clock"
)

// Name is the controller's name.
const Name = "deployment"

// Store is the subset of the object store the controller writes through.
type Store interface {
	Create(ctx context.Context, res *resource.Resource, obj resource.Object) (resource.Object, error)
	Get(ctx context.Context, res *resource.Resource, namespace, name string) (resource.Object, error)
	Update(ctx context.Context, res *resource.Resource, obj resource.Object) (resource.Object, error)
	UpdateStatus(ctx context.Context, res *resource.Resource, obj resource.Object) (resource.Object, error)
	Delete(ctx context.Context, res *resource.Resource, namespace, name string, opts store.DeleteOptions) (resource.Object, error)
}

var _ Store = (*store.Store)(nil)

// Controller reconciles Deployments.
type Controller struct {
	store   Store
	rec     events.Recorder
	log     *slog.Logger
	clock   clock.WithTicker
	workers int

	deployments cache.SharedIndexInformer
	replicaSets cache.SharedIndexInformer
	pods        cache.SharedIndexInformer
	queue       *controllers.Queue

	// written holds the resourceVersion of every ReplicaSet this controller wrote and the cache
	// has not shown yet: deciding from an older copy would scale twice.
	mu      sync.Mutex
	written map[string]written
}

type written struct {
	rv int64
	at time.Time
}

// writeWait bounds how long a write the cache does not show holds decisions back (the object may
// have been deleted by someone else meanwhile).
const writeWait = 10 * time.Second

var _ controllers.Controller = (*Controller)(nil)

// New returns the Deployment controller.
func New(c *controllers.Context) (controllers.Controller, error) {
	dc := &Controller{
		store: c.Store, rec: c.Recorder, log: c.Logger.With("component", Name), clock: c.Clock, workers: c.Workers,
		deployments: c.Informers.For(resource.Deployments),
		replicaSets: c.Informers.For(resource.ReplicaSets),
		pods:        c.Informers.For(resource.Pods),
		written:     map[string]written{},
	}
	for _, inf := range []cache.SharedIndexInformer{dc.replicaSets, dc.pods} {
		if err := replicaset.AddControllerIndex(inf); err != nil {
			return nil, err
		}
	}
	dc.queue = controllers.NewQueue(Name, c.Logger, dc.reconcile)
	if _, err := dc.deployments.AddEventHandler(dc.queue.Handler()); err != nil {
		return nil, fmt.Errorf("watching deployments: %w", err)
	}
	if _, err := dc.replicaSets.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    dc.replicaSetChanged,
		UpdateFunc: func(old, cur any) { dc.replicaSetChanged(old); dc.replicaSetChanged(cur) },
		DeleteFunc: dc.replicaSetChanged,
	}); err != nil {
		return nil, fmt.Errorf("watching replica sets: %w", err)
	}
	if _, err := dc.pods.AddEventHandler(cache.ResourceEventHandlerFuncs{DeleteFunc: dc.podDeleted}); err != nil {
		return nil, fmt.Errorf("watching pods: %w", err)
	}
	return dc, nil
}

// Name returns the controller's name.
func (dc *Controller) Name() string { return Name }

// Run reconciles until ctx ends.
func (dc *Controller) Run(ctx context.Context) error {
	dc.queue.Run(ctx, dc.workers)
	return nil
}

func untomb(obj any) any {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		return t.Obj
	}
	return obj
}

// deploymentOf resolves a controller reference to a Deployment key, or "".
func (dc *Controller) deploymentOf(namespace string, ref *metav1.OwnerReference) string {
	if ref == nil || ref.Kind != "Deployment" {
		return ""
	}
	key := namespace + "/" + ref.Name
	obj, ok, err := dc.deployments.GetIndexer().GetByKey(key)
	if err != nil || !ok || obj.(*appsv1.Deployment).UID != ref.UID {
		return ""
	}
	return key
}

func (dc *Controller) replicaSetChanged(obj any) {
	rs, ok := untomb(obj).(*appsv1.ReplicaSet)
	if !ok {
		return
	}
	if ref := metav1.GetControllerOfNoCopy(rs); ref != nil {
		if key := dc.deploymentOf(rs.Namespace, ref); key != "" {
			dc.queue.Add(key)
		}
		return
	}
	// An orphan: the Deployments that could adopt it.
	objs, _ := dc.deployments.GetIndexer().ByIndex(cache.NamespaceIndex, rs.Namespace)
	for _, o := range objs {
		d := o.(*appsv1.Deployment)
		sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
		if err == nil && !sel.Empty() && sel.Matches(labels.Set(rs.Labels)) {
			dc.queue.Enqueue(d)
		}
	}
}

// podDeleted wakes a Recreate rollout waiting for its old pods to go.
func (dc *Controller) podDeleted(obj any) {
	pod, ok := untomb(obj).(*corev1.Pod)
	if !ok {
		return
	}
	ref := metav1.GetControllerOfNoCopy(pod)
	if ref == nil || ref.Kind != "ReplicaSet" {
		return
	}
	o, ok, err := dc.replicaSets.GetIndexer().GetByKey(pod.Namespace + "/" + ref.Name)
	if err != nil || !ok {
		return
	}
	rs := o.(*appsv1.ReplicaSet)
	if key := dc.deploymentOf(rs.Namespace, metav1.GetControllerOfNoCopy(rs)); key != "" {
		dc.queue.Add(key)
	}
}

// wrote records a ReplicaSet write the cache must show before the next decision.
func (dc *Controller) wrote(rs resource.Object) {
	rv, err := strconv.ParseInt(rs.GetResourceVersion(), 10, 64)
	if err != nil {
		return
	}
	dc.mu.Lock()
	defer dc.mu.Unlock()
	dc.written[rs.GetNamespace()+"/"+rs.GetName()] = written{rv: rv, at: dc.clock.Now()}
}

// cacheCurrent reports whether the cache shows every ReplicaSet write of this Deployment's
// namespace; entries the cache caught up with are dropped.
func (dc *Controller) cacheCurrent(namespace string) bool {
	dc.mu.Lock()
	defer dc.mu.Unlock()
	current := true
	for key, w := range dc.written {
		ns, _, _ := cache.SplitMetaNamespaceKey(key)
		if ns != namespace {
			continue
		}
		o, ok, _ := dc.replicaSets.GetIndexer().GetByKey(key)
		if ok {
			if cached, _ := strconv.ParseInt(o.(*appsv1.ReplicaSet).ResourceVersion, 10, 64); cached >= w.rv {
				delete(dc.written, key)
				continue
			}
		}
		if dc.clock.Since(w.at) > writeWait {
			delete(dc.written, key)
			continue
		}
		current = false
	}
	return current
}

// forgetWrite drops the record of a ReplicaSet that no longer exists.
func (dc *Controller) forgetWrite(namespace, name string) {
	dc.mu.Lock()
	defer dc.mu.Unlock()
	delete(dc.written, namespace+"/"+name)
}
