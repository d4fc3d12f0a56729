package endpoints

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"reflect"

	"github.com/bosun-gitops/bosun/internal/resource"
	"github.com/bosun-gitops/bosun/operator/controllers"
	"github.com/bosun-gitops/bosun/operator/store"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	listersv1 "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
)

// Name is the controller's name.
const Name = "endpoints"

// Event reasons, Kubernetes' endpoint controller's.
const (
	ReasonFailedToCreateEndpoint = "FailedToCreateEndpoint"
	ReasonFailedToUpdateEndpoint = "FailedToUpdateEndpoint"
)

// Controller keeps the Endpoints of Services with a selector. See the package documentation.
type Controller struct {
	c         *controllers.Context
	log       *slog.Logger
	queue     *controllers.Queue
	services  listersv1.ServiceLister
	pods      listersv1.PodLister
	endpoints listersv1.EndpointsLister
}

var _ controllers.Controller = (*Controller)(nil)

// New returns the Endpoints controller.
func New(c *controllers.Context) (controllers.Controller, error) {
	ctl := &Controller{c: c, log: c.Logger.With("component", Name)}
	ctl.queue = controllers.NewQueue(Name, c.Logger, ctl.reconcile)
	svcInf := c.Informers.For(resource.Services)
	podInf := c.Informers.For(resource.Pods)
	epInf := c.Informers.For(resource.Endpoints)
	ctl.services = listersv1.NewServiceLister(svcInf.GetIndexer())
	ctl.pods = listersv1.NewPodLister(podInf.GetIndexer())
	ctl.endpoints = listersv1.NewEndpointsLister(epInf.GetIndexer())
	if _, err := svcInf.AddEventHandler(ctl.queue.Handler()); err != nil {
		return nil, fmt.Errorf("watching services: %w", err)
	}
	// Every Endpoints is looked at once at start (leftovers of deleted Services are removed) and
	// whenever somebody else changes or deletes one.
	if _, err := epInf.AddEventHandler(ctl.queue.Handler()); err != nil {
		return nil, fmt.Errorf("watching endpoints: %w", err)
	}
	_, err := podInf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { ctl.enqueueServicesOf(obj, nil) },
		UpdateFunc: ctl.onPodUpdate,
		DeleteFunc: func(obj any) { ctl.enqueueServicesOf(obj, nil) },
	})
	if err != nil {
		return nil, fmt.Errorf("watching pods: %w", err)
	}
	return ctl, nil
}

// Name implements controllers.Controller.
func (ctl *Controller) Name() string { return Name }

// Run reconciles until ctx ends.
func (ctl *Controller) Run(ctx context.Context) error {
	ctl.queue.Run(ctx, ctl.c.Workers)
	return nil
}

func asPod(obj any) (*corev1.Pod, bool) {
	if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = tomb.Obj
	}
	pod, ok := obj.(*corev1.Pod)
	return pod, ok
}

// enqueueServicesOf enqueues the Services selecting the pod, or its old labels.
func (ctl *Controller) enqueueServicesOf(obj any, oldLabels map[string]string) {
	pod, ok := asPod(obj)
	if !ok {
		return
	}
	svcs, err := ctl.services.Services(pod.Namespace).List(labels.Everything())
	if err != nil {
		return
	}
	for _, svc := range svcs {
		if len(svc.Spec.Selector) == 0 {
			continue
		}
		if selects(svc.Spec.Selector, pod.Labels) || (oldLabels != nil && selects(svc.Spec.Selector, oldLabels)) {
			ctl.queue.Add(svc.Namespace + "/" + svc.Name)
		}
	}
}

// selects tells whether a Service selector matches a pod's labels, as
// labels.SelectorFromValidatedSet(selector).Matches does, without building the selector: every
// pod event checks every Service of its namespace.
func selects(selector, podLabels map[string]string) bool {
	for k, v := range selector {
		if got, ok := podLabels[k]; !ok || got != v {
			return false
		}
	}
	return true
}

func (ctl *Controller) onPodUpdate(oldObj, newObj any) {
	old, ok1 := oldObj.(*corev1.Pod)
	cur, ok2 := newObj.(*corev1.Pod)
	if !ok1 || !ok2 || old.ResourceVersion == cur.ResourceVersion {
		return // a resync: nothing changed
	}
	if reflect.DeepEqual(endpointsView(old), endpointsView(cur)) {
		return
	}
	ctl.enqueueServicesOf(cur, old.Labels)
}

