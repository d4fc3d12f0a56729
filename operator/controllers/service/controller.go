package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/bosun-gitops/bosun/internal/resource"
	"github.com/bosun-gitops/bosun/operator/controllers"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	listersv1 "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
)

// Name is the controller's name.
const Name = "service-allocator"

// The node port range, Kubernetes' default.
const (
	NodePortMin = 30000
	NodePortMax = 32767
)

// ConditionAllocated is the Service status condition that reports a failed allocation. It is only
// written once something failed (False), and turned True when the problem is gone; Services that
// never had a problem do not carry it.
const ConditionAllocated = "Allocated"

// Event reasons. Kubernetes' API server refuses bad requests synchronously and its repair loop
// uses the *AlreadyAllocated and *OutOfRange reasons; the Normal ones are Bosun's.
const (
	ReasonClusterIPAllocated        = "ClusterIPAllocated"
	ReasonNodePortAllocated         = "NodePortAllocated"
	ReasonClusterIPAlreadyAllocated = "ClusterIPAlreadyAllocated"
	ReasonClusterIPOutOfRange       = "ClusterIPOutOfRange"
	ReasonClusterIPRangeFull        = "ClusterIPRangeFull"
	ReasonPortAlreadyAllocated      = "PortAlreadyAllocated"
	ReasonPortOutOfRange            = "PortOutOfRange"
	ReasonPortRangeFull             = "PortRangeFull"
	ReasonInvalidServiceCIDR        = "InvalidServiceCIDR"
)

// Options tune the controller; the zero value gives the defaults.
type Options struct {
	// RepairInterval is how often every claim is checked against the Services, releasing the
	// claims of Services deleted while no operator ran (default 3 minutes, as Kubernetes' repair
	// loops).
	RepairInterval time.Duration
	// RetryInterval is how often a Service whose allocation failed is tried again (default 1
	// minute); it is also retried at once when this controller releases a claim.
	RetryInterval time.Duration
}

// Controller allocates cluster IPs and node ports. See the package documentation.
type Controller struct {
	c        *controllers.Context
	log      *slog.Logger
	opts     Options
	informer cache.SharedIndexInformer
	lister   listersv1.ServiceLister
	queue    *controllers.Queue
	ips      *claims
	ports    *claims

	mu        sync.Mutex
	pending   map[string]map[ref]bool // Service key -> claims to release unless still used
	waiting   map[string]bool         // Service keys whose allocation failed
	usedIPs   map[string]bool         // hint: IPs known to be claimed
	usedPorts map[string]bool         // hint: node ports known to be claimed
	rand      *rand.Rand
	cidr      string
	ipRange   *ipRange
}

var _ controllers.Controller = (*Controller)(nil)

// New returns the controller with default options.
func New(c *controllers.Context) (controllers.Controller, error) {
	return NewWithOptions(c, Options{})
}

// NewWithOptions returns the controller.
func NewWithOptions(c *controllers.Context, opts Options) (*Controller, error) {
	if opts.RepairInterval <= 0 {
		opts.RepairInterval = 3 * time.Minute
	}
	if opts.RetryInterval <= 0 {
		opts.RetryInterval = time.Minute
	}
	kv := c.Store.Client()
	ctl := &Controller{
		c: c, log: c.Logger.With("component", Name), opts: opts,
		informer: c.Informers.For(resource.Services),
		ips:      &claims{kv: kv, prefix: ipClaimPrefix},
		ports:    &claims{kv: kv, prefix: portClaimPrefix},
		pending:  map[string]map[ref]bool{}, waiting: map[string]bool{},
		usedIPs: map[string]bool{}, usedPorts: map[string]bool{},
		rand: rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 0)),
	}
	ctl.lister = listersv1.NewServiceLister(ctl.informer.GetIndexer())
	ctl.queue = controllers.NewQueue(Name, c.Logger, ctl.reconcile)
	_, err := ctl.informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    ctl.queue.Enqueue,
		UpdateFunc: ctl.onUpdate,
		DeleteFunc: ctl.onDelete,
	})
	if err != nil {
		return nil, fmt.Errorf("watching services: %w", err)
	}
	return ctl, nil
}

// Name implements controllers.Controller.
func (ctl *Controller) Name() string { return Name }

