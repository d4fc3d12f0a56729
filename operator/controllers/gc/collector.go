package gc

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/bosun-gitops/bosun/internal/resource"
	"github.com/bosun-gitops/bosun/operator/controllers"
	"github.com/bosun-gitops/bosun/operator/store"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"
)

// Name is the controller's name.
const Name = "garbagecollector"

const (
	byOwnerIndex = "gc.bosun.dev/by-owner-uid"
	// DefaultTerminatedPodThreshold is Kubernetes' terminated-pod-gc-threshold.
	DefaultTerminatedPodThreshold = 12500
	// DefaultPodGCPeriod is how often the pod garbage collector runs (as in Kubernetes).
	DefaultPodGCPeriod = 20 * time.Second
)

// Options tune the collector.
type Options struct {
	// TerminatedPodThreshold is how many Succeeded/Failed pods may exist before the oldest are
	// deleted: 0 means DefaultTerminatedPodThreshold, a negative value turns the cleanup off.
	TerminatedPodThreshold int
	// PodGCPeriod is how often finished and orphaned pods are looked for (0 = DefaultPodGCPeriod).
	PodGCPeriod time.Duration
}

// Collector deletes objects whose owners are gone and cleans up pods.
type Collector struct {
	c     *controllers.Context
	opts  Options
	log   *slog.Logger
	queue *controllers.Queue
	infs  map[string]cache.SharedIndexInformer // by resource.String()
	res   map[string]*resource.Resource
	pods  cache.SharedIndexInformer
	nodes cache.SharedIndexInformer
}

var _ controllers.Controller = (*Collector)(nil)

// New builds the garbage collector with default options.
func New(c *controllers.Context) (controllers.Controller, error) {
	return NewWithOptions(Options{})(c)
}

// NewWithOptions returns a constructor of a collector with opts.
func NewWithOptions(opts Options) controllers.Constructor {
	if opts.TerminatedPodThreshold == 0 {
		opts.TerminatedPodThreshold = DefaultTerminatedPodThreshold
	}
	if opts.PodGCPeriod <= 0 {
		opts.PodGCPeriod = DefaultPodGCPeriod
	}
	return func(c *controllers.Context) (controllers.Controller, error) {
		gc := &Collector{
			c: c, opts: opts, log: c.Logger.With("component", Name),
			infs: map[string]cache.SharedIndexInformer{}, res: map[string]*resource.Resource{},
		}
		gc.queue = controllers.NewQueue(Name, c.Logger, gc.reconcile)
		for _, res := range resource.All {
			if res == resource.Events {
				continue // events carry no owners and expire on their own
			}
			// The collector reads metadata only: kinds that no other controller reads in full
			// (ConfigMaps, Secrets) are cached without their data. Pod GC reads pods.
			inf := c.Informers.ForMetadata(res)
			if res == resource.Pods {
				inf = c.Informers.For(res)
			}
			if _, ok := inf.GetIndexer().GetIndexers()[byOwnerIndex]; !ok {
				if err := inf.AddIndexers(cache.Indexers{byOwnerIndex: ownerUIDs}); err != nil {
					return nil, fmt.Errorf("adding owner index to %s: %w", res, err)
				}
			}
			gc.infs[res.String()] = inf
			gc.res[res.String()] = res
			inf.AddEventHandler(gc.handler(res))
		}
		gc.pods = gc.infs[resource.Pods.String()]
		gc.nodes = gc.infs[resource.Nodes.String()]
		return gc, nil
	}
}

func ownerUIDs(obj any) ([]string, error) {
	m, err := meta.Accessor(obj)
	if err != nil {
		return nil, nil
	}
	var out []string
	for _, r := range m.GetOwnerReferences() {
		out = append(out, string(r.UID))
	}
	return out, nil
}

func key(res *resource.Resource, namespace, name string) string {
	return res.String() + "|" + namespace + "/" + name
}

