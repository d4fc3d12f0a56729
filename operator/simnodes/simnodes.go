// Package simnodes simulates nodes through an ordinary Kubernetes client, so that the scheduler
// and the controllers are tested without containerd: it registers nodes (Node, status with
// capacity, addresses and Ready, Lease in kube-node-lease), renews their leases like agents do,
// and marks pods bound to them Running with an IP from the node's pod CIDR and Ready conditions.
// It runs against any kubernetes.Interface: the operator's API with the admin kubeconfig, or
// client-go's fake clientset.
//
//	Cluster.AddNodes ──create Node, status, Lease──> API
//	heartbeat loop ──renew Leases (bounded concurrency)──> API
//	one shared pod informer ──pods bound to our nodes──> queue (delay) ──UpdateStatus Running──> API
//
// Like an agent, a simulated node re-asserts its pods' status when someone else changed it (the
// node lifecycle controller marks the pods of an unreachable node not ready): a pod that is not
// Running and Ready is put right on every change and at every heartbeat. A node whose heartbeat
// is stopped plays an agent that is down: its lease ages and its pods are left alone until
// ResumeHeartbeat. A pod being deleted gracefully on a live node is deleted for good at once,
// as an agent does once it has stopped the containers.
package simnodes

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/retry"
	"k8s.io/client-go/util/workqueue"
)

// LeaseNamespace holds the node leases, as in Kubernetes.
const LeaseNamespace = corev1.NamespaceNodeLease

// podsByNodeIndex indexes the pod informer by spec.nodeName.
const podsByNodeIndex = "simnodes.bosun.dev/pods-by-node"

// Config configures a simulated cluster.
type Config struct {
	Client kubernetes.Interface
	Logger *slog.Logger
	// HeartbeatInterval is how often leases are renewed (default 10 s, as agents do).
	HeartbeatInterval time.Duration
	// StartDelay is how long a bound pod stays Pending before it turns Running (default 200 ms).
	StartDelay time.Duration
	// Concurrency bounds the API calls in flight (default 16).
	Concurrency int
}

// Validate checks the configuration.
func (c *Config) Validate() error {
	if c.Client == nil {
		return errors.New("simnodes: Client is required")
	}
	return nil
}

// NodeSpec describes one simulated node. Zero values take the defaults: 4 cpu, 16Gi memory,
// 110 pods, a made-up pod CIDR when none is set on the node.
type NodeSpec struct {
	Name   string
	CPU    string
	Memory string
	Pods   int
	Labels map[string]string
	Taints []corev1.Taint
	// PodCIDR is written into spec.podCIDR when set.
	PodCIDR string
}

// Cluster is a set of simulated nodes.
type Cluster struct {
	cfg   Config
	log   *slog.Logger
	pods  cache.SharedIndexInformer
	nodes cache.SharedIndexInformer
	queue workqueue.TypedRateLimitingInterface[string]

	mu      sync.Mutex
	members map[string]*member // by node name
	next    int                // index for made-up pod CIDRs
}

type member struct {
	index     int
	heartbeat bool
	nextIP    uint32 // last host part handed out
}

// New returns a cluster; call Run to start it before adding nodes.
func New(cfg Config) (*Cluster, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.HeartbeatInterval <= 0 {
		cfg.HeartbeatInterval = 10 * time.Second
	}
	if cfg.StartDelay <= 0 {
		cfg.StartDelay = 200 * time.Millisecond
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 16
	}
	f := informers.NewSharedInformerFactory(cfg.Client, 0)
	c := &Cluster{
		cfg: cfg, log: cfg.Logger.With("component", "simnodes"),
		pods:    f.Core().V1().Pods().Informer(),
		nodes:   f.Core().V1().Nodes().Informer(),
		queue:   workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[string]()),
		members: map[string]*member{},
	}
	if err := c.pods.AddIndexers(cache.Indexers{podsByNodeIndex: func(obj any) ([]string, error) {
		if p, ok := obj.(*corev1.Pod); ok && p.Spec.NodeName != "" {
			return []string{p.Spec.NodeName}, nil
		}
		return nil, nil
	}}); err != nil {
		return nil, fmt.Errorf("indexing pods by node: %w", err)
	}
	if _, err := c.pods.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: c.enqueue, UpdateFunc: func(_, obj any) { c.enqueue(obj) },
	}); err != nil {
		return nil, fmt.Errorf("watching pods: %w", err)
	}
	return c, nil
}

