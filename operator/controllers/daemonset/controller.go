package daemonset

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/bosun-gitops/bosun/internal/resource"
	"github.com/bosun-gitops/bosun/operator/controllers"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/tools/cache"
)

// Name is the controller's name.
const Name = "daemonset"

const (
	byControllerIndex = "daemonset.bosun.dev/by-controller-uid"
	// expectationTimeout bounds how long a create or delete not yet seen in the cache is
	// assumed to be on its way (Kubernetes' ExpectationsTimeout).
	expectationTimeout = 5 * time.Minute
)

// Controller reconciles DaemonSets.
type Controller struct {
	c         *controllers.Context
	log       *slog.Logger
	queue     *controllers.Queue
	dss       cache.SharedIndexInformer
	pods      cache.SharedIndexInformer
	nodes     cache.SharedIndexInformer
	revisions cache.SharedIndexInformer

	mu       sync.Mutex
	inflight map[string]*inflight // by DaemonSet key
}

// inflight remembers this controller's writes that the cache has not shown yet.
type inflight struct {
	created map[string]*corev1.Pod // pod name → pod as created
	deleted map[string]time.Time   // pod name → when deleted
	since   map[string]time.Time   // pod name → when created
}

var _ controllers.Controller = (*Controller)(nil)

// New builds the DaemonSet controller.
func New(c *controllers.Context) (controllers.Controller, error) {
	dc := &Controller{
		c: c, log: c.Logger.With("component", Name),
		dss: c.Informers.For(resource.DaemonSets), pods: c.Informers.For(resource.Pods),
		nodes: c.Informers.For(resource.Nodes), revisions: c.Informers.For(resource.ControllerRevisions),
		inflight: map[string]*inflight{},
	}
	dc.queue = controllers.NewQueue(Name, c.Logger, dc.reconcile)
	for _, inf := range []cache.SharedIndexInformer{dc.pods, dc.revisions} {
		if _, ok := inf.GetIndexer().GetIndexers()[byControllerIndex]; ok {
			continue
		}
		if err := inf.AddIndexers(cache.Indexers{byControllerIndex: controllerUID}); err != nil {
			return nil, fmt.Errorf("adding index %s: %w", byControllerIndex, err)
		}
	}
	dc.dss.AddEventHandler(dc.queue.Handler())
	podChanged := func(obj any) {
		if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = t.Obj
		}
		if p, ok := obj.(*corev1.Pod); ok {
			if ref := metav1.GetControllerOf(p); ref != nil && ref.Kind == "DaemonSet" {
				dc.queue.Add(p.Namespace + "/" + ref.Name)
			}
		}
	}
	dc.pods.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: podChanged, UpdateFunc: func(_, obj any) { podChanged(obj) }, DeleteFunc: podChanged,
	})
	dc.nodes.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(any) { dc.enqueueAll() },
		UpdateFunc: func(old, cur any) {
			o, ok1 := old.(*corev1.Node)
			n, ok2 := cur.(*corev1.Node)
			// Heartbeats and status changes do not change where daemons run.
			if ok1 && ok2 && equality.Semantic.DeepEqual(o.Labels, n.Labels) &&
				equality.Semantic.DeepEqual(o.Spec.Taints, n.Spec.Taints) {
				return
			}
			dc.enqueueAll()
		},
		DeleteFunc: func(any) { dc.enqueueAll() },
	})
	return dc, nil
}

func controllerUID(obj any) ([]string, error) {
	m, ok := obj.(metav1.Object)
	if !ok {
		return nil, nil
	}
	if ref := metav1.GetControllerOfNoCopy(m); ref != nil {
		return []string{string(ref.UID)}, nil
	}
	return nil, nil
}

func (dc *Controller) enqueueAll() {
	for _, k := range dc.dss.GetStore().ListKeys() {
		dc.queue.Add(k)
	}
}

// Name implements controllers.Controller.
func (dc *Controller) Name() string { return Name }

// Run reconciles DaemonSets until ctx ends.
func (dc *Controller) Run(ctx context.Context) error {
	dc.queue.Run(ctx, dc.c.Workers)
	return nil
}