// Run reconciles Services and repairs claims until ctx ends.
func (ctl *Controller) Run(ctx context.Context) error {
	go ctl.repairLoop(ctx)
	ctl.queue.Run(ctx, ctl.c.Workers)
	return nil
}

// ref is one allocated value: a cluster IP or a node port.
type ref struct {
	port bool
	item string
}

func (r ref) String() string {
	if r.port {
		return "node port " + r.item
	}
	return "cluster IP " + r.item
}

// refsOf returns the IPs and node ports a Service's spec holds.
func refsOf(svc *corev1.Service) map[ref]bool {
	out := map[ref]bool{}
	if svc == nil {
		return out
	}
	for _, ip := range append([]string{svc.Spec.ClusterIP}, svc.Spec.ClusterIPs...) {
		if ip != "" && ip != corev1.ClusterIPNone {
			out[ref{item: ip}] = true
		}
	}
	for _, p := range svc.Spec.Ports {
		if p.NodePort != 0 {
			out[ref{port: true, item: strconv.Itoa(int(p.NodePort))}] = true
		}
	}
	return out
}

func (ctl *Controller) onUpdate(oldObj, newObj any) {
	old, ok1 := oldObj.(*corev1.Service)
	cur, ok2 := newObj.(*corev1.Service)
	if ok1 && ok2 {
		curRefs := refsOf(cur)
		var gone []ref
		for r := range refsOf(old) {
			if old.UID != cur.UID || !curRefs[r] {
				gone = append(gone, r)
			}
		}
		ctl.addPending(cacheKey(cur), gone)
	}
	ctl.queue.Enqueue(newObj)
}

func (ctl *Controller) onDelete(obj any) {
	svc, ok := obj.(*corev1.Service)
	if tomb, isTomb := obj.(cache.DeletedFinalStateUnknown); isTomb {
		svc, ok = tomb.Obj.(*corev1.Service)
	}
	if ok {
		var gone []ref
		for r := range refsOf(svc) {
			gone = append(gone, r)
		}
		ctl.addPending(cacheKey(svc), gone)
	}
	ctl.queue.Enqueue(obj)
}

func cacheKey(svc *corev1.Service) string { return svc.Namespace + "/" + svc.Name }

func (ctl *Controller) addPending(key string, refs []ref) {
	if len(refs) == 0 {
		return
	}
	ctl.mu.Lock()
	defer ctl.mu.Unlock()
	m := ctl.pending[key]
	if m == nil {
		m = map[ref]bool{}
		ctl.pending[key] = m
	}
	for _, r := range refs {
		m[r] = true
	}
}

func (ctl *Controller) takePending(key string) map[ref]bool {
	ctl.mu.Lock()
	defer ctl.mu.Unlock()
	m := ctl.pending[key]
	delete(ctl.pending, key)
	return m
}

func (ctl *Controller) claimsFor(r ref) *claims {
	if r.port {
		return ctl.ports
	}
	return ctl.ips
}

func (ctl *Controller) markUsed(r ref, used bool) {
	ctl.mu.Lock()
	defer ctl.mu.Unlock()
	m := ctl.usedIPs
	if r.port {
		m = ctl.usedPorts
	}
	if used {
		m[r.item] = true
	} else {
		delete(m, r.item)
	}
}

func resourceVersion(obj metav1.Object) int64 {
	rv, _ := strconv.ParseInt(obj.GetResourceVersion(), 10, 64)
	return rv
}

// releasePending releases the claims queued for key that the Service no longer uses, when that
// is provably safe; it reports whether some must be tried again later.
func (ctl *Controller) releasePending(ctx context.Context, key string, cur *corev1.Service) (bool, error) {
	items := ctl.takePending(key)
	if len(items) == 0 {
		return false, nil
	}
	ns, name, _ := cache.SplitMetaNamespaceKey(key)
	svcKey, err := ctl.c.Store.ObjectKey(resource.Services, ns, name)
	if err != nil {
		return false, err
	}
	curRefs := refsOf(cur)
	var curRV int64
	if cur != nil {
		curRV = resourceVersion(cur)
	}
	var kept []ref
	released := false
	var firstErr error
	for r := range items {
		c := ctl.claimsFor(r)
		cl, ok, err := c.get(ctx, r.item)
		if err != nil {
			kept = append(kept, r)
			firstErr = cmpErr(firstErr, err)
			continue
		}
		if !ok || cl.owner.Namespace != ns || cl.owner.Name != name {
			continue // already released, or someone else's
		}
		if cur != nil && cur.UID == cl.owner.UID {
			if curRefs[r] {
				continue // still used
			}
			if cl.owner.BasedOn >= curRV {
				// A write based on this version of the Service may still succeed with it.
				kept = append(kept, r)
				continue
			}
		}
		ok, err = c.release(ctx, cl, svcKey, curRV)
		switch {
		case err != nil:
			firstErr = cmpErr(firstErr, err)
			kept = append(kept, r)
		case !ok:
			kept = append(kept, r) // the Service or the claim changed: look again
		default:
			released = true
			ctl.markUsed(r, false)
			ctl.log.Debug("released", "service", key, "what", r.String())
		}
	}
	ctl.addPending(key, kept)
	if released {
		ctl.retryWaiting(key)
	}
	return len(kept) > 0, firstErr
}

