package nodelifecycle

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/bosun-gitops/bosun/internal/resource"
	"github.com/bosun-gitops/bosun/operator/controllers"
	"github.com/bosun-gitops/bosun/operator/store"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"
)

// Name is the controller's name.
const Name = "nodelifecycle"

// LeaseNamespace holds one Lease per node, named after the node and renewed by its agent.
const LeaseNamespace = corev1.NamespaceNodeLease

// MonitorPeriod is how often every node's heartbeat is checked (Kubernetes' node-monitor-period).
const MonitorPeriod = 5 * time.Second

// Condition reasons and messages, as Kubernetes words them.
const (
	ReasonStatusUnknown  = "NodeStatusUnknown"
	MessageStatusUnknown = "Bosun agent stopped posting node status."
	ReasonLeaseRenewed   = "NodeStatusRecovered"
	podsByNodeIndex      = "nodelifecycle.bosun.dev/pods-by-node"
)

// Controller marks nodes with expired leases NotReady, taints them and evicts their pods.
type Controller struct {
	c      *controllers.Context
	log    *slog.Logger
	queue  *controllers.Queue
	nodes  cache.SharedIndexInformer
	leases cache.SharedIndexInformer
	pods   cache.SharedIndexInformer

	mu     sync.Mutex
	health map[string]*nodeHealth
}

// nodeHealth is what the controller last saw of a node's heartbeat.
type nodeHealth struct {
	renewTime metav1.MicroTime // the lease's renewTime when it last changed
	probe     time.Time        // when (on our clock) it last changed, or when we first saw the node
	// renewed is set once renewTime changed while we watched: the agent is alive now.
	renewed bool
}

var _ controllers.Controller = (*Controller)(nil)

// New builds the node lifecycle controller.
func New(c *controllers.Context) (controllers.Controller, error) {
	nc := &Controller{
		c:      c,
		log:    c.Logger.With("component", Name),
		nodes:  c.Informers.For(resource.Nodes),
		leases: c.Informers.For(resource.Leases),
		pods:   c.Informers.For(resource.Pods),
		health: map[string]*nodeHealth{},
	}
	nc.queue = controllers.NewQueue(Name, c.Logger, nc.reconcile)
	if err := addIndexer(nc.pods, podsByNodeIndex, func(obj any) ([]string, error) {
		if p, ok := obj.(*corev1.Pod); ok && p.Spec.NodeName != "" {
			return []string{p.Spec.NodeName}, nil
		}
		return nil, nil
	}); err != nil {
		return nil, err
	}
	nc.nodes.AddEventHandler(nc.queue.Handler())
	nc.leases.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    nc.enqueueLease,
		UpdateFunc: func(_, obj any) { nc.enqueueLease(obj) },
		DeleteFunc: nc.enqueueLease,
	})
	nc.pods.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: nc.enqueuePodNode,
		UpdateFunc: func(old, cur any) {
			if o, ok := old.(*corev1.Pod); ok {
				if c, ok := cur.(*corev1.Pod); ok && o.Spec.NodeName == c.Spec.NodeName {
					return
				}
			}
			nc.enqueuePodNode(cur)
		},
	})
	return nc, nil
}

func addIndexer(inf cache.SharedIndexInformer, name string, fn cache.IndexFunc) error {
	if _, ok := inf.GetIndexer().GetIndexers()[name]; ok {
		return nil
	}
	if err := inf.AddIndexers(cache.Indexers{name: fn}); err != nil {
		return fmt.Errorf("adding index %s: %w", name, err)
	}
	return nil
}

func (nc *Controller) enqueueLease(obj any) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	if l, ok := obj.(*coordinationv1.Lease); ok && l.Namespace == LeaseNamespace {
		nc.queue.Add(l.Name)
	}
}

func (nc *Controller) enqueuePodNode(obj any) {
	if p, ok := obj.(*corev1.Pod); ok && p.Spec.NodeName != "" {
		nc.queue.Add(p.Spec.NodeName)
	}
}

// Name implements controllers.Controller.
func (nc *Controller) Name() string { return Name }