func (gc *Collector) handler(res *resource.Resource) cache.ResourceEventHandler {
	interesting := func(m metav1.Object) bool {
		return len(m.GetOwnerReferences()) > 0 ||
			(m.GetDeletionTimestamp() != nil && (hasFinalizer(m, metav1.FinalizerOrphanDependents) || hasFinalizer(m, metav1.FinalizerDeleteDependents)))
	}
	onChange := func(obj any) {
		if m, err := meta.Accessor(obj); err == nil && interesting(m) {
			gc.queue.Add(key(res, m.GetNamespace(), m.GetName()))
		}
	}
	return cache.ResourceEventHandlerFuncs{
		AddFunc:    onChange,
		UpdateFunc: func(_, obj any) { onChange(obj) },
		DeleteFunc: func(obj any) {
			if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = t.Obj
			}
			m, err := meta.Accessor(obj)
			if err != nil {
				return
			}
			gc.enqueueDependents(m.GetUID())
			// An owner deleting in foreground waits for this dependent.
			for _, ref := range m.GetOwnerReferences() {
				if ores, ok := resource.ForKind(ref.APIVersion, ref.Kind); ok {
					ns := m.GetNamespace()
					if !ores.Namespaced {
						ns = ""
					}
					gc.queue.Add(key(ores, ns, ref.Name))
				}
			}
		},
	}
}

func (gc *Collector) enqueueDependents(uid types.UID) {
	for name, inf := range gc.infs {
		objs, _ := inf.GetIndexer().ByIndex(byOwnerIndex, string(uid))
		for _, o := range objs {
			if m, err := meta.Accessor(o); err == nil {
				gc.queue.Add(key(gc.res[name], m.GetNamespace(), m.GetName()))
			}
		}
	}
}

// dependent is an object that names an owner.
type dependent struct {
	res *resource.Resource
	obj resource.Object
}

func (gc *Collector) dependents(uid types.UID) []dependent {
	var out []dependent
	for name, inf := range gc.infs {
		objs, _ := inf.GetIndexer().ByIndex(byOwnerIndex, string(uid))
		for _, o := range objs {
			if obj, ok := o.(resource.Object); ok {
				out = append(out, dependent{res: gc.res[name], obj: obj})
			}
		}
	}
	return out
}

// liveDependents reads the owner's dependents from the store rather than from the informer
// caches: orphaning must not miss a dependent created a moment before the owner was deleted, or
// that dependent would later be collected as garbage.
func (gc *Collector) liveDependents(ctx context.Context, owner resource.Object) ([]dependent, error) {
	var out []dependent
	for _, res := range gc.res {
		ns := owner.GetNamespace()
		if !res.Namespaced {
			ns = ""
		}
		list, err := gc.c.Store.List(ctx, res, ns, store.ListOptions{})
		if err != nil {
			return nil, fmt.Errorf("listing %s to find dependents of %s: %w", res, owner.GetName(), err)
		}
		for _, obj := range list.Items {
			for _, ref := range obj.GetOwnerReferences() {
				if ref.UID == owner.GetUID() {
					out = append(out, dependent{res: res, obj: obj})
					break
				}
			}
		}
	}
	return out, nil
}

// Name implements controllers.Controller.
func (gc *Collector) Name() string { return Name }

// Run collects garbage until ctx ends.
func (gc *Collector) Run(ctx context.Context) error {
	go gc.runPodGC(ctx)
	gc.queue.Run(ctx, gc.c.Workers)
	return nil
}

func hasFinalizer(m metav1.Object, f string) bool {
	for _, x := range m.GetFinalizers() {
		if x == f {
			return true
		}
	}
	return false
}

func withoutFinalizer(fs []string, f string) []string {
	var out []string
	for _, x := range fs {
		if x != f {
			out = append(out, x)
		}
	}
	return out
}

func (gc *Collector) reconcile(ctx context.Context, k string) (controllers.Result, error) {
	resName, nsName, _ := strings.Cut(k, "|")
	ns, _, _ := strings.Cut(nsName, "/")
	res, inf := gc.res[resName], gc.infs[resName]
	if res == nil {
		return controllers.Result{}, nil
	}
	o, exists, err := inf.GetStore().GetByKey(strings.TrimPrefix(nsName, "/"))
	if err != nil || !exists {
		return controllers.Result{}, err
	}
	obj := o.(resource.Object)
	if obj.GetDeletionTimestamp() != nil {
		switch {
		case hasFinalizer(obj, metav1.FinalizerOrphanDependents):
			return controllers.Result{}, gc.orphanDependents(ctx, res, obj)
		case hasFinalizer(obj, metav1.FinalizerDeleteDependents):
			return controllers.Result{}, gc.deleteDependentsInForeground(ctx, res, obj)
		}
		return controllers.Result{}, nil
	}
	if len(obj.GetOwnerReferences()) == 0 {
		return controllers.Result{}, nil
	}
	var dangling []types.UID
	solid, waiting := 0, 0
	for _, ref := range obj.GetOwnerReferences() {
		state, err := gc.ownerState(ctx, ref, ns)
		if err != nil {
			return controllers.Result{}, err
		}
		switch state {
		case ownerAbsent:
			dangling = append(dangling, ref.UID)
		case ownerWaiting:
			waiting++
		default:
			solid++
		}
	}
	switch {
	case solid == 0 && (len(dangling) > 0 || waiting > 0):
		return controllers.Result{}, gc.deleteDependent(ctx, res, obj, waiting > 0)
	case len(dangling) > 0:
		return controllers.Result{}, gc.removeOwnerRefs(ctx, res, obj, dangling)
	}
	return controllers.Result{}, nil
}

