// Package node registers this machine as a Node through the operator's API and keeps it alive:
// it creates or updates the Node object (capacity, addresses, node info, labels, taints), renews
// the node's Lease in kube-node-lease every 10 s, and refreshes the Node's conditions (Ready,
// MemoryPressure, DiskPressure, PIDPressure) every minute or as soon as one changes.
package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"runtime"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"
)

// Defaults, as the kubelet has them.
const (
	DefaultLeaseInterval  = 10 * time.Second
	DefaultStatusInterval = time.Minute
	LeaseDurationSeconds  = 40
	LeaseNamespace        = corev1.NamespaceNodeLease
	MaxPods               = 110
	// Eviction thresholds of the kubelet's defaults: memory.available<100Mi, nodefs.available<10%,
	// pid.available<10%.
	DefaultMemoryThreshold = 100 << 20
	DefaultDiskFraction    = 0.10
	DefaultPIDFraction     = 0.10
)

// Config configures a Registrar.
type Config struct {
	Client   kubernetes.Interface
	NodeName string
	NodeIP   string
	// Hostname is the Hostname address; the node name when empty.
	Hostname string
	// DataDir is where ephemeral storage lives (capacity and DiskPressure).
	DataDir string
	// Port is the agent's HTTPS port (status.daemonEndpoints.kubeletEndpoint.port).
	Port   int32
	Labels map[string]string
	Taints []corev1.Taint
	// AgentVersion is reported as kubeletVersion.
	AgentVersion string
	// RuntimeVersion returns "containerd://<version>"; its error makes the node NotReady.
	RuntimeVersion func(ctx context.Context) (string, error)
	// ReadStats and ReadSystemInfo default to the real machine's (ReadStats, ReadSystemInfo).
	ReadStats      func() (Stats, error)
	ReadSystemInfo func() (SystemInfo, error)
	// MemoryThreshold (bytes), DiskFraction and PIDFraction are the free amounts below which a
	// pressure condition turns True; zero = the defaults.
	MemoryThreshold int64
	DiskFraction    float64
	PIDFraction     float64

	LeaseInterval  time.Duration
	StatusInterval time.Duration
	Clock          clock.WithTicker
	Logger         *slog.Logger
}

// Registrar keeps this machine's Node and Lease up to date.
type Registrar struct {
	cfg        Config
	log        *slog.Logger
	registered chan struct{}
	// last is the status last written, to detect changes.
	last []corev1.NodeCondition
	// lastWrite is when the Node status was last written.
	lastWrite time.Time
}

