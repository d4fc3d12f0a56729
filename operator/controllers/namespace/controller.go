package namespace

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/bosun-gitops/bosun/internal/resource"
	"github.com/bosun-gitops/bosun/operator/controllers"
	"github.com/bosun-gitops/bosun/operator/store"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"
)

// Name is the controller's name.
const Name = "namespace"

// Finalizer is the finalizer that holds a deleted namespace until its content is gone.
const Finalizer = string(corev1.FinalizerKubernetes)

// recheck is how soon a terminating namespace whose content is not gone yet (objects with
// finalizers of their own) is looked at again.
const recheck = time.Second

// Controller finalizes deleted namespaces.
type Controller struct {
	c     *controllers.Context
	log   *slog.Logger
	queue *controllers.Queue
	nss   cache.SharedIndexInformer

	mu   sync.Mutex
	gone map[string]bool // namespaces seen disappearing whose content is not cleaned yet
}

var _ controllers.Controller = (*Controller)(nil)

// New builds the namespace controller.
func New(c *controllers.Context) (controllers.Controller, error) {
	nc := &Controller{c: c, log: c.Logger.With("component", Name), nss: c.Informers.For(resource.Namespaces), gone: map[string]bool{}}
	nc.queue = controllers.NewQueue(Name, c.Logger, nc.reconcile)
	nc.nss.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    nc.queue.Enqueue,
		UpdateFunc: func(_, obj any) { nc.queue.Enqueue(obj) },
		DeleteFunc: func(obj any) {
			if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = t.Obj
			}
			if ns, ok := obj.(*corev1.Namespace); ok {
				nc.mu.Lock()
				nc.gone[ns.Name] = true
				nc.mu.Unlock()
				nc.queue.Add(ns.Name)
			}
		},
	})
	return nc, nil
}

// Name implements controllers.Controller.
func (nc *Controller) Name() string { return Name }

// Run finalizes namespaces until ctx ends.
func (nc *Controller) Run(ctx context.Context) error {
	nc.queue.Run(ctx, nc.c.Workers)
	return nil
}

func (nc *Controller) reconcile(ctx context.Context, name string) (controllers.Result, error) {
	obj, exists, err := nc.nss.GetStore().GetByKey(name)
	if err != nil {
		return controllers.Result{}, err
	}
	if !exists {
		return nc.cleanVanished(ctx, name)
	}
	ns := obj.(*corev1.Namespace)
	if ns.DeletionTimestamp == nil {
		return controllers.Result{}, nc.ensureActive(ctx, ns)
	}
	return nc.finalize(ctx, ns)
}

// ensureActive gives a live namespace the finalizer and phase Active.
func (nc *Controller) ensureActive(ctx context.Context, ns *corev1.Namespace) error {
	if !has(ns.Finalizers, Finalizer) || !hasFinalizerName(ns.Spec.Finalizers, corev1.FinalizerKubernetes) {
		next := ns.DeepCopy()
		if !has(next.Finalizers, Finalizer) {
			next.Finalizers = append(next.Finalizers, Finalizer)
		}
		if !hasFinalizerName(next.Spec.Finalizers, corev1.FinalizerKubernetes) {
			next.Spec.Finalizers = append(next.Spec.Finalizers, corev1.FinalizerKubernetes)
		}
		out, err := nc.c.Store.Update(ctx, resource.Namespaces, next)
		if err != nil {
			if apierrors.IsNotFound(err) {
				return nil
			}
			return fmt.Errorf("adding finalizer to namespace %s: %w", ns.Name, err)
		}
		ns = out.(*corev1.Namespace)
	}
	if ns.Status.Phase == "" {
		next := ns.DeepCopy()
		next.Status.Phase = corev1.NamespaceActive
		if _, err := nc.c.Store.UpdateStatus(ctx, resource.Namespaces, next); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("setting namespace %s active: %w", ns.Name, err)
		}
	}
	return nil
}