type ownerStatus int

const (
	ownerPresent ownerStatus = iota
	ownerAbsent
	ownerWaiting // being deleted in foreground: waits for its dependents
)

// ownerState looks an owner up in the cache and, when the cache does not have it, in the store:
// only the store's word that it is gone (or replaced by another uid) counts as absent.
func (gc *Collector) ownerState(ctx context.Context, ref metav1.OwnerReference, depNamespace string) (ownerStatus, error) {
	res, ok := resource.ForKind(ref.APIVersion, ref.Kind)
	if !ok {
		return ownerPresent, nil // a kind Bosun does not store cannot be verified: leave it
	}
	ns := depNamespace
	if !res.Namespaced {
		ns = ""
	}
	state := func(m metav1.Object) ownerStatus {
		if m.GetUID() != ref.UID {
			return ownerAbsent
		}
		if m.GetDeletionTimestamp() != nil && hasFinalizer(m, metav1.FinalizerDeleteDependents) {
			return ownerWaiting
		}
		return ownerPresent
	}
	if inf, ok := gc.infs[res.String()]; ok {
		cacheKey := ref.Name
		if ns != "" {
			cacheKey = ns + "/" + ref.Name
		}
		if o, exists, _ := inf.GetStore().GetByKey(cacheKey); exists {
			if m, err := meta.Accessor(o); err == nil && m.GetUID() == ref.UID {
				return state(m), nil
			}
		}
	}
	live, err := gc.c.Store.Get(ctx, res, ns, ref.Name)
	if apierrors.IsNotFound(err) {
		return ownerAbsent, nil
	}
	if err != nil {
		return ownerPresent, fmt.Errorf("looking up owner %s %s/%s: %w", res, ns, ref.Name, err)
	}
	return state(live), nil
}

// full returns the whole of obj, which an update writes: the cache may hold its metadata alone
// (see New). The stored object must be the version the collector decided on, as an update of the
// cached object would require.
func (gc *Collector) full(ctx context.Context, res *resource.Resource, obj resource.Object) (resource.Object, error) {
	if _, ok := obj.(*metav1.PartialObjectMetadata); !ok {
		return obj, nil
	}
	live, err := gc.c.Store.Get(ctx, res, obj.GetNamespace(), obj.GetName())
	if err != nil {
		return nil, err
	}
	if live.GetUID() != obj.GetUID() || live.GetResourceVersion() != obj.GetResourceVersion() {
		return nil, apierrors.NewConflict(res.GroupResource(), obj.GetName(),
			fmt.Errorf("changed since the garbage collector read it (resourceVersion %s, now %s)", obj.GetResourceVersion(), live.GetResourceVersion()))
	}
	return live, nil
}

// deleteDependent deletes obj, in foreground when its owner waits in foreground and obj has
// dependents of its own.
func (gc *Collector) deleteDependent(ctx context.Context, res *resource.Resource, obj resource.Object, foreground bool) error {
	if foreground && len(gc.dependents(obj.GetUID())) > 0 && !hasFinalizer(obj, metav1.FinalizerDeleteDependents) {
		whole, err := gc.full(ctx, res, obj)
		if apierrors.IsNotFound(err) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("adding foregroundDeletion to %s %s: %w", res, obj.GetName(), err)
		}
		next := whole.DeepCopyObject().(resource.Object)
		next.SetFinalizers(append(next.GetFinalizers(), metav1.FinalizerDeleteDependents))
		updated, err := gc.c.Store.Update(ctx, res, next)
		if err != nil {
			if apierrors.IsNotFound(err) {
				return nil
			}
			return fmt.Errorf("adding foregroundDeletion to %s %s: %w", res, obj.GetName(), err)
		}
		obj = updated
	}
	// The decision was made on the cached object: delete only that version of it. A newer one
	// (say, the orphaning of its owner removed the reference) comes back through its update event.
	uid, rv := obj.GetUID(), obj.GetResourceVersion()
	_, err := gc.c.Store.Delete(ctx, res, obj.GetNamespace(), obj.GetName(),
		store.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid, ResourceVersion: &rv}})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if apierrors.IsConflict(err) {
		return fmt.Errorf("%s %s/%s changed since the garbage collector looked; looking again: %w", res, obj.GetNamespace(), obj.GetName(), err)
	}
	if err != nil {
		return fmt.Errorf("deleting %s %s/%s whose owner is gone: %w", res, obj.GetNamespace(), obj.GetName(), err)
	}
	gc.log.Info("deleted object whose owners are gone", "kind", res.Kind, "namespace", obj.GetNamespace(), "name", obj.GetName(), "foreground", foreground)
	return nil
}