// livePods returns the DaemonSet's pods as the cache shows them, corrected by the writes the
// cache has not caught up with, and the nodes where one of its pods is terminating.
func (dc *Controller) livePods(key string, ds *appsv1.DaemonSet, now time.Time) ([]*corev1.Pod, map[string]bool, error) {
	objs, err := dc.pods.GetIndexer().ByIndex(byControllerIndex, string(ds.UID))
	if err != nil {
		return nil, nil, err
	}
	terminating := map[string]bool{}
	dc.mu.Lock()
	defer dc.mu.Unlock()
	fl := dc.inflight[key]
	if fl == nil {
		fl = &inflight{created: map[string]*corev1.Pod{}, deleted: map[string]time.Time{}, since: map[string]time.Time{}}
		dc.inflight[key] = fl
	}
	seen := map[string]bool{}
	var pods []*corev1.Pod
	for _, o := range objs {
		p := o.(*corev1.Pod)
		if p.Namespace != ds.Namespace {
			continue
		}
		seen[p.Name] = true
		delete(fl.created, p.Name)
		t, deleting := fl.deleted[p.Name]
		if deleting && now.Sub(t) < expectationTimeout || p.DeletionTimestamp != nil {
			// Deleted (by us, the cache not showing it yet) or terminating: gone from the
			// decisions, but its node waits for it to go.
			if p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed {
				terminating[TargetNode(p)] = true
			}
			continue
		}
		pods = append(pods, p)
	}
	for name := range fl.deleted {
		if !seen[name] {
			delete(fl.deleted, name)
		}
	}
	for name, p := range fl.created {
		if now.Sub(fl.since[name]) > expectationTimeout {
			delete(fl.created, name)
			continue
		}
		pods = append(pods, p)
	}
	return pods, terminating, nil
}

func (dc *Controller) expectCreated(key string, p *corev1.Pod, now time.Time) {
	dc.mu.Lock()
	defer dc.mu.Unlock()
	if fl := dc.inflight[key]; fl != nil {
		if _, exists, _ := dc.pods.GetStore().GetByKey(p.Namespace + "/" + p.Name); !exists {
			fl.created[p.Name] = p
			fl.since[p.Name] = now
		}
	}
}

func (dc *Controller) expectDeleted(key, name string, now time.Time) {
	dc.mu.Lock()
	defer dc.mu.Unlock()
	if fl := dc.inflight[key]; fl != nil {
		delete(fl.created, name)
		fl.deleted[name] = now
	}
}

func (dc *Controller) reconcile(ctx context.Context, key string) (controllers.Result, error) {
	obj, exists, err := dc.dss.GetStore().GetByKey(key)
	if err != nil {
		return controllers.Result{}, err
	}
	if !exists {
		dc.mu.Lock()
		delete(dc.inflight, key)
		dc.mu.Unlock()
		return controllers.Result{}, nil
	}
	ds := obj.(*appsv1.DaemonSet)
	if ds.DeletionTimestamp != nil {
		return controllers.Result{}, nil // the garbage collector deletes its pods
	}
	selector, err := metav1.LabelSelectorAsSelector(ds.Spec.Selector)
	if err != nil || selector.Empty() {
		dc.c.Recorder.Eventf(ds, corev1.EventTypeWarning, "SelectorParsingFailed", "invalid selector: %v", err)
		return controllers.Result{}, nil
	}
	if !selector.Matches(labels.Set(ds.Spec.Template.Labels)) {
		dc.c.Recorder.Eventf(ds, corev1.EventTypeWarning, "SelectorMismatch", "spec.template.metadata.labels do not match spec.selector")
		return controllers.Result{}, nil
	}
	now := dc.c.Clock.Now()
	hash, err := dc.syncRevisions(ctx, ds)
	if err != nil {
		return controllers.Result{}, err
	}
	pods, terminating, err := dc.livePods(key, ds, now)
	if err != nil {
		return controllers.Result{}, err
	}
	var nodes []*corev1.Node
	for _, o := range dc.nodes.GetStore().List() {
		nodes = append(nodes, o.(*corev1.Node))
	}
	sort.Slice(nodes, func(i, j int) bool { return nodes[i].Name < nodes[j].Name })
	byNode := map[string][]*corev1.Pod{}
	for _, p := range pods {
		n := TargetNode(p)
		byNode[n] = append(byNode[n], p)
	}
	for _, ps := range byNode {
		sort.Slice(ps, func(i, j int) bool { return olderPod(ps[i], ps[j]) })
	}

	deletes, creates, failed := dc.manage(ds, nodes, byNode, terminating, hash)
	for _, p := range failed {
		dc.c.Recorder.Eventf(ds, corev1.EventTypeWarning, "FailedDaemonPod", "Found failed daemon pod %s/%s on node %s, will try to kill it", p.Namespace, p.Name, TargetNode(p))
	}
	if len(deletes) == 0 && len(creates) == 0 && rollingUpdateStrategy(ds) {
		deletes, creates, err = dc.rollingUpdatePlan(ds, nodes, byNode, hash, now)
		if err != nil {
			dc.c.Recorder.Eventf(ds, corev1.EventTypeWarning, "InvalidUpdateStrategy", "%v", err)
		}
	}
	if err := dc.syncNodes(ctx, key, ds, deletes, creates, hash, now); err != nil {
		return controllers.Result{}, err
	}
	requeue, err := dc.updateStatus(ctx, ds, nodes, byNode, hash, now)
	if err != nil {
		return controllers.Result{}, err
	}
	return controllers.Result{RequeueAfter: requeue}, nil
}