func cmpErr(first, err error) error {
	if first != nil {
		return first
	}
	return err
}

// retryWaiting enqueues the Services whose allocation failed, as a release may let them through.
func (ctl *Controller) retryWaiting(except string) {
	ctl.mu.Lock()
	keys := make([]string, 0, len(ctl.waiting))
	for k := range ctl.waiting {
		if k != except {
			keys = append(keys, k)
		}
	}
	ctl.mu.Unlock()
	for _, k := range keys {
		ctl.queue.Add(k)
	}
}

func (ctl *Controller) setWaiting(key string, waiting bool) {
	ctl.mu.Lock()
	defer ctl.mu.Unlock()
	if waiting {
		ctl.waiting[key] = true
	} else {
		delete(ctl.waiting, key)
	}
}

// serviceRange returns the parsed service CIDR of the cluster settings.
func (ctl *Controller) serviceRange() (*ipRange, error) {
	cidr := ctl.c.Cluster().Spec.ServiceCIDR
	ctl.mu.Lock()
	defer ctl.mu.Unlock()
	if ctl.ipRange != nil && ctl.cidr == cidr {
		return ctl.ipRange, nil
	}
	r, err := parseRange(cidr)
	if err != nil {
		return nil, err
	}
	ctl.cidr, ctl.ipRange = cidr, r
	return r, nil
}

func (ctl *Controller) reconcile(ctx context.Context, key string) (controllers.Result, error) {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return controllers.Result{}, nil
	}
	svc, err := ctl.lister.Services(ns).Get(name)
	if apierrors.IsNotFound(err) {
		svc, err = nil, nil
	}
	if err != nil {
		return controllers.Result{}, err
	}
	retry, err := ctl.releasePending(ctx, key, svc)
	if err != nil {
		return controllers.Result{}, err
	}
	var res controllers.Result
	if retry {
		res.RequeueAfter = time.Second
	}
	if svc == nil || svc.DeletionTimestamp != nil {
		ctl.setWaiting(key, false)
		return res, nil
	}
	rng, err := ctl.serviceRange()
	if err != nil {
		ctl.c.Recorder.Eventf(svc, corev1.EventTypeWarning, ReasonInvalidServiceCIDR, "Cannot allocate: %v; fix serviceCIDR in bosun.yaml", err)
		return controllers.Result{RequeueAfter: ctl.opts.RetryInterval}, nil
	}

	want, problems, allocated, err := ctl.allocate(ctx, key, svc, rng)
	if err != nil {
		ctl.addPending(key, allocated)
		return controllers.Result{}, err
	}
	if !equality.Semantic.DeepEqual(want.Spec, svc.Spec) {
		out, err := ctl.c.Store.Update(ctx, resource.Services, want)
		if err != nil {
			// The claims were made for this write: release them unless a retry reuses them.
			ctl.addPending(key, allocated)
			return controllers.Result{}, fmt.Errorf("writing allocations of service %s: %w", key, err)
		}
		svc = out.(*corev1.Service)
		for _, r := range allocated {
			if r.port {
				ctl.c.Recorder.Eventf(svc, corev1.EventTypeNormal, ReasonNodePortAllocated, "Allocated node port %s", r.item)
			} else {
				ctl.c.Recorder.Eventf(svc, corev1.EventTypeNormal, ReasonClusterIPAllocated, "Allocated cluster IP %s", r.item)
			}
		}
	}
	for _, p := range problems {
		ctl.c.Recorder.Eventf(svc, corev1.EventTypeWarning, p.reason, "%s", p.message)
	}
	if err := ctl.setCondition(ctx, svc, problems); err != nil {
		return controllers.Result{}, err
	}
	ctl.setWaiting(key, len(problems) > 0)
	if len(problems) > 0 && (res.RequeueAfter == 0 || ctl.opts.RetryInterval < res.RequeueAfter) {
		res.RequeueAfter = ctl.opts.RetryInterval
	}
	return res, nil
}