func (c *Cluster) enqueue(obj any) {
	if p, ok := obj.(*corev1.Pod); ok && (needsSync(p) || terminating(p)) && c.live(p.Spec.NodeName) {
		c.queue.AddAfter(p.Namespace+"/"+p.Name, c.cfg.StartDelay)
	}
}

// terminating reports whether a bound pod is being deleted gracefully and waits for its node
// (finalizers may hold it after that).
func terminating(p *corev1.Pod) bool {
	return p.Spec.NodeName != "" && p.DeletionTimestamp != nil &&
		(p.DeletionGracePeriodSeconds == nil || *p.DeletionGracePeriodSeconds > 0)
}

// needsSync reports whether a bound pod is not (or no longer) what its simulated agent says:
// not yet Running, or Running but not Ready.
func needsSync(p *corev1.Pod) bool {
	if p.Spec.NodeName == "" || p.DeletionTimestamp != nil {
		return false
	}
	switch p.Status.Phase {
	case corev1.PodSucceeded, corev1.PodFailed:
		return false
	case corev1.PodRunning:
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodReady {
				return c.Status != corev1.ConditionTrue
			}
		}
	}
	return true
}

// live reports whether node is simulated here with its heartbeat on (its agent is up).
func (c *Cluster) live(node string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	m, ok := c.members[node]
	return ok && m.heartbeat
}

// enqueueNode queues the pods of a node that need their status put right.
func (c *Cluster) enqueueNode(node string) {
	objs, err := c.pods.GetIndexer().ByIndex(podsByNodeIndex, node)
	if err != nil {
		return
	}
	for _, obj := range objs {
		c.enqueue(obj)
	}
}

// Run starts the informers, the pod workers and the heartbeats; it blocks until ctx ends.
func (c *Cluster) Run(ctx context.Context) error {
	go c.pods.Run(ctx.Done())
	go c.nodes.Run(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), c.pods.HasSynced, c.nodes.HasSynced) {
		return ctx.Err()
	}
	var wg sync.WaitGroup
	for range c.cfg.Concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for c.processPod(ctx) {
			}
		}()
	}
	t := time.NewTicker(c.cfg.HeartbeatInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			c.queue.ShutDown()
			wg.Wait()
			return nil
		case <-t.C:
			names := c.heartbeatAll(ctx)
			for _, n := range names { // the agents' periodic status resync
				c.enqueueNode(n)
			}
		}
	}
}

// Synced reports whether Run has synced its informers.
func (c *Cluster) Synced() bool { return c.pods.HasSynced() && c.nodes.HasSynced() }