// New checks cfg and fills its defaults.
func New(cfg Config) (*Registrar, error) {
	switch {
	case cfg.Client == nil:
		return nil, errors.New("node registrar: Client is required")
	case cfg.NodeName == "":
		return nil, errors.New("node registrar: NodeName is required")
	case cfg.DataDir == "":
		return nil, errors.New("node registrar: DataDir is required")
	}
	if cfg.Hostname == "" {
		cfg.Hostname = cfg.NodeName
	}
	if cfg.ReadStats == nil {
		dir := cfg.DataDir
		cfg.ReadStats = func() (Stats, error) { return ReadStats(dir) }
	}
	if cfg.ReadSystemInfo == nil {
		dir := cfg.DataDir
		cfg.ReadSystemInfo = func() (SystemInfo, error) { return ReadSystemInfo(dir) }
	}
	if cfg.MemoryThreshold == 0 {
		cfg.MemoryThreshold = DefaultMemoryThreshold
	}
	if cfg.DiskFraction == 0 {
		cfg.DiskFraction = DefaultDiskFraction
	}
	if cfg.PIDFraction == 0 {
		cfg.PIDFraction = DefaultPIDFraction
	}
	if cfg.LeaseInterval == 0 {
		cfg.LeaseInterval = DefaultLeaseInterval
	}
	if cfg.StatusInterval == 0 {
		cfg.StatusInterval = DefaultStatusInterval
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.RealClock{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Registrar{cfg: cfg, log: cfg.Logger.With("component", "node"), registered: make(chan struct{})}, nil
}

// Registered is closed once the Node exists with its first status.
func (r *Registrar) Registered() <-chan struct{} { return r.registered }

// Run registers the node (retrying until it succeeds), then renews the Lease every
// LeaseInterval and the Node status on change or every StatusInterval, until ctx ends.
func (r *Registrar) Run(ctx context.Context) error {
	backoff := time.Second
	for {
		err := r.Register(ctx)
		if err == nil {
			break
		}
		r.log.Warn("registering the node failed; retrying", "error", err, "in", backoff)
		select {
		case <-ctx.Done():
			return nil
		case <-r.cfg.Clock.After(backoff):
		}
		backoff = min(2*backoff, 30*time.Second)
	}
	close(r.registered)
	t := r.cfg.Clock.NewTicker(r.cfg.LeaseInterval)
	defer t.Stop()
	for {
		if err := r.Heartbeat(ctx); err != nil && ctx.Err() == nil {
			r.log.Warn("heartbeat failed", "error", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C():
		}
	}
}

// Heartbeat renews the Lease and writes the Node status when a condition changed or
// StatusInterval passed.
func (r *Registrar) Heartbeat(ctx context.Context) error {
	leaseErr := r.RenewLease(ctx)
	conds := r.conditions(ctx)
	var statusErr error
	if conditionsChanged(r.last, conds) || r.cfg.Clock.Since(r.lastWrite) >= r.cfg.StatusInterval {
		statusErr = r.UpdateStatus(ctx)
	}
	return errors.Join(leaseErr, statusErr)
}

// Register creates the Node, or updates an existing one with this agent's labels and taints
// (other labels and taints stay), then writes its status.
func (r *Registrar) Register(ctx context.Context) error {
	nodes := r.cfg.Client.CoreV1().Nodes()
	want := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: r.cfg.NodeName, Labels: r.labels()},
		Spec:       corev1.NodeSpec{Taints: r.cfg.Taints},
	}
	_, err := nodes.Create(ctx, want, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
			cur, err := nodes.Get(ctx, r.cfg.NodeName, metav1.GetOptions{})
			if err != nil {
				return err
			}
			changed := false
			if cur.Labels == nil {
				cur.Labels = map[string]string{}
			}
			for k, v := range want.Labels {
				if cur.Labels[k] != v {
					cur.Labels[k], changed = v, true
				}
			}
			for _, t := range r.cfg.Taints {
				if !hasTaint(cur.Spec.Taints, t) {
					cur.Spec.Taints, changed = append(cur.Spec.Taints, t), true
				}
			}
			if !changed {
				return nil
			}
			_, err = nodes.Update(ctx, cur, metav1.UpdateOptions{})
			return err
		})
	}
	if err != nil {
		return fmt.Errorf("registering node %s: %w", r.cfg.NodeName, err)
	}
	if err := r.UpdateStatus(ctx); err != nil {
		return err
	}
	r.log.Info("node registered", "node", r.cfg.NodeName)
	return nil
}

func hasTaint(ts []corev1.Taint, t corev1.Taint) bool {
	for _, x := range ts {
		if x.Key == t.Key && x.Effect == t.Effect && x.Value == t.Value {
			return true
		}
	}
	return false
}

func (r *Registrar) labels() map[string]string {
	l := map[string]string{
		corev1.LabelHostname:   r.cfg.NodeName,
		corev1.LabelOSStable:   runtime.GOOS,
		corev1.LabelArchStable: runtime.GOARCH,
	}
	maps.Copy(l, r.cfg.Labels)
	return l
}

// PodsFor is how many pods a node with pod CIDR podCIDR can run: MaxPods, or fewer when the
// CIDR holds fewer addresses (less its network, gateway and broadcast addresses).
func PodsFor(podCIDR string) int64 {
	p, err := netip.ParsePrefix(podCIDR)
	if err != nil || !p.Addr().Is4() {
		return MaxPods
	}
	return min(MaxPods, int64(1)<<(32-p.Bits())-3)
}

