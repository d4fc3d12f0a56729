// Package replicaset keeps the pods of ReplicaSets and ReplicationControllers: as many pods
// matching the selector as spec.replicas asks for, created from the pod template with an owner
// reference, surplus pods deleted in Kubernetes' order, orphans adopted and non-matching pods
// released. One Controller type serves both kinds; New and NewReplicationController pick which.
//
//	pod/owner events ──> queue(owner key) ──> reconcile: claim pods, create/delete the difference
//	                                          (slow-start batches, expectations), write status
package replicaset

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/bosun-gitops/bosun/internal/resource"
	"github.com/bosun-gitops/bosun/operator/controllers"
	"github.com/bosun-gitops/bosun/operator/events"
	"github.com/bosun-gitops/bosun/operator/store"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/clock"
)

// Names of the two controllers.
const (
	Name   = "replicaset"
	RCName = "replicationcontroller"
)

// BurstReplicas caps the pods created or deleted in one sync (Kubernetes' --concurrent burst of 500).
const BurstReplicas = 500

// Controller reconciles ReplicaSets or ReplicationControllers.
type Controller struct {
	name  string
	kind  *kind
	store Store
	rec   events.Recorder
	log   *slog.Logger
	clock clock.WithTicker

	workers  int
	owners   cache.SharedIndexInformer
	pods     cache.SharedIndexInformer
	queue    *controllers.Queue
	expected *expectations
}

var _ controllers.Controller = (*Controller)(nil)

// Store is the subset of the object store the controller writes through.
type Store interface {
	Get(ctx context.Context, res *resource.Resource, namespace, name string) (resource.Object, error)
	Update(ctx context.Context, res *resource.Resource, obj resource.Object) (resource.Object, error)
	UpdateStatus(ctx context.Context, res *resource.Resource, obj resource.Object) (resource.Object, error)
	Batch(ctx context.Context, ops []store.Op) []store.OpResult
}

var _ Store = (*store.Store)(nil)

// New returns the ReplicaSet controller.
func New(c *controllers.Context) (controllers.Controller, error) {
	return newController(c, Name, replicaSetKind)
}

// NewReplicationController returns the ReplicationController controller.
func NewReplicationController(c *controllers.Context) (controllers.Controller, error) {
	return newController(c, RCName, replicationControllerKind)
}

func newController(c *controllers.Context, name string, k *kind) (*Controller, error) {
	rc := &Controller{
		name: name, kind: k, store: c.Store, rec: c.Recorder, log: c.Logger.With("component", name),
		clock: c.Clock, workers: c.Workers,
		owners: c.Informers.For(k.res), pods: c.Informers.For(resource.Pods),
		expected: newExpectations(c.Clock),
	}
	if err := AddControllerIndex(rc.owners); err != nil {
		return nil, err
	}
	if err := AddControllerIndex(rc.pods); err != nil {
		return nil, err
	}
	rc.queue = controllers.NewQueue(name, c.Logger, rc.reconcile)
	if _, err := rc.owners.AddEventHandler(rc.queue.Handler()); err != nil {
		return nil, fmt.Errorf("watching %s: %w", k.res, err)
	}
	if _, err := rc.pods.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: rc.addPod, UpdateFunc: rc.updatePod, DeleteFunc: rc.deletePod,
	}); err != nil {
		return nil, fmt.Errorf("watching pods: %w", err)
	}
	return rc, nil
}

// Name returns the controller's name.
func (rc *Controller) Name() string { return rc.name }

// Run reconciles until ctx ends.
func (rc *Controller) Run(ctx context.Context) error {
	rc.queue.Run(ctx, rc.workers)
	return nil
}

// ControllerIndex indexes objects by the UID of their controller owner; objects without one
// are indexed under OrphanIndexKey(namespace).
const ControllerIndex = "bosun.dev/controller-uid"

// OrphanIndexKey is the ControllerIndex value of objects without a controller in namespace.
func OrphanIndexKey(namespace string) string { return "orphan/" + namespace }

// AddControllerIndex adds ControllerIndex to inf unless it is there already (informers are
// shared between controllers).
func AddControllerIndex(inf cache.SharedIndexInformer) error {
	if _, ok := inf.GetIndexer().GetIndexers()[ControllerIndex]; ok {
		return nil
	}
	err := inf.AddIndexers(cache.Indexers{ControllerIndex: func(obj any) ([]string, error) {
		m, ok := obj.(metav1.Object)
		if !ok {
			return nil, nil
		}
		if ref := metav1.GetControllerOfNoCopy(m); ref != nil {
			return []string{string(ref.UID)}, nil
		}
		return []string{OrphanIndexKey(m.GetNamespace())}, nil
	}})
	if err != nil {
		return fmt.Errorf("adding the controller index: %w", err)
	}
	return nil
}