// forEach runs fn over items with at most Concurrency calls at once and joins the errors.
func (c *Cluster) forEach(names []string, fn func(name string) error) error {
	sem := make(chan struct{}, c.cfg.Concurrency)
	var mu sync.Mutex
	var errs []error
	var wg sync.WaitGroup
	for _, n := range names {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := fn(n); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// AddNodes registers nodes: creates each Node (or takes over an existing one), writes its status
// (capacity, allocatable, addresses, Ready) and creates its Lease. Heartbeats start at once.
func (c *Cluster) AddNodes(ctx context.Context, specs ...NodeSpec) error {
	byName := map[string]NodeSpec{}
	names := make([]string, 0, len(specs))
	for _, s := range specs {
		byName[s.Name] = s
		names = append(names, s.Name)
	}
	return c.forEach(names, func(name string) error { return c.addNode(ctx, byName[name]) })
}

func (c *Cluster) addNode(ctx context.Context, spec NodeSpec) error {
	c.mu.Lock()
	m, ok := c.members[spec.Name]
	if !ok {
		m = &member{index: c.next}
		c.next++
		c.members[spec.Name] = m
	}
	m.heartbeat = true
	c.mu.Unlock()

	nodes := c.cfg.Client.CoreV1().Nodes()
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: spec.Name, Labels: map[string]string{
			corev1.LabelHostname: spec.Name, corev1.LabelOSStable: "linux", corev1.LabelArchStable: "amd64",
		}},
		Spec: corev1.NodeSpec{Taints: spec.Taints, PodCIDR: spec.PodCIDR},
	}
	for k, v := range spec.Labels {
		node.Labels[k] = v
	}
	if spec.PodCIDR != "" {
		node.Spec.PodCIDRs = []string{spec.PodCIDR}
	}
	created, err := nodes.Create(ctx, node, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		created, err = nodes.Get(ctx, spec.Name, metav1.GetOptions{})
	}
	if err != nil {
		return fmt.Errorf("registering node %s: %w", spec.Name, err)
	}
	// Controllers (node IPAM) update a new node at once; retry the status write on conflict
	// from a fresh read, as an agent does.
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		upd := created.DeepCopy()
		upd.Status = nodeStatus(spec, m.index)
		_, err := nodes.UpdateStatus(ctx, upd, metav1.UpdateOptions{})
		if apierrors.IsConflict(err) {
			if fresh, gerr := nodes.Get(ctx, spec.Name, metav1.GetOptions{}); gerr == nil {
				created = fresh
			}
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("writing the status of node %s: %w", spec.Name, err)
	}
	if err := c.renewLease(ctx, spec.Name); err != nil {
		return err
	}
	c.enqueueNode(spec.Name) // pods of a node taken over or resumed
	return nil
}

func quantity(s, def string) resource.Quantity {
	if s == "" {
		s = def
	}
	return resource.MustParse(s)
}

func nodeStatus(spec NodeSpec, index int) corev1.NodeStatus {
	pods := spec.Pods
	if pods <= 0 {
		pods = 110
	}
	capacity := corev1.ResourceList{
		corev1.ResourceCPU:    quantity(spec.CPU, "4"),
		corev1.ResourceMemory: quantity(spec.Memory, "16Gi"),
		corev1.ResourcePods:   *resource.NewQuantity(int64(pods), resource.DecimalSI),
	}
	now := metav1.Now()
	return corev1.NodeStatus{
		Capacity: capacity, Allocatable: capacity.DeepCopy(), Phase: corev1.NodeRunning,
		Addresses: []corev1.NodeAddress{
			{Type: corev1.NodeInternalIP, Address: nodeIP(index).String()},
			{Type: corev1.NodeHostName, Address: spec.Name},
		},
		Conditions: []corev1.NodeCondition{{
			Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady",
			Message: "simulated node is posting ready status", LastHeartbeatTime: now, LastTransitionTime: now,
		}},
		NodeInfo: corev1.NodeSystemInfo{KubeletVersion: "bosun-simnode", OperatingSystem: "linux", Architecture: "amd64"},
	}
}

// nodeIP is a made-up address in 198.18.0.0/15 (the benchmarking range).
func nodeIP(index int) netip.Addr {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], 198<<24|18<<16+uint32(index+1))
	return netip.AddrFrom4(b)
}

// madeUpCIDR is a /24 in 100.64.0.0/10 for a node without spec.podCIDR.
func madeUpCIDR(index int) netip.Prefix {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], 100<<24|64<<16+uint32(index)<<8)
	return netip.PrefixFrom(netip.AddrFrom4(b), 24)
}