// podView is what of a pod the Endpoints depend on.
type podView struct {
	Labels      map[string]string
	IP          string
	IPs         []corev1.PodIP
	Ready       bool
	Terminating bool
	Phase       corev1.PodPhase
	Node        string
	Hostname    string
	Subdomain   string
	Containers  []corev1.Container
	Init        []corev1.Container
}

func endpointsView(p *corev1.Pod) podView {
	return podView{
		Labels: p.Labels, IP: p.Status.PodIP, IPs: p.Status.PodIPs, Ready: podReady(p),
		Terminating: p.DeletionTimestamp != nil, Phase: p.Status.Phase, Node: p.Spec.NodeName,
		Hostname: p.Spec.Hostname, Subdomain: p.Spec.Subdomain,
		Containers: p.Spec.Containers, Init: p.Spec.InitContainers,
	}
}

func (ctl *Controller) reconcile(ctx context.Context, key string) (controllers.Result, error) {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return controllers.Result{}, nil
	}
	current, err := ctl.endpoints.Endpoints(ns).Get(name)
	if apierrors.IsNotFound(err) {
		current, err = nil, nil
	}
	if err != nil {
		return controllers.Result{}, err
	}
	svc, err := ctl.services.Services(ns).Get(name)
	if apierrors.IsNotFound(err) {
		if current == nil {
			return controllers.Result{}, nil
		}
		_, err := ctl.c.Store.Delete(ctx, resource.Endpoints, ns, name, store.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			return controllers.Result{}, fmt.Errorf("deleting endpoints %s: %w", key, err)
		}
		ctl.log.Debug("deleted endpoints of a deleted service", "service", key)
		return controllers.Result{}, nil
	}
	if err != nil {
		return controllers.Result{}, err
	}
	if len(svc.Spec.Selector) == 0 {
		return controllers.Result{}, nil // user-managed Endpoints
	}

	pods, err := ctl.pods.Pods(ns).List(labels.SelectorFromValidatedSet(svc.Spec.Selector))
	if err != nil {
		return controllers.Result{}, err
	}
	subsets := BuildSubsets(svc, pods)
	wantLabels := endpointsLabels(svc)
	if current != nil && equality.Semantic.DeepEqual(current.Subsets, subsets) &&
		equality.Semantic.DeepEqual(current.Labels, wantLabels) {
		return controllers.Result{}, nil
	}

	if current == nil {
		ep := &corev1.Endpoints{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: wantLabels},
			Subsets:    subsets,
		}
		if _, err := ctl.c.Store.Create(ctx, resource.Endpoints, ep); err != nil {
			if !apierrors.IsAlreadyExists(err) {
				ctl.c.Recorder.Eventf(svc, corev1.EventTypeWarning, ReasonFailedToCreateEndpoint, "Failed to create endpoint for service %s: %v", key, err)
			}
			return controllers.Result{}, fmt.Errorf("creating endpoints %s: %w", key, err)
		}
		return controllers.Result{}, nil
	}
	ep := current.DeepCopy()
	ep.Labels, ep.Subsets = wantLabels, subsets
	if _, err := ctl.c.Store.Update(ctx, resource.Endpoints, ep); err != nil {
		if !apierrors.IsConflict(err) && !apierrors.IsNotFound(err) {
			ctl.c.Recorder.Eventf(svc, corev1.EventTypeWarning, ReasonFailedToUpdateEndpoint, "Failed to update endpoint %s: %v", key, err)
		}
		return controllers.Result{}, fmt.Errorf("updating endpoints %s: %w", key, err)
	}
	return controllers.Result{}, nil
}

// endpointsLabels are the Service's labels, with service.kubernetes.io/headless for a headless
// Service and without it otherwise.
func endpointsLabels(svc *corev1.Service) map[string]string {
	out := maps.Clone(svc.Labels)
	if out == nil {
		out = map[string]string{}
	}
	delete(out, corev1.IsHeadlessService)
	if svc.Spec.ClusterIP == corev1.ClusterIPNone {
		out[corev1.IsHeadlessService] = ""
	}
	if len(out) == 0 {
		return nil
	}
	return out
}