// Run checks every node each MonitorPeriod (on the context's clock) and on every change.
func (nc *Controller) Run(ctx context.Context) error {
	ticker := nc.c.Clock.NewTicker(MonitorPeriod)
	defer ticker.Stop()
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-ticker.C():
				for _, key := range nc.nodes.GetStore().ListKeys() {
					nc.queue.Add(key)
				}
			}
		}
	}()
	nc.queue.Run(ctx, nc.c.Workers)
	return nil
}

// observe records the node's lease and returns when its heartbeat last changed (on our clock)
// and whether it changed since the controller first saw the node.
func (nc *Controller) observe(name string, now time.Time) (probe time.Time, renewed bool) {
	var renew metav1.MicroTime
	if obj, ok, _ := nc.leases.GetIndexer().GetByKey(LeaseNamespace + "/" + name); ok {
		l := obj.(*coordinationv1.Lease)
		switch {
		case l.Spec.RenewTime != nil:
			renew = *l.Spec.RenewTime
		case l.Spec.AcquireTime != nil:
			renew = *l.Spec.AcquireTime
		}
	}
	nc.mu.Lock()
	defer nc.mu.Unlock()
	h, ok := nc.health[name]
	switch {
	case !ok:
		// First sight (a new node, or the operator restarted): a fresh grace period from now, as
		// Kubernetes gives, whatever renewTime says. An operator that was down longer than the
		// grace period would otherwise find every lease old and mark every node NotReady at once,
		// although their agents kept renewing on clocks it does not share.
		h = &nodeHealth{renewTime: renew, probe: now}
		nc.health[name] = h
	case !h.renewTime.Equal(&renew):
		h.renewTime, h.probe, h.renewed = renew, now, true
	}
	return h.probe, h.renewed
}

func (nc *Controller) reconcile(ctx context.Context, name string) (controllers.Result, error) {
	obj, exists, err := nc.nodes.GetIndexer().GetByKey(name)
	if err != nil {
		return controllers.Result{}, err
	}
	if !exists {
		nc.mu.Lock()
		delete(nc.health, name)
		nc.mu.Unlock()
		return controllers.Result{}, nil
	}
	node := obj.(*corev1.Node)
	spec := nc.c.Cluster().Spec
	grace := spec.NodeMonitorGracePeriod.Duration
	now := nc.c.Clock.Now()
	probe, renewed := nc.observe(name, now)
	expired := now.Sub(probe) > grace
	if !renewed && markedUnknown(node) {
		// Marked NotReady before we first saw it (by a previous operator) and silent since: it
		// stays NotReady with its taints and their age, so evictions keep their schedule.
		expired = true
	}

	node, err = nc.updateReadyCondition(ctx, node, expired, now)
	if err != nil {
		return controllers.Result{}, err
	}
	taintKey := ""
	if expired {
		taintKey = corev1.TaintNodeUnreachable
	} else if cond := readyCondition(node); cond != nil && cond.Status == corev1.ConditionFalse {
		taintKey = corev1.TaintNodeNotReady
	}
	node, err = nc.updateTaints(ctx, node, taintKey, now)
	if err != nil {
		return controllers.Result{}, err
	}
	var next time.Duration
	if !expired {
		next = probe.Add(grace).Sub(now) + time.Second
	}
	if taintKey != "" {
		wait, err := nc.handlePods(ctx, node, taintKey, spec.PodEvictionTimeout.Duration, now)
		if err != nil {
			return controllers.Result{}, err
		}
		if wait > 0 && (next == 0 || wait < next) {
			next = wait
		}
	}
	return controllers.Result{RequeueAfter: next}, nil
}

func readyCondition(node *corev1.Node) *corev1.NodeCondition {
	for i := range node.Status.Conditions {
		if node.Status.Conditions[i].Type == corev1.NodeReady {
			return &node.Status.Conditions[i]
		}
	}
	return nil
}

// markedUnknown reports whether the node's Ready condition is the Unknown this controller sets.
func markedUnknown(node *corev1.Node) bool {
	c := readyCondition(node)
	return c != nil && c.Status == corev1.ConditionUnknown && c.Reason == ReasonStatusUnknown
}