// renewLease creates or renews a node's Lease.
func (c *Cluster) renewLease(ctx context.Context, name string) error {
	leases := c.cfg.Client.CoordinationV1().Leases(LeaseNamespace)
	now := metav1.NewMicroTime(time.Now())
	secs := int32(40)
	lease, err := leases.Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		_, err = leases.Create(ctx, &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Namespace: LeaseNamespace, Name: name},
			Spec:       coordinationv1.LeaseSpec{HolderIdentity: &name, LeaseDurationSeconds: &secs, RenewTime: &now},
		}, metav1.CreateOptions{})
	} else if err == nil {
		lease = lease.DeepCopy()
		lease.Spec.HolderIdentity, lease.Spec.RenewTime = &name, &now
		if lease.Spec.LeaseDurationSeconds == nil {
			lease.Spec.LeaseDurationSeconds = &secs
		}
		_, err = leases.Update(ctx, lease, metav1.UpdateOptions{})
	}
	if apierrors.IsAlreadyExists(err) || apierrors.IsConflict(err) {
		return nil // renewed by a concurrent heartbeat just now
	}
	if err != nil {
		return fmt.Errorf("renewing the lease of node %s: %w", name, err)
	}
	return nil
}

// heartbeatAll renews the leases of the live nodes and returns their names.
func (c *Cluster) heartbeatAll(ctx context.Context) []string {
	c.mu.Lock()
	var names []string
	for n, m := range c.members {
		if m.heartbeat {
			names = append(names, n)
		}
	}
	c.mu.Unlock()
	if err := c.forEach(names, func(n string) error { return c.renewLease(ctx, n) }); err != nil && ctx.Err() == nil {
		c.log.Warn("heartbeat failed", "err", err)
	}
	return names
}

// StopHeartbeat stops renewing a node's lease and touching its pods, as when its agent is down
// (to test lease expiry); ResumeHeartbeat or AddNodes resumes it.
func (c *Cluster) StopHeartbeat(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if m, ok := c.members[name]; ok {
		m.heartbeat = false
	}
}

// ResumeHeartbeat brings a stopped node's agent back: it renews the lease at once and puts right
// the status of the node's pods that others changed meanwhile (Ready=False while the node was
// unreachable).
func (c *Cluster) ResumeHeartbeat(ctx context.Context, name string) error {
	c.mu.Lock()
	m, ok := c.members[name]
	if ok {
		m.heartbeat = true
	}
	c.mu.Unlock()
	if !ok {
		return fmt.Errorf("node %s is not simulated here; add it with AddNodes", name)
	}
	if err := c.renewLease(ctx, name); err != nil {
		return err
	}
	c.enqueueNode(name)
	return nil
}

// RemoveNode deletes a node and its lease and forgets it. Already gone is success.
func (c *Cluster) RemoveNode(ctx context.Context, name string) error {
	c.mu.Lock()
	delete(c.members, name)
	c.mu.Unlock()
	if err := c.cfg.Client.CoreV1().Nodes().Delete(ctx, name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("deleting node %s: %w", name, err)
	}
	err := c.cfg.Client.CoordinationV1().Leases(LeaseNamespace).Delete(ctx, name, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("deleting the lease of node %s: %w", name, err)
	}
	return nil
}

// podIP hands out the next address of the node's pod CIDR (spec.podCIDR, else a made-up /24).
func (c *Cluster) podIP(nodeName string) (netip.Addr, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	m, ok := c.members[nodeName]
	if !ok {
		return netip.Addr{}, fmt.Errorf("node %s is not simulated here", nodeName)
	}
	prefix := madeUpCIDR(m.index)
	if obj, ok, _ := c.nodes.GetStore().GetByKey(nodeName); ok {
		if cidr := obj.(*corev1.Node).Spec.PodCIDR; cidr != "" {
			if p, err := netip.ParsePrefix(cidr); err == nil && p.Addr().Is4() {
				prefix = p.Masked()
			}
		}
	}
	size := uint32(1) << (32 - prefix.Bits())
	m.nextIP++
	if m.nextIP >= size-1 {
		m.nextIP = 2 // wrap: .1 is the gateway
	}
	if m.nextIP < 2 {
		m.nextIP = 2
	}
	base := prefix.Addr().As4()
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], binary.BigEndian.Uint32(base[:])+m.nextIP)
	return netip.AddrFrom4(b), nil
}

