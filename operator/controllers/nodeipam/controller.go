package nodeipam

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"time"

	"github.com/bosun-gitops/bosun/internal/resource"
	"github.com/bosun-gitops/bosun/operator/controllers"
	repolayout "github.com/bosun-gitops/bosun/repo-layout"
	bosunv1 "github.com/bosun-gitops/bosun/repo-layout/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"
)

// Name is the controller's name.
const Name = "nodeipam"

// Reasons of the events and of the NetworkUnavailable condition.
const (
	ReasonCIDRNotAvailable = "CIDRNotAvailable"
	ReasonCIDRAssigned     = "CIDRAssigned"
	// retryFull is how often a node waiting for a CIDR is looked at again.
	retryFull = 30 * time.Second
)

// Controller assigns pod CIDRs to nodes.
type Controller struct {
	c        *controllers.Context
	log      *slog.Logger
	queue    *controllers.Queue
	nodes    cache.SharedIndexInformer
	machines cache.SharedIndexInformer
	alloc    *Allocator // built in Run, used only by the single worker
}

var _ controllers.Controller = (*Controller)(nil)

// New builds the node IPAM controller.
func New(c *controllers.Context) (controllers.Controller, error) {
	ic := &Controller{
		c:        c,
		log:      c.Logger.With("component", Name),
		nodes:    c.Informers.For(resource.Nodes),
		machines: c.Informers.For(resource.Machines),
	}
	ic.queue = controllers.NewQueue(Name, c.Logger, ic.reconcile)
	ic.nodes.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    ic.queue.Enqueue,
		UpdateFunc: func(_, obj any) { ic.queue.Enqueue(obj) },
		DeleteFunc: func(obj any) {
			ic.queue.Enqueue(obj)
			// A freed CIDR may serve a node that found the range full.
			for _, o := range ic.nodes.GetStore().List() {
				if n := o.(*corev1.Node); n.Spec.PodCIDR == "" {
					ic.queue.Add(n.Name)
				}
			}
		},
	})
	ic.machines.AddEventHandler(ic.queue.Handler())
	return ic, nil
}

// Name implements controllers.Controller.
func (ic *Controller) Name() string { return Name }

// Run rebuilds the allocations from the stored nodes, then assigns CIDRs until ctx ends.
func (ic *Controller) Run(ctx context.Context) error {
	spec := ic.c.Cluster().Spec
	nodeBits := int(spec.NodeCIDRMaskSize)
	if nodeBits == 0 {
		nodeBits = repolayout.DefaultNodeCIDRMaskSize
	}
	alloc, err := NewAllocator(spec.PodCIDR, nodeBits)
	if err == nil && alloc.cluster.Addr().Is6() {
		alloc, err = NewAllocator(spec.PodCIDR, 64)
	}
	if err != nil {
		return fmt.Errorf("node IPAM: %w", err)
	}
	// Oldest nodes first, so that if two nodes claim one CIDR the older keeps it.
	objs := ic.nodes.GetStore().List()
	sort.Slice(objs, func(i, j int) bool {
		a, b := objs[i].(*corev1.Node), objs[j].(*corev1.Node)
		if !a.CreationTimestamp.Equal(&b.CreationTimestamp) {
			return a.CreationTimestamp.Before(&b.CreationTimestamp)
		}
		return a.Name < b.Name
	})
	for _, o := range objs {
		n := o.(*corev1.Node)
		if n.Spec.PodCIDR == "" {
			continue
		}
		if err := alloc.Occupy(n.Name, n.Spec.PodCIDR); err != nil {
			ic.log.Warn("node has a conflicting pod CIDR", "node", n.Name, "err", err)
			ic.c.Recorder.Eventf(n, corev1.EventTypeWarning, ReasonCIDRNotAvailable, "Node %s: %v", n.Name, err)
		}
	}
	for _, o := range ic.machines.GetStore().List() {
		m := o.(*bosunv1.Machine)
		if _, has := alloc.Owned(m.Name); !has && m.Spec.PodCIDR != "" {
			if err := alloc.Occupy(m.Name, m.Spec.PodCIDR); err != nil {
				ic.log.Warn("machine pins a pod CIDR in use", "machine", m.Name, "err", err)
			}
		}
	}
	ic.alloc = alloc
	ic.log.Info("node IPAM ready", "podCIDR", spec.PodCIDR, "nodeBits", alloc.bits, "assigned", len(alloc.owned))
	ic.queue.Run(ctx, 1)
	return nil
}