// problem is an allocation that failed.
type problem struct {
	reason, message string
}

var errFull = errors.New("range is full")

// allocate returns the Service with its allocations filled in, the problems met, and the values
// newly claimed for this write.
func (ctl *Controller) allocate(ctx context.Context, key string, svc *corev1.Service, rng *ipRange) (*corev1.Service, []problem, []ref, error) {
	o := owner{Namespace: svc.Namespace, Name: svc.Name, UID: svc.UID, BasedOn: resourceVersion(svc)}
	want := svc.DeepCopy()
	s := &want.Spec
	var problems []problem
	var allocated []ref
	isAPI := svc.Namespace == metav1.NamespaceDefault && svc.Name == "kubernetes"

	switch {
	case s.Type == corev1.ServiceTypeExternalName:
		s.ClusterIP, s.ClusterIPs = "", nil
	case s.ClusterIP == corev1.ClusterIPNone:
		if len(s.ClusterIPs) == 0 {
			s.ClusterIPs = []string{corev1.ClusterIPNone}
		}
	case s.ClusterIP == "":
		ip, err := ctl.allocateIP(ctx, key, o, rng, isAPI)
		switch {
		case errors.Is(err, errFull):
			problems = append(problems, problem{ReasonClusterIPRangeFull,
				fmt.Sprintf("Cannot allocate a cluster IP: the service range %s is full", rng)})
		case err != nil:
			return nil, nil, allocated, err
		default:
			s.ClusterIP = ip
			allocated = append(allocated, ref{item: ip})
		}
	default:
		p, err := ctl.confirmIP(ctx, o, rng, s.ClusterIP, isAPI)
		if err != nil {
			return nil, nil, allocated, err
		}
		if p != nil {
			problems = append(problems, *p)
		}
	}
	if s.ClusterIP != "" && s.ClusterIP != corev1.ClusterIPNone {
		if len(s.ClusterIPs) != 1 || s.ClusterIPs[0] != s.ClusterIP {
			s.ClusterIPs = []string{s.ClusterIP}
		}
		if len(s.IPFamilies) == 0 {
			fam := corev1.IPv4Protocol
			if strings.Contains(s.ClusterIP, ":") {
				fam = corev1.IPv6Protocol
			}
			s.IPFamilies = []corev1.IPFamily{fam}
		}
		if s.IPFamilyPolicy == nil {
			single := corev1.IPFamilyPolicySingleStack
			s.IPFamilyPolicy = &single
		}
	}

	needsNodePorts := s.Type == corev1.ServiceTypeNodePort || s.Type == corev1.ServiceTypeLoadBalancer
	byServicePort := map[int32]int32{} // TCP and UDP on one port number share the node port
	for i := range s.Ports {
		p := &s.Ports[i]
		if !needsNodePorts {
			p.NodePort = 0
			continue
		}
		if p.NodePort == 0 {
			if np, ok := byServicePort[p.Port]; ok {
				p.NodePort = np
				continue
			}
			np, err := ctl.allocatePort(ctx, key, o)
			switch {
			case errors.Is(err, errFull):
				problems = append(problems, problem{ReasonPortRangeFull,
					fmt.Sprintf("Cannot allocate a node port for port %d: the range %d-%d is full", p.Port, NodePortMin, NodePortMax)})
				continue
			case err != nil:
				return nil, nil, allocated, err
			}
			p.NodePort = np
			allocated = append(allocated, ref{port: true, item: strconv.Itoa(int(np))})
		} else {
			pr, err := ctl.confirmPort(ctx, o, p.NodePort)
			if err != nil {
				return nil, nil, allocated, err
			}
			if pr != nil {
				problems = append(problems, *pr)
			}
		}
		byServicePort[p.Port] = p.NodePort
	}
	return want, problems, allocated, nil
}