// removeOwnerRefs drops the references to uids from obj.
func (gc *Collector) removeOwnerRefs(ctx context.Context, res *resource.Resource, obj resource.Object, uids []types.UID) error {
	drop := map[types.UID]bool{}
	for _, u := range uids {
		drop[u] = true
	}
	var refs []metav1.OwnerReference
	for _, r := range obj.GetOwnerReferences() {
		if !drop[r.UID] {
			refs = append(refs, r)
		}
	}
	if len(refs) == len(obj.GetOwnerReferences()) {
		return nil
	}
	whole, err := gc.full(ctx, res, obj)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("removing owner references from %s %s/%s: %w", res, obj.GetNamespace(), obj.GetName(), err)
	}
	next := whole.DeepCopyObject().(resource.Object)
	next.SetOwnerReferences(refs)
	if _, err := gc.c.Store.Update(ctx, res, next); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("removing owner references from %s %s/%s: %w", res, obj.GetNamespace(), obj.GetName(), err)
	}
	return nil
}

// orphanDependents removes the owner's references from its dependents, then the orphan
// finalizer, which lets the owner's deletion complete.
func (gc *Collector) orphanDependents(ctx context.Context, res *resource.Resource, owner resource.Object) error {
	deps, err := gc.liveDependents(ctx, owner)
	if err != nil {
		return err
	}
	for _, d := range deps {
		if err := gc.removeOwnerRefs(ctx, d.res, d.obj, []types.UID{owner.GetUID()}); err != nil {
			return err
		}
	}
	if err := gc.removeFinalizer(ctx, res, owner, metav1.FinalizerOrphanDependents); err != nil {
		return err
	}
	gc.log.Info("orphaned dependents", "kind", res.Kind, "namespace", owner.GetNamespace(), "name", owner.GetName())
	return nil
}

// deleteDependentsInForeground deletes the owner's dependents and removes the foregroundDeletion
// finalizer once none with blockOwnerDeletion remains.
func (gc *Collector) deleteDependentsInForeground(ctx context.Context, res *resource.Resource, owner resource.Object) error {
	blocking := 0
	for _, d := range gc.dependents(owner.GetUID()) {
		blocks := false
		for _, r := range d.obj.GetOwnerReferences() {
			if r.UID == owner.GetUID() && r.BlockOwnerDeletion != nil && *r.BlockOwnerDeletion {
				blocks = true
			}
		}
		if d.obj.GetDeletionTimestamp() != nil {
			if blocks {
				blocking++
			}
			continue
		}
		// A dependent with other live owners only loses this reference.
		others := false
		for _, r := range d.obj.GetOwnerReferences() {
			if r.UID == owner.GetUID() {
				continue
			}
			st, err := gc.ownerState(ctx, r, d.obj.GetNamespace())
			if err != nil {
				return err
			}
			if st == ownerPresent {
				others = true
			}
		}
		var err error
		if others {
			err = gc.removeOwnerRefs(ctx, d.res, d.obj, []types.UID{owner.GetUID()})
		} else {
			err = gc.deleteDependent(ctx, d.res, d.obj, true)
		}
		if err != nil {
			return err
		}
		if blocks && !others {
			blocking++
		}
	}
	if blocking > 0 {
		return nil // the dependents' deletion events bring the owner back here
	}
	return gc.removeFinalizer(ctx, res, owner, metav1.FinalizerDeleteDependents)
}

func (gc *Collector) removeFinalizer(ctx context.Context, res *resource.Resource, obj resource.Object, f string) error {
	whole, err := gc.full(ctx, res, obj)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("removing finalizer %s from %s %s: %w", f, res, obj.GetName(), err)
	}
	next := whole.DeepCopyObject().(resource.Object)
	next.SetFinalizers(withoutFinalizer(next.GetFinalizers(), f))
	if _, err := gc.c.Store.Update(ctx, res, next); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("removing finalizer %s from %s %s: %w", f, res, obj.GetName(), err)
	}
	return nil
}