// finalize deletes a terminating namespace's content, then its finalizer.
func (nc *Controller) finalize(ctx context.Context, ns *corev1.Namespace) (controllers.Result, error) {
	if ns.Status.Phase != corev1.NamespaceTerminating {
		next := ns.DeepCopy()
		next.Status.Phase = corev1.NamespaceTerminating
		out, err := nc.c.Store.UpdateStatus(ctx, resource.Namespaces, next)
		if err != nil {
			if apierrors.IsNotFound(err) {
				return controllers.Result{}, nil
			}
			return controllers.Result{}, fmt.Errorf("marking namespace %s terminating: %w", ns.Name, err)
		}
		ns = out.(*corev1.Namespace)
		nc.log.Info("namespace terminating", "namespace", ns.Name)
		nc.c.Recorder.Eventf(ns, corev1.EventTypeNormal, "NamespaceTerminating", "Deleting every object in namespace %s", ns.Name)
	}
	remaining, err := nc.deleteContent(ctx, ns.Name)
	if err != nil {
		return controllers.Result{}, err
	}
	if len(remaining) > 0 {
		if err := nc.setContentCondition(ctx, ns, remaining); err != nil {
			return controllers.Result{}, err
		}
		return controllers.Result{RequeueAfter: recheck}, nil
	}
	if !has(ns.Finalizers, Finalizer) && !hasFinalizerName(ns.Spec.Finalizers, corev1.FinalizerKubernetes) {
		return controllers.Result{}, nil // another finalizer holds it; not ours to remove
	}
	next := ns.DeepCopy()
	next.Finalizers = without(next.Finalizers, Finalizer)
	var spec []corev1.FinalizerName
	for _, f := range next.Spec.Finalizers {
		if f != corev1.FinalizerKubernetes {
			spec = append(spec, f)
		}
	}
	next.Spec.Finalizers = spec
	if _, err := nc.c.Store.Update(ctx, resource.Namespaces, next); err != nil && !apierrors.IsNotFound(err) {
		return controllers.Result{}, fmt.Errorf("removing finalizer of namespace %s: %w", ns.Name, err)
	}
	nc.log.Info("namespace content deleted", "namespace", ns.Name)
	return controllers.Result{}, nil
}

// cleanVanished deletes the content of a namespace that disappeared without finalizer.
func (nc *Controller) cleanVanished(ctx context.Context, name string) (controllers.Result, error) {
	nc.mu.Lock()
	gone := nc.gone[name]
	nc.mu.Unlock()
	if !gone {
		return controllers.Result{}, nil
	}
	if _, err := nc.c.Store.Get(ctx, resource.Namespaces, "", name); err == nil {
		return controllers.Result{}, nil // recreated: the informer will tell us
	} else if !apierrors.IsNotFound(err) {
		return controllers.Result{}, fmt.Errorf("looking up namespace %s: %w", name, err)
	}
	remaining, err := nc.deleteContent(ctx, name)
	if err != nil {
		return controllers.Result{}, err
	}
	if len(remaining) > 0 {
		return controllers.Result{RequeueAfter: recheck}, nil
	}
	nc.mu.Lock()
	delete(nc.gone, name)
	nc.mu.Unlock()
	nc.log.Info("content of deleted namespace removed", "namespace", name)
	return controllers.Result{}, nil
}

// deleteContent deletes every object of every namespaced kind in namespace and returns how many
// of each kind are still there (objects held by finalizers).
func (nc *Controller) deleteContent(ctx context.Context, namespace string) (map[string]int, error) {
	remaining := map[string]int{}
	for _, res := range resource.All {
		if !res.Namespaced {
			continue
		}
		l, err := nc.c.Store.List(ctx, res, namespace, store.ListOptions{})
		if err != nil {
			return nil, fmt.Errorf("listing %s in namespace %s: %w", res, namespace, err)
		}
		for _, obj := range l.Items {
			if obj.GetDeletionTimestamp() == nil {
				uid := obj.GetUID()
				out, err := nc.c.Store.Delete(ctx, res, namespace, obj.GetName(), store.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}})
				if apierrors.IsNotFound(err) {
					continue
				}
				if err != nil {
					return nil, fmt.Errorf("deleting %s %s/%s: %w", res, namespace, obj.GetName(), err)
				}
				if out == nil || out.GetDeletionTimestamp() == nil {
					continue // gone now
				}
			}
			remaining[res.String()]++
		}
	}
	return remaining, nil
}

func (nc *Controller) setContentCondition(ctx context.Context, ns *corev1.Namespace, remaining map[string]int) error {
	var parts []string
	for r, n := range remaining {
		parts = append(parts, fmt.Sprintf("%s has %d resource instances", r, n))
	}
	sort.Strings(parts)
	msg := "Some resources are remaining: " + strings.Join(parts, ", ")
	next := ns.DeepCopy()
	cond := corev1.NamespaceCondition{Type: corev1.NamespaceContentRemaining, Status: corev1.ConditionTrue,
		Reason: "SomeResourcesRemain", Message: msg, LastTransitionTime: metav1.NewTime(nc.c.Clock.Now())}
	replaced := false
	for i, c := range next.Status.Conditions {
		if c.Type == cond.Type {
			if c.Message == msg && c.Status == cond.Status {
				return nil
			}
			next.Status.Conditions[i], replaced = cond, true
		}
	}
	if !replaced {
		next.Status.Conditions = append(next.Status.Conditions, cond)
	}
	if _, err := nc.c.Store.UpdateStatus(ctx, resource.Namespaces, next); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("updating conditions of namespace %s: %w", ns.Name, err)
	}
	return nil
}

func has(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func hasFinalizerName(list []corev1.FinalizerName, f corev1.FinalizerName) bool {
	for _, x := range list {
		if x == f {
			return true
		}
	}
	return false
}

func without(list []string, s string) []string {
	var out []string
	for _, x := range list {
		if x != s {
			out = append(out, x)
		}
	}
	return out
}