// confirmIP claims an IP the Service's spec already holds (requested, or allocated before).
func (ctl *Controller) confirmIP(ctx context.Context, o owner, rng *ipRange, ip string, isAPI bool) (*problem, error) {
	off, ok := rng.offset(ip)
	if !ok {
		return &problem{ReasonClusterIPOutOfRange, fmt.Sprintf("Cluster IP %s is not in the service range %s; remove spec.clusterIP to get one allocated", ip, rng)}, nil
	}
	if off == reservedOffset && !isAPI {
		return &problem{ReasonClusterIPAlreadyAllocated, fmt.Sprintf("Cluster IP %s is reserved for the API service default/kubernetes; choose another spec.clusterIP or remove it", ip)}, nil
	}
	holder, ok, err := ctl.ips.claim(ctx, ip, o, false)
	if err != nil {
		return nil, err
	}
	ctl.markUsed(ref{item: ip}, true)
	if !ok {
		return &problem{ReasonClusterIPAlreadyAllocated, fmt.Sprintf("Cluster IP %s is already allocated to service %s; choose another spec.clusterIP or remove it", ip, holder)}, nil
	}
	return nil, nil
}

func (ctl *Controller) confirmPort(ctx context.Context, o owner, port int32) (*problem, error) {
	if port < NodePortMin || port > NodePortMax {
		return &problem{ReasonPortOutOfRange, fmt.Sprintf("Node port %d is not in the range %d-%d", port, NodePortMin, NodePortMax)}, nil
	}
	item := strconv.Itoa(int(port))
	holder, ok, err := ctl.ports.claim(ctx, item, o, false)
	if err != nil {
		return nil, err
	}
	ctl.markUsed(ref{port: true, item: item}, true)
	if !ok {
		return &problem{ReasonPortAlreadyAllocated, fmt.Sprintf("Node port %d is already allocated to service %s; choose another nodePort or remove it", port, holder)}, nil
	}
	return nil, nil
}

// reusePending claims again, for this write, a value of the wanted kind that a failed write of
// the same Service claimed, so that retries do not leak claims.
func (ctl *Controller) reusePending(ctx context.Context, key string, o owner, port bool) (string, bool) {
	ctl.mu.Lock()
	var cands []ref
	for r := range ctl.pending[key] {
		if r.port == port {
			cands = append(cands, r)
		}
	}
	ctl.mu.Unlock()
	for _, r := range cands {
		if _, ok, err := ctl.claimsFor(r).claim(ctx, r.item, o, true); err == nil && ok {
			ctl.mu.Lock()
			delete(ctl.pending[key], r)
			ctl.mu.Unlock()
			return r.item, true
		}
	}
	return "", false
}

// allocateIP claims a free cluster IP, starting at a random offset so that concurrent
// allocators rarely compete for the same address.
func (ctl *Controller) allocateIP(ctx context.Context, key string, o owner, rng *ipRange, isAPI bool) (string, error) {
	if isAPI {
		ip := rng.addr(reservedOffset).String()
		if _, ok, err := ctl.ips.claim(ctx, ip, o, true); err != nil || ok {
			return ip, err
		}
	}
	if ip, ok := ctl.reusePending(ctx, key, o, false); ok {
		return ip, nil
	}
	first := uint64(reservedOffset + 1)
	n := rng.last - first + 1
	return ctl.allocateFrom(ctx, ctl.ips, &ctl.usedIPs, o, n, func(i uint64) string { return rng.addr(first + i).String() })
}

func (ctl *Controller) allocatePort(ctx context.Context, key string, o owner) (int32, error) {
	if p, ok := ctl.reusePending(ctx, key, o, true); ok {
		n, _ := strconv.Atoi(p)
		return int32(n), nil
	}
	item, err := ctl.allocateFrom(ctx, ctl.ports, &ctl.usedPorts, o, NodePortMax-NodePortMin+1,
		func(i uint64) string { return strconv.Itoa(NodePortMin + int(i)) })
	if err != nil {
		return 0, err
	}
	n, _ := strconv.Atoi(item)
	return int32(n), nil
}