func (c *Cluster) processPod(ctx context.Context) bool {
	key, quit := c.queue.Get()
	if quit {
		return false
	}
	defer c.queue.Done(key)
	if err := c.startPod(ctx, key); err != nil && ctx.Err() == nil {
		if !apierrors.IsConflict(err) {
			c.log.Warn("marking pod running", "pod", key, "err", err)
		}
		c.queue.AddRateLimited(key)
		return true
	}
	c.queue.Forget(key)
	return true
}

// startPod marks a bound pod Running and Ready with an IP, as a kubelet would after starting it,
// or makes a Running pod Ready again (keeping its IP and containers) after someone else marked it
// not ready.
func (c *Cluster) startPod(ctx context.Context, key string) error {
	obj, ok, err := c.pods.GetStore().GetByKey(key)
	if err != nil || !ok {
		return err
	}
	pod := obj.(*corev1.Pod)
	if !c.live(pod.Spec.NodeName) {
		return nil
	}
	if terminating(pod) {
		// Its simulated containers stop at once: the node deletes it for good, as an agent does.
		zero, uid := int64(0), pod.UID
		err := c.cfg.Client.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name,
			metav1.DeleteOptions{GracePeriodSeconds: &zero, Preconditions: &metav1.Preconditions{UID: &uid}})
		if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
			return nil // gone, or another pod of that name
		}
		return err
	}
	if !needsSync(pod) {
		return nil
	}
	p := pod.DeepCopy()
	now := metav1.Now()
	if p.Status.Phase != corev1.PodRunning {
		ip, err := c.podIP(pod.Spec.NodeName)
		if err != nil {
			return nil // removed meanwhile
		}
		hostIP := ""
		if n, ok, _ := c.nodes.GetStore().GetByKey(pod.Spec.NodeName); ok {
			for _, a := range n.(*corev1.Node).Status.Addresses {
				if a.Type == corev1.NodeInternalIP {
					hostIP = a.Address
				}
			}
		}
		p.Status.Phase = corev1.PodRunning
		p.Status.PodIP, p.Status.PodIPs = ip.String(), []corev1.PodIP{{IP: ip.String()}}
		if hostIP != "" {
			p.Status.HostIP, p.Status.HostIPs = hostIP, []corev1.HostIP{{IP: hostIP}}
		}
		p.Status.StartTime = &now
		p.Status.ContainerStatuses = nil
		for _, ctr := range p.Spec.Containers {
			p.Status.ContainerStatuses = append(p.Status.ContainerStatuses, corev1.ContainerStatus{
				Name: ctr.Name, Image: ctr.Image, ImageID: "sim://" + ctr.Image, Ready: true, Started: new(true),
				ContainerID: "sim://" + string(p.UID) + "/" + ctr.Name,
				State:       corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}},
			})
		}
	}
	for _, t := range []corev1.PodConditionType{corev1.PodScheduled, corev1.PodInitialized, corev1.ContainersReady, corev1.PodReady} {
		setCondition(&p.Status, corev1.PodCondition{Type: t, Status: corev1.ConditionTrue, LastTransitionTime: now})
	}
	_, err = c.cfg.Client.CoreV1().Pods(p.Namespace).UpdateStatus(ctx, p, metav1.UpdateOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

func setCondition(st *corev1.PodStatus, cond corev1.PodCondition) {
	for i := range st.Conditions {
		if st.Conditions[i].Type == cond.Type {
			if st.Conditions[i].Status == cond.Status {
				return
			}
			st.Conditions[i] = cond
			return
		}
	}
	st.Conditions = append(st.Conditions, cond)
}