// UpdateStatus writes the Node's full status: capacity, addresses, node info, conditions.
func (r *Registrar) UpdateStatus(ctx context.Context) error {
	si, err := r.cfg.ReadSystemInfo()
	if err != nil {
		r.log.Warn("reading system info", "error", err)
	}
	runtimeVersion := ""
	if r.cfg.RuntimeVersion != nil {
		runtimeVersion, _ = r.cfg.RuntimeVersion(ctx)
	}
	conds := r.conditions(ctx)
	nodes := r.cfg.Client.CoreV1().Nodes()
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur, err := nodes.Get(ctx, r.cfg.NodeName, metav1.GetOptions{})
		if err != nil {
			return err
		}
		now := metav1.NewTime(r.cfg.Clock.Now())
		st := &cur.Status
		maxPods := PodsFor(cur.Spec.PodCIDR)
		st.Capacity = corev1.ResourceList{
			corev1.ResourceCPU:              *resource.NewQuantity(int64(si.CPUs), resource.DecimalSI),
			corev1.ResourceMemory:           *resource.NewQuantity(si.MemoryBytes, resource.BinarySI),
			corev1.ResourcePods:             *resource.NewQuantity(maxPods, resource.DecimalSI),
			corev1.ResourceEphemeralStorage: *resource.NewQuantity(si.DiskBytes, resource.BinarySI),
		}
		// Allocatable keeps the eviction thresholds back, as the kubelet does.
		st.Allocatable = corev1.ResourceList{
			corev1.ResourceCPU:              *resource.NewQuantity(int64(si.CPUs), resource.DecimalSI),
			corev1.ResourceMemory:           *resource.NewQuantity(max(0, si.MemoryBytes-r.cfg.MemoryThreshold), resource.BinarySI),
			corev1.ResourcePods:             *resource.NewQuantity(maxPods, resource.DecimalSI),
			corev1.ResourceEphemeralStorage: *resource.NewQuantity(int64(float64(si.DiskBytes)*(1-r.cfg.DiskFraction)), resource.BinarySI),
		}
		st.Addresses = nil
		if r.cfg.NodeIP != "" {
			st.Addresses = append(st.Addresses, corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: r.cfg.NodeIP})
		}
		st.Addresses = append(st.Addresses, corev1.NodeAddress{Type: corev1.NodeHostName, Address: r.cfg.Hostname})
		st.DaemonEndpoints.KubeletEndpoint.Port = r.cfg.Port
		st.NodeInfo = corev1.NodeSystemInfo{
			MachineID:               si.MachineID,
			SystemUUID:              si.SystemUUID,
			BootID:                  si.BootID,
			KernelVersion:           si.KernelVersion,
			OSImage:                 si.OSImage,
			ContainerRuntimeVersion: runtimeVersion,
			KubeletVersion:          r.cfg.AgentVersion,
			KubeProxyVersion:        r.cfg.AgentVersion,
			OperatingSystem:         runtime.GOOS,
			Architecture:            si.Arch,
		}
		st.Conditions = mergeConditions(st.Conditions, conds, now)
		_, err = nodes.UpdateStatus(ctx, cur, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		return fmt.Errorf("updating node %s status: %w", r.cfg.NodeName, err)
	}
	r.last = conds
	r.lastWrite = r.cfg.Clock.Now()
	return nil
}

// RenewLease creates or renews the node's Lease (holder = node, 40 s duration).
func (r *Registrar) RenewLease(ctx context.Context) error {
	leases := r.cfg.Client.CoordinationV1().Leases(LeaseNamespace)
	now := metav1.NewMicroTime(r.cfg.Clock.Now())
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur, err := leases.Get(ctx, r.cfg.NodeName, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			l := &coordinationv1.Lease{
				ObjectMeta: metav1.ObjectMeta{Name: r.cfg.NodeName, Namespace: LeaseNamespace},
				Spec: coordinationv1.LeaseSpec{
					HolderIdentity:       ptr.To(r.cfg.NodeName),
					LeaseDurationSeconds: ptr.To[int32](LeaseDurationSeconds),
					AcquireTime:          &now,
					RenewTime:            &now,
				},
			}
			if owner, err := r.nodeOwnerRef(ctx); err == nil {
				l.OwnerReferences = []metav1.OwnerReference{owner}
			}
			_, err = leases.Create(ctx, l, metav1.CreateOptions{})
			return err
		}
		if err != nil {
			return err
		}
		cur.Spec.HolderIdentity = ptr.To(r.cfg.NodeName)
		cur.Spec.LeaseDurationSeconds = ptr.To[int32](LeaseDurationSeconds)
		cur.Spec.RenewTime = &now
		_, err = leases.Update(ctx, cur, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		return fmt.Errorf("renewing lease of node %s: %w", r.cfg.NodeName, err)
	}
	return nil
}

// nodeOwnerRef makes the Node own its Lease, so that deleting the Node deletes the Lease.
func (r *Registrar) nodeOwnerRef(ctx context.Context) (metav1.OwnerReference, error) {
	n, err := r.cfg.Client.CoreV1().Nodes().Get(ctx, r.cfg.NodeName, metav1.GetOptions{})
	if err != nil {
		return metav1.OwnerReference{}, err
	}
	return metav1.OwnerReference{APIVersion: "v1", Kind: "Node", Name: n.Name, UID: n.UID}, nil
}