// updateReadyCondition sets every condition to Unknown when the heartbeat expired, and restores
// Ready=True when a node we marked Unknown heartbeats again (its agent then posts its own status).
func (nc *Controller) updateReadyCondition(ctx context.Context, node *corev1.Node, expired bool, now time.Time) (*corev1.Node, error) {
	ready := readyCondition(node)
	ts := metav1.NewTime(now)
	var status string
	switch {
	case expired && (ready == nil || ready.Status != corev1.ConditionUnknown):
		next := node.DeepCopy()
		if readyCondition(next) == nil {
			next.Status.Conditions = append(next.Status.Conditions, corev1.NodeCondition{Type: corev1.NodeReady})
		}
		for i := range next.Status.Conditions {
			c := &next.Status.Conditions[i]
			if c.Status == corev1.ConditionUnknown {
				continue
			}
			c.Status, c.Reason, c.Message = corev1.ConditionUnknown, ReasonStatusUnknown, MessageStatusUnknown
			c.LastTransitionTime = ts
		}
		node, status = next, "NodeNotReady"
	case !expired && markedUnknown(node):
		next := node.DeepCopy()
		c := readyCondition(next)
		c.Status, c.Reason, c.Message = corev1.ConditionTrue, ReasonLeaseRenewed, "Node lease renewed: the agent is posting heartbeats again."
		c.LastTransitionTime, c.LastHeartbeatTime = ts, ts
		node, status = next, "NodeReady"
	default:
		return node, nil
	}
	out, err := nc.c.Store.UpdateStatus(ctx, resource.Nodes, node)
	if err != nil {
		return nil, fmt.Errorf("updating status of node %s: %w", node.Name, err)
	}
	nc.log.Info("node status changed", "node", node.Name, "status", status)
	nc.c.Recorder.Eventf(out, corev1.EventTypeNormal, status, "Node %s status is now: %s", node.Name, status)
	return out.(*corev1.Node), nil
}

// updateTaints makes the node carry exactly the NoSchedule and NoExecute taints of key (none
// when key is empty) among the taints this controller manages, keeping their timeAdded.
func (nc *Controller) updateTaints(ctx context.Context, node *corev1.Node, key string, now time.Time) (*corev1.Node, error) {
	ts := metav1.NewTime(now)
	var taints []corev1.Taint
	have := map[corev1.Taint]bool{}
	changed := false
	for _, t := range node.Spec.Taints {
		if managedTaint(t.Key) {
			if t.Key != key || (t.Effect != corev1.TaintEffectNoSchedule && t.Effect != corev1.TaintEffectNoExecute) {
				changed = true
				continue
			}
			have[corev1.Taint{Key: t.Key, Effect: t.Effect}] = true
		}
		taints = append(taints, t)
	}
	if key != "" {
		for _, eff := range []corev1.TaintEffect{corev1.TaintEffectNoSchedule, corev1.TaintEffectNoExecute} {
			if !have[corev1.Taint{Key: key, Effect: eff}] {
				taints = append(taints, corev1.Taint{Key: key, Effect: eff, TimeAdded: &ts})
				changed = true
			}
		}
	}
	if !changed {
		return node, nil
	}
	next := node.DeepCopy()
	next.Spec.Taints = taints
	out, err := nc.c.Store.Update(ctx, resource.Nodes, next)
	if err != nil {
		return nil, fmt.Errorf("updating taints of node %s: %w", node.Name, err)
	}
	if key != "" {
		nc.log.Info("node tainted", "node", node.Name, "taint", key)
	} else {
		nc.log.Info("node taints removed", "node", node.Name)
	}
	return out.(*corev1.Node), nil
}

func managedTaint(key string) bool {
	return key == corev1.TaintNodeUnreachable || key == corev1.TaintNodeNotReady
}