func rollingUpdateStrategy(ds *appsv1.DaemonSet) bool {
	return ds.Spec.UpdateStrategy.Type != appsv1.OnDeleteDaemonSetStrategyType
}

// olderPod orders pods oldest first (then by name), the order in which Kubernetes keeps them.
func olderPod(a, b *corev1.Pod) bool {
	if !a.CreationTimestamp.Equal(&b.CreationTimestamp) {
		return a.CreationTimestamp.Before(&b.CreationTimestamp)
	}
	return a.Name < b.Name
}

// isUpdated reports whether pod belongs to the current template (Kubernetes' IsPodUpdated).
func isUpdated(pod *corev1.Pod, hash string, generation int64) bool {
	if h, ok := pod.Labels[appsv1.DefaultDaemonSetUniqueLabelKey]; ok {
		return h == hash
	}
	return pod.Labels[appsv1.DeprecatedTemplateGeneration] == fmt.Sprint(generation)
}

// manage decides the pods to delete and the nodes to start a pod on so that every eligible node
// runs the daemon and no other does; failed pods are deleted (and reported). As in Kubernetes, a
// node whose daemon pod is terminating gets its new one once the old one is gone, so that the two
// never run together there (host ports, node-wide agents).
func (dc *Controller) manage(ds *appsv1.DaemonSet, nodes []*corev1.Node, byNode map[string][]*corev1.Pod, terminating map[string]bool, hash string) (deletes []*corev1.Pod, creates []string, failed []*corev1.Pod) {
	surge := false
	if rollingUpdateStrategy(ds) {
		if s, _, err := updateBudget(ds, len(nodes)); err == nil && s > 0 {
			surge = true
		}
	}
	known := map[string]bool{}
	for _, node := range nodes {
		known[node.Name] = true
		shouldRun, shouldContinue := ShouldRun(node, ds)
		var running []*corev1.Pod
		nodeFailed := 0
		for _, p := range byNode[node.Name] {
			if p.Status.Phase == corev1.PodFailed {
				failed = append(failed, p)
				deletes = append(deletes, p)
				nodeFailed++
				continue
			}
			running = append(running, p)
		}
		switch {
		case shouldRun && len(running) == 0 && nodeFailed == 0 && !terminating[node.Name]:
			// (after a failed pod, the next sync starts the replacement, as Kubernetes does)
			creates = append(creates, node.Name)
		case !shouldContinue:
			deletes = append(deletes, running...)
		case len(running) > 1:
			deletes = append(deletes, excessPods(running, hash, ds.Generation, surge)...)
		}
	}
	for node, ps := range byNode {
		if !known[node] {
			deletes = append(deletes, ps...) // the node is gone (or the pod targets none)
		}
	}
	return deletes, creates, failed
}

// excessPods picks the extra pods of a node running several (oldest first): without surge the
// oldest stays; with surge one old and one updated pod may coexist during a rolling update.
func excessPods(running []*corev1.Pod, hash string, generation int64, surge bool) []*corev1.Pod {
	var out []*corev1.Pod
	keptOld, keptNew := false, false
	for _, p := range running {
		updated := isUpdated(p, hash, generation)
		switch {
		case !surge && !keptOld && !keptNew:
			keptOld = true
		case surge && updated && !keptNew:
			keptNew = true
		case surge && !updated && !keptOld:
			keptOld = true
		default:
			out = append(out, p)
		}
	}
	return out
}

func (dc *Controller) rollingUpdatePlan(ds *appsv1.DaemonSet, nodes []*corev1.Node, byNode map[string][]*corev1.Pod, hash string, now time.Time) ([]*corev1.Pod, []string, error) {
	desired := 0
	states := map[string][]podState{}
	byName := map[string]*corev1.Pod{}
	for _, node := range nodes {
		shouldRun, shouldContinue := ShouldRun(node, ds)
		if shouldRun {
			desired++
		}
		if !shouldContinue {
			continue
		}
		ps := byNode[node.Name]
		if !shouldRun && len(ps) == 0 {
			continue
		}
		states[node.Name] = []podState{}
		for _, p := range ps {
			byName[p.Name] = p
			states[node.Name] = append(states[node.Name], podState{
				Name: p.Name, Updated: isUpdated(p, hash, ds.Generation),
				Available: podAvailable(p, ds.Spec.MinReadySeconds, metav1.NewTime(now)),
			})
		}
	}
	maxSurge, maxUnavailable, err := updateBudget(ds, desired)
	if err != nil {
		return nil, nil, err
	}
	deleteNames, creates := rollingUpdate(states, maxSurge, maxUnavailable)
	deletes := make([]*corev1.Pod, 0, len(deleteNames))
	for _, n := range deleteNames {
		deletes = append(deletes, byName[n])
	}
	return deletes, creates, nil
}

func secondsDuration(s int32) time.Duration { return time.Duration(s) * time.Second }