// ownerOf resolves a controller reference to the key of one of our owners, or "".
func (rc *Controller) ownerOf(namespace string, ref *metav1.OwnerReference) string {
	if ref == nil || ref.Kind != rc.kind.res.Kind {
		return ""
	}
	key := namespace + "/" + ref.Name
	obj, ok, err := rc.owners.GetIndexer().GetByKey(key)
	if err != nil || !ok || obj.(metav1.Object).GetUID() != ref.UID {
		return ""
	}
	return key
}

// enqueueMatching enqueues every owner in the pod's namespace whose selector matches it, so that
// an orphan is adopted.
func (rc *Controller) enqueueMatching(pod *corev1.Pod) {
	objs, err := rc.owners.GetIndexer().ByIndex(cache.NamespaceIndex, pod.Namespace)
	if err != nil {
		return
	}
	for _, obj := range objs {
		w, ok, err := rc.kind.view(obj)
		if !ok || err != nil {
			continue
		}
		if w.selector.Matches(labelSet(pod.Labels)) {
			rc.queue.Enqueue(obj)
		}
	}
}

func (rc *Controller) addPod(obj any) {
	pod := obj.(*corev1.Pod)
	if pod.DeletionTimestamp != nil {
		rc.deletePod(pod)
		return
	}
	if ref := metav1.GetControllerOfNoCopy(pod); ref != nil {
		if key := rc.ownerOf(pod.Namespace, ref); key != "" {
			rc.expected.creationObserved(key, 1)
			rc.queue.Add(key)
		}
		return
	}
	rc.enqueueMatching(pod)
}

func (rc *Controller) updatePod(oldObj, newObj any) {
	old, cur := oldObj.(*corev1.Pod), newObj.(*corev1.Pod)
	if old.ResourceVersion == cur.ResourceVersion {
		return // a resync
	}
	if cur.DeletionTimestamp != nil && old.DeletionTimestamp == nil {
		rc.deletePod(cur)
		return
	}
	oldRef, curRef := metav1.GetControllerOfNoCopy(old), metav1.GetControllerOfNoCopy(cur)
	if oldRef != nil && (curRef == nil || oldRef.UID != curRef.UID) {
		if key := rc.ownerOf(old.Namespace, oldRef); key != "" {
			rc.queue.Add(key)
		}
	}
	if curRef != nil {
		if key := rc.ownerOf(cur.Namespace, curRef); key != "" {
			rc.queue.Add(key)
			// Availability changes minReadySeconds after readiness; look again then.
			if w, ok := rc.workloadByKey(key); ok && w.minReadySeconds > 0 && !IsPodReady(old) && IsPodReady(cur) {
				rc.queue.AddAfter(key, time.Duration(w.minReadySeconds)*time.Second+time.Second)
			}
		}
		return
	}
	rc.enqueueMatching(cur)
}

func (rc *Controller) deletePod(obj any) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		tomb, ok := obj.(cache.DeletedFinalStateUnknown)
		if !ok {
			return
		}
		if pod, ok = tomb.Obj.(*corev1.Pod); !ok {
			return
		}
	}
	ref := metav1.GetControllerOfNoCopy(pod)
	if key := rc.ownerOf(pod.Namespace, ref); key != "" {
		rc.expected.deletionObserved(key, pod.Namespace+"/"+pod.Name)
		rc.queue.Add(key)
	}
}

func (rc *Controller) workloadByKey(key string) (*workload, bool) {
	obj, ok, err := rc.owners.GetIndexer().GetByKey(key)
	if err != nil || !ok {
		return nil, false
	}
	w, ok, err := rc.kind.view(obj)
	return w, ok && err == nil
}

// controllerRef is the owner reference put on pods.
func controllerRef(res *resource.Resource, owner metav1.Object) metav1.OwnerReference {
	yes := true
	return metav1.OwnerReference{APIVersion: res.APIVersion(), Kind: res.Kind, Name: owner.GetName(),
		UID: owner.GetUID(), Controller: &yes, BlockOwnerDeletion: &yes}
}

// podsOf returns the pods owned by uid plus the orphans of namespace, from the cache.
func (rc *Controller) podsOf(namespace string, uid types.UID) []*corev1.Pod {
	var pods []*corev1.Pod
	for _, idx := range []string{string(uid), OrphanIndexKey(namespace)} {
		objs, _ := rc.pods.GetIndexer().ByIndex(ControllerIndex, idx)
		for _, o := range objs {
			if p := o.(*corev1.Pod); p.Namespace == namespace {
				pods = append(pods, p)
			}
		}
	}
	return pods
}