// allocateFrom claims the first free value of n, scanning from a random index and skipping the
// values the hint knows to be taken; when the hint says the range is full it is reloaded from
// etcd once.
func (ctl *Controller) allocateFrom(ctx context.Context, c *claims, used *map[string]bool, o owner, n uint64, value func(uint64) string) (string, error) {
	for pass := 0; pass < 2; pass++ {
		ctl.mu.Lock()
		start := ctl.rand.Uint64N(n)
		ctl.mu.Unlock()
		for i := uint64(0); i < n; i++ {
			item := value((start + i) % n)
			ctl.mu.Lock()
			known := (*used)[item]
			ctl.mu.Unlock()
			if known {
				continue
			}
			_, ok, err := c.claim(ctx, item, o, true)
			if err != nil {
				return "", err
			}
			ctl.mu.Lock()
			(*used)[item] = true
			ctl.mu.Unlock()
			if ok {
				return item, nil
			}
		}
		if err := ctl.reloadHint(ctx, c, used); err != nil {
			return "", err
		}
	}
	return "", errFull
}

// reloadHint replaces a used-values hint with the claims stored in etcd.
func (ctl *Controller) reloadHint(ctx context.Context, c *claims, used *map[string]bool) error {
	all, err := c.list(ctx)
	if err != nil {
		return err
	}
	m := make(map[string]bool, len(all))
	for _, cl := range all {
		m[c.item(cl.key)] = true
	}
	ctl.mu.Lock()
	*used = m
	ctl.mu.Unlock()
	return nil
}

// setCondition records the allocation problems in the Allocated condition.
func (ctl *Controller) setCondition(ctx context.Context, svc *corev1.Service, problems []problem) error {
	existing := meta.FindStatusCondition(svc.Status.Conditions, ConditionAllocated)
	cond := metav1.Condition{
		Type: ConditionAllocated, Status: metav1.ConditionTrue, Reason: "Allocated",
		Message: "Every cluster IP and node port is allocated", ObservedGeneration: svc.Generation,
	}
	if len(problems) > 0 {
		msgs := make([]string, len(problems))
		for i, p := range problems {
			msgs[i] = p.message
		}
		cond.Status, cond.Reason, cond.Message = metav1.ConditionFalse, problems[0].reason, strings.Join(msgs, "; ")
	} else if existing == nil {
		return nil // healthy Services do not carry the condition
	}
	if existing != nil && existing.Status == cond.Status && existing.Reason == cond.Reason &&
		existing.Message == cond.Message && existing.ObservedGeneration == cond.ObservedGeneration {
		return nil
	}
	cond.LastTransitionTime = metav1.NewTime(ctl.c.Clock.Now())
	out := svc.DeepCopy()
	meta.SetStatusCondition(&out.Status.Conditions, cond)
	if _, err := ctl.c.Store.UpdateStatus(ctx, resource.Services, out); err != nil {
		return fmt.Errorf("writing status of service %s/%s: %w", svc.Namespace, svc.Name, err)
	}
	return nil
}

// repairLoop checks every claim at start and every RepairInterval.
func (ctl *Controller) repairLoop(ctx context.Context) {
	t := ctl.c.Clock.NewTicker(ctl.opts.RepairInterval)
	defer t.Stop()
	for {
		if err := ctl.repair(ctx); err != nil && ctx.Err() == nil {
			ctl.log.Warn("repairing allocations", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C():
		}
	}
}

// repair queues for release every claim that its Service (as cached) does not use, and reloads
// the used-values hints.
func (ctl *Controller) repair(ctx context.Context) error {
	for _, kind := range []struct {
		c    *claims
		port bool
		used *map[string]bool
	}{{ctl.ips, false, &ctl.usedIPs}, {ctl.ports, true, &ctl.usedPorts}} {
		all, err := kind.c.list(ctx)
		if err != nil {
			return err
		}
		hint := make(map[string]bool, len(all))
		for _, cl := range all {
			r := ref{port: kind.port, item: kind.c.item(cl.key)}
			hint[r.item] = true
			svc, err := ctl.lister.Services(cl.owner.Namespace).Get(cl.owner.Name)
			if err == nil && svc.UID == cl.owner.UID && refsOf(svc)[r] {
				continue
			}
			key := cl.owner.Namespace + "/" + cl.owner.Name
			ctl.addPending(key, []ref{r})
			ctl.queue.Add(key)
		}
		ctl.mu.Lock()
		*kind.used = hint
		ctl.mu.Unlock()
	}
	return nil
}