// handlePods marks the node's pods not ready and evicts those whose toleration of the NoExecute
// taint ran out; it returns how long until the next eviction is due (0 = none pending).
func (nc *Controller) handlePods(ctx context.Context, node *corev1.Node, key string, defaultTimeout time.Duration, now time.Time) (time.Duration, error) {
	var taint *corev1.Taint
	for i := range node.Spec.Taints {
		if t := &node.Spec.Taints[i]; t.Key == key && t.Effect == corev1.TaintEffectNoExecute {
			taint = t
		}
	}
	if taint == nil {
		return 0, nil
	}
	since := now
	if taint.TimeAdded != nil {
		since = taint.TimeAdded.Time
	}
	objs, err := nc.pods.GetIndexer().ByIndex(podsByNodeIndex, node.Name)
	if err != nil {
		return 0, err
	}
	var next time.Duration
	for _, obj := range objs {
		pod := obj.(*corev1.Pod)
		if pod.DeletionTimestamp != nil || pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
			continue
		}
		after, forever := EvictionDelay(pod.Spec.Tolerations, taint, defaultTimeout)
		if !forever {
			if due := since.Add(after); !now.Before(due) {
				if err := nc.evict(ctx, pod); err != nil {
					return 0, err
				}
				continue
			} else if wait := due.Sub(now); next == 0 || wait < next {
				next = wait
			}
		}
		if err := nc.markNotReady(ctx, pod, now); err != nil {
			return 0, err
		}
	}
	return next, nil
}

// EvictionDelay says how long a pod with tolerations stays on a node after taint (NoExecute) was
// added: the smallest tolerationSeconds of the tolerations that match, forever when they match
// without tolerationSeconds, and defaultTimeout when none matches (Kubernetes' admission gives
// every pod a 300 s toleration for the not-ready and unreachable taints; Bosun applies
// podEvictionTimeout in its place).
func EvictionDelay(tolerations []corev1.Toleration, taint *corev1.Taint, defaultTimeout time.Duration) (after time.Duration, forever bool) {
	matched := false
	minSeconds := int64(-1)
	for i := range tolerations {
		t := &tolerations[i]
		if !t.ToleratesTaint(klog.Background(), taint, false) {
			continue
		}
		matched = true
		if t.TolerationSeconds != nil {
			s := max(*t.TolerationSeconds, 0)
			if minSeconds < 0 || s < minSeconds {
				minSeconds = s
			}
		}
	}
	switch {
	case !matched:
		return defaultTimeout, false
	case minSeconds < 0:
		return 0, true
	default:
		return time.Duration(minSeconds) * time.Second, false
	}
}

func (nc *Controller) evict(ctx context.Context, pod *corev1.Pod) error {
	uid := pod.UID
	_, err := nc.c.Store.Delete(ctx, resource.Pods, pod.Namespace, pod.Name,
		store.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("evicting pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	nc.log.Info("pod evicted", "pod", pod.Namespace+"/"+pod.Name, "node", pod.Spec.NodeName)
	nc.c.Recorder.Eventf(pod, corev1.EventTypeNormal, "TaintManagerEviction", "Marking for deletion Pod %s/%s", pod.Namespace, pod.Name)
	return nil
}

// markNotReady sets the pod's Ready condition to False, as Kubernetes does for pods on a node
// that stopped reporting.
func (nc *Controller) markNotReady(ctx context.Context, pod *corev1.Pod, now time.Time) error {
	next := pod.DeepCopy()
	found := false
	for i := range next.Status.Conditions {
		c := &next.Status.Conditions[i]
		if c.Type != corev1.PodReady {
			continue
		}
		if c.Status == corev1.ConditionFalse {
			return nil
		}
		found = true
		c.Status, c.Reason, c.Message = corev1.ConditionFalse, "NodeNotReady", "The node is not ready."
		c.LastTransitionTime = metav1.NewTime(now)
	}
	if !found {
		next.Status.Conditions = append(next.Status.Conditions, corev1.PodCondition{
			Type: corev1.PodReady, Status: corev1.ConditionFalse, Reason: "NodeNotReady",
			Message: "The node is not ready.", LastTransitionTime: metav1.NewTime(now),
		})
	}
	if _, err := nc.c.Store.UpdateStatus(ctx, resource.Pods, next); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("marking pod %s/%s not ready: %w", pod.Namespace, pod.Name, err)
	}
	nc.c.Recorder.Eventf(pod, corev1.EventTypeWarning, "NodeNotReady", "Node is not ready")
	return nil
}