func (ic *Controller) pinned(name string) string {
	if obj, ok, _ := ic.machines.GetStore().GetByKey(name); ok {
		return obj.(*bosunv1.Machine).Spec.PodCIDR
	}
	return ""
}

func (ic *Controller) reconcile(ctx context.Context, name string) (controllers.Result, error) {
	obj, exists, err := ic.nodes.GetStore().GetByKey(name)
	if err != nil {
		return controllers.Result{}, err
	}
	pin := ic.pinned(name)
	if !exists {
		ic.alloc.Release(name)
		if pin != "" {
			_ = ic.alloc.Occupy(name, pin) // keep the machine's pinned CIDR reserved
		}
		return controllers.Result{}, nil
	}
	node := obj.(*corev1.Node)
	if node.Spec.PodCIDR != "" {
		if err := ic.alloc.Occupy(name, node.Spec.PodCIDR); err != nil {
			ic.c.Recorder.Eventf(node, corev1.EventTypeWarning, ReasonCIDRNotAvailable, "Node %s: %v", name, err)
		}
		return controllers.Result{}, nil
	}
	var cidr string
	if pin != "" {
		if err := ic.alloc.Occupy(name, pin); err != nil {
			return ic.unavailable(ctx, node, fmt.Errorf("machine %s pins %s: %w", name, pin, err))
		}
		cidr = pin
	} else if cidr, err = ic.alloc.Allocate(name); err != nil {
		return ic.unavailable(ctx, node, err)
	}
	next := node.DeepCopy()
	next.Spec.PodCIDR = cidr
	next.Spec.PodCIDRs = []string{cidr}
	out, err := ic.c.Store.Update(ctx, resource.Nodes, next)
	if err != nil {
		return controllers.Result{}, fmt.Errorf("assigning pod CIDR %s to node %s: %w", cidr, name, err)
	}
	ic.log.Info("pod CIDR assigned", "node", name, "podCIDR", cidr)
	ic.c.Recorder.Eventf(out, corev1.EventTypeNormal, ReasonCIDRAssigned, "Assigned pod CIDR %s to node %s", cidr, name)
	if err := ic.setNetworkCondition(ctx, out.(*corev1.Node), corev1.ConditionFalse, ReasonCIDRAssigned, "Pod CIDR "+cidr+" assigned."); err != nil {
		return controllers.Result{}, err
	}
	return controllers.Result{}, nil
}

// unavailable reports a node that cannot get a CIDR; it is looked at again later.
func (ic *Controller) unavailable(ctx context.Context, node *corev1.Node, cause error) (controllers.Result, error) {
	ic.log.Warn("no pod CIDR for node", "node", node.Name, "err", cause)
	ic.c.Recorder.Eventf(node, corev1.EventTypeWarning, ReasonCIDRNotAvailable, "Node %s status is now: CIDRNotAvailable (%v)", node.Name, cause)
	if err := ic.setNetworkCondition(ctx, node, corev1.ConditionTrue, ReasonCIDRNotAvailable, cause.Error()); err != nil {
		return controllers.Result{}, err
	}
	return controllers.Result{RequeueAfter: retryFull}, nil
}

// setNetworkCondition writes the NetworkUnavailable condition. Setting it False is done only to
// clear one this controller set.
func (ic *Controller) setNetworkCondition(ctx context.Context, node *corev1.Node, status corev1.ConditionStatus, reason, msg string) error {
	next := node.DeepCopy()
	var cond *corev1.NodeCondition
	for i := range next.Status.Conditions {
		if next.Status.Conditions[i].Type == corev1.NodeNetworkUnavailable {
			cond = &next.Status.Conditions[i]
		}
	}
	switch {
	case cond == nil && status == corev1.ConditionFalse:
		return nil
	case cond != nil && status == corev1.ConditionFalse && cond.Reason != ReasonCIDRNotAvailable:
		return nil
	case cond != nil && cond.Status == status && cond.Reason == reason && cond.Message == msg:
		return nil
	case cond == nil:
		next.Status.Conditions = append(next.Status.Conditions, corev1.NodeCondition{Type: corev1.NodeNetworkUnavailable})
		cond = &next.Status.Conditions[len(next.Status.Conditions)-1]
	}
	now := metav1.NewTime(ic.c.Clock.Now())
	if cond.Status != status {
		cond.LastTransitionTime = now
	}
	cond.Status, cond.Reason, cond.Message, cond.LastHeartbeatTime = status, reason, msg, now
	if _, err := ic.c.Store.UpdateStatus(ctx, resource.Nodes, next); err != nil {
		return fmt.Errorf("updating NetworkUnavailable of node %s: %w", node.Name, err)
	}
	return nil
}
