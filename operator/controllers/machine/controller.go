package machine

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/bosun-gitops/bosun/bootstrap"
	"github.com/bosun-gitops/bosun/internal/pki"
	"github.com/bosun-gitops/bosun/internal/resource"
	"github.com/bosun-gitops/bosun/operator/controllers"
	bosunv1 "github.com/bosun-gitops/bosun/repo-layout/v1alpha1"
	"golang.org/x/crypto/ssh"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"
)

// Name is the controller's name.
const Name = "machine"

// Finalizer keeps a deleted Machine until its node is drained and its agent removed.
const Finalizer = "bosun.dev/machine-retire"

// Options are the controller's dependencies beyond the shared controllers.Context.
type Options struct {
	// Signer is the operator's SSH identity.
	Signer ssh.Signer
	// CA is the cluster CA: it signs the nodes' client certificates.
	CA *pki.CA
	// NodeServingCA signs the nodes' serving certificates (their logs endpoints).
	NodeServingCA *pki.CA
	// ServerURL is the API address the agents use (https://<advertise-address>:<port>).
	ServerURL string
	// Binary returns the bosun executable for a GOARCH.
	Binary func(arch string) (bootstrap.Binary, error)
	// Digest is the operator's own binary digest: agents with another one are upgraded.
	Digest string
	// Registry is written into every agent's config (plain-HTTP registries, mirrors).
	Registry bootstrap.RegistryConfig
	// Dial opens SSH's TCP connections; nil = net.Dialer.
	Dial   bootstrap.DialFunc
	Layout bootstrap.Layout
	// MaxParallel bounds concurrent bootstraps (default 3).
	MaxParallel int
	// ReadyTimeout bounds the wait for the Node to turn Ready (default 3m); DrainTimeout the
	// wait for a retiring node's pods to go (default 2m).
	ReadyTimeout, DrainTimeout time.Duration
	// RetryBase and RetryMax shape the retry backoff of failed bootstraps (default 5s, 5m).
	RetryBase, RetryMax time.Duration
	// Bootstrapper runs the bootstraps; nil = over SSH. Tests of the controller's own logic
	// (parallelism, retries, rollouts) pass a fake.
	Bootstrapper Bootstrapper
}

// Bootstrapper is what the controller needs of one bootstrap run: bring the machine to a Ready
// node running the operator's binary, reporting progress into the Machine's status and events.
type Bootstrapper interface {
	Bootstrap(ctx context.Context, m *bosunv1.Machine, upgrade bool) (bootstrap.Result, error)
}

// BootstrapFunc adapts a function to Bootstrapper.
type BootstrapFunc func(ctx context.Context, m *bosunv1.Machine, upgrade bool) (bootstrap.Result, error)

// Bootstrap implements Bootstrapper.
func (f BootstrapFunc) Bootstrap(ctx context.Context, m *bosunv1.Machine, upgrade bool) (bootstrap.Result, error) {
	return f(ctx, m, upgrade)
}

func (o *Options) defaults() {
	if o.MaxParallel <= 0 {
		o.MaxParallel = 3
	}
	if o.ReadyTimeout == 0 {
		o.ReadyTimeout = 3 * time.Minute
	}
	if o.DrainTimeout == 0 {
		o.DrainTimeout = 2 * time.Minute
	}
	if o.RetryBase == 0 {
		o.RetryBase = 5 * time.Second
	}
	if o.RetryMax == 0 {
		o.RetryMax = 5 * time.Minute
	}
	if o.Layout == (bootstrap.Layout{}) {
		o.Layout = bootstrap.DefaultLayout()
	}
}

// backoff is the wait before the retry that follows the given number of consecutive failures:
// RetryBase doubled after each failure, at most RetryMax.
func (o *Options) backoff(failures int32) time.Duration {
	d := o.RetryBase << min(max(failures-1, 0), 16)
	if d > o.RetryMax || d <= 0 {
		d = o.RetryMax
	}
	return d
}

// Controller bootstraps, upgrades and retires machines.
type Controller struct {
	c        *controllers.Context
	o        Options
	log      *slog.Logger
	queue    *controllers.Queue
	machines cache.SharedIndexInformer
	nodes    cache.SharedIndexInformer
	pods     cache.SharedIndexInformer
	sem      chan struct{}

	mu   sync.Mutex
	jobs map[string]*job
	// blocked holds failed machines until their retry time (zero: until the spec changes).
	blocked map[string]block
	// written is the resourceVersion of the last status a finished job wrote, per machine: until
	// the informer cache has caught up with it, the cached status is stale and must not start
	// another job (it would re-run a bootstrap that just completed).
	written map[string]int64
	// failedUpgrades are the machines whose agent upgrade failed, until one of their bootstraps
	// succeeds: while there is one, no other upgrade starts. The Upgraded condition says the
	// same, but the informer cache may not show it yet when the job ends.
	failedUpgrades map[string]bool
	boot           Bootstrapper
}

// noteWritten records the resourceVersion of a job's final status write.
func (mc *Controller) noteWritten(m *bosunv1.Machine) {
	if m == nil {
		return
	}
	rv, err := strconv.ParseInt(m.ResourceVersion, 10, 64)
	if err != nil {
		return
	}
	mc.mu.Lock()
	defer mc.mu.Unlock()
	mc.written[m.Name] = rv
}

// staleCacheLocked says whether the cached machine is older than the last status a job wrote.
// mc.mu is held.
func (mc *Controller) staleCacheLocked(m *bosunv1.Machine) bool {
	rv, err := strconv.ParseInt(m.ResourceVersion, 10, 64)
	if err != nil {
		return false
	}
	w, ok := mc.written[m.Name]
	if ok && rv >= w {
		delete(mc.written, m.Name)
		return false
	}
	return ok
}

type block struct {
	hash  string
	until time.Time
}

// block keeps the machine from being bootstrapped (or retired, hash "retire") again with the same
// spec before until; the informer cache may not show the failure yet when the job ends.
func (mc *Controller) block(name, hash string, until time.Time) {
	mc.mu.Lock()
	defer mc.mu.Unlock()
	mc.blocked[name] = block{hash: hash, until: until}
}

// waitBlocked says whether the machine waits for a retry, and how long.
func (mc *Controller) waitBlocked(name, hash string) (bool, time.Duration) {
	mc.mu.Lock()
	defer mc.mu.Unlock()
	b, ok := mc.blocked[name]
	if !ok {
		return false, 0
	}
	if b.hash != hash {
		delete(mc.blocked, name)
		return false, 0
	}
	if b.until.IsZero() {
		return true, 0
	}
	if d := b.until.Sub(mc.c.Clock.Now()); d > 0 {
		return true, d
	}
	delete(mc.blocked, name)
	return false, 0
}

// job is one running bootstrap or retirement.
type job struct {
	hash    string
	upgrade bool
	cancel  context.CancelFunc
}

var _ controllers.Controller = (*Controller)(nil)

// NewConstructor returns the controller's constructor for controllers.Build.
func NewConstructor(o Options) controllers.Constructor {
	return func(c *controllers.Context) (controllers.Controller, error) { return New(c, o) }
}

// New builds the machine controller.
func New(c *controllers.Context, o Options) (*Controller, error) {
	o.defaults()
	if o.Signer == nil || o.CA == nil || o.NodeServingCA == nil || o.Binary == nil {
		return nil, errors.New("machine controller: Signer, CA, NodeServingCA and Binary are required")
	}
	mc := &Controller{
		c:        c,
		o:        o,
		log:      c.Logger.With("component", Name),
		machines: c.Informers.For(resource.Machines),
		nodes:    c.Informers.For(resource.Nodes),
		pods:     c.Informers.For(resource.Pods),
		sem:      make(chan struct{}, o.MaxParallel),
		jobs:     map[string]*job{},
		blocked:  map[string]block{},
		written:  map[string]int64{},

		failedUpgrades: map[string]bool{},
		boot:           o.Bootstrapper,
	}
	if mc.boot == nil {
		mc.boot = BootstrapFunc(mc.runBootstrap)
	}
	mc.queue = controllers.NewQueue(Name, c.Logger, mc.reconcile)
	mc.machines.AddEventHandler(mc.queue.Handler())
	// A machine that finishes (or fails) its upgrade frees (or holds) a slot of the rollout:
	// look at every machine when the Upgraded condition of one changes.
	mc.machines.AddEventHandler(cache.ResourceEventHandlerFuncs{
		UpdateFunc: func(old, cur any) {
			o, ok1 := old.(*bosunv1.Machine)
			n, ok2 := cur.(*bosunv1.Machine)
			if ok1 && ok2 && upgradedState(o) != upgradedState(n) {
				mc.enqueueAll()
			}
		},
		DeleteFunc: func(any) { mc.enqueueAll() },
	})
	// A node's changes matter to its machine (same name), and the end of one upgrade lets the
	// next machine start: look at every machine.
	mc.nodes.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { mc.enqueueAll() },
		UpdateFunc: func(_, obj any) { mc.enqueueNode(obj) },
		DeleteFunc: func(obj any) { mc.enqueueAll() },
	})
	return mc, nil
}

func (mc *Controller) enqueueNode(obj any) {
	if n, ok := obj.(*corev1.Node); ok {
		mc.queue.Add(n.Name)
	}
}

func (mc *Controller) enqueueAll() {
	for _, k := range mc.machines.GetStore().ListKeys() {
		mc.queue.Add(k)
	}
}

// Name implements controllers.Controller.
func (mc *Controller) Name() string { return Name }

// Run reconciles until ctx ends, then cancels running bootstraps.
func (mc *Controller) Run(ctx context.Context) error {
	go func() {
		<-ctx.Done()
		mc.mu.Lock()
		for _, j := range mc.jobs {
			j.cancel()
		}
		mc.mu.Unlock()
	}()
	mc.queue.Run(ctx, mc.c.Workers)
	return nil
}

func (mc *Controller) reconcile(ctx context.Context, key string) (controllers.Result, error) {
	obj, exists, err := mc.machines.GetStore().GetByKey(key)
	if err != nil || !exists {
		return controllers.Result{}, err
	}
	m := obj.(*bosunv1.Machine)
	// The running job and the staleness of m are looked at under one lock: a job that ends
	// between the two looks would otherwise leave m, read before its last write, looking like a
	// machine that still needs the bootstrap that just completed.
	mc.mu.Lock()
	j, stale := mc.jobs[m.Name], mc.staleCacheLocked(m)
	mc.mu.Unlock()
	if j == nil && stale {
		// The watch event of the job's last write is on its way and enqueues the machine again.
		return controllers.Result{RequeueAfter: time.Second}, nil
	}
	if m.DeletionTimestamp != nil {
		if slices.Contains(m.Finalizers, Finalizer) {
			if wait, d := mc.waitBlocked(m.Name, "retire"); wait {
				return controllers.Result{RequeueAfter: d}, nil
			}
			mc.start(m.Name, "retire", false, mc.retire)
		}
		return controllers.Result{}, nil
	}
	if !slices.Contains(m.Finalizers, Finalizer) {
		return controllers.Result{}, mc.addFinalizer(ctx, m.Name)
	}
	want := mc.specHash(m)
	if j != nil {
		if j.hash != want && j.hash != "retire" {
			mc.log.Info("machine spec changed during bootstrap; restarting it", "machine", m.Name)
			j.cancel()
		}
		return controllers.Result{}, nil
	}
	if wait, d := mc.waitBlocked(m.Name, want); wait {
		return controllers.Result{RequeueAfter: d}, nil
	}
	st := m.Status
	upToDate := st.ObservedSpecHash == want
	switch {
	case st.Phase == bosunv1.MachineFailed && upToDate && st.NextRetry == nil:
		return controllers.Result{}, nil // permanent (host key): wait for a spec change
	case st.Phase == bosunv1.MachineFailed && upToDate && mc.c.Clock.Now().Before(st.NextRetry.Time):
		return controllers.Result{RequeueAfter: st.NextRetry.Sub(mc.c.Clock.Now())}, nil
	case st.Phase == bosunv1.MachineReady && upToDate && st.AgentDigest == mc.o.Digest:
		return controllers.Result{}, nil
	case st.Phase == bosunv1.MachineReady && upToDate:
		// Upgrade: at most maxUnavailable machines at a time; a failed upgrade stops the rollout.
		if ok, why := mc.claimUpgradeSlot(m.Name, want); !ok {
			mc.log.Debug("upgrade waits", "machine", m.Name, "reason", why)
			return controllers.Result{RequeueAfter: 10 * time.Second}, nil
		}
		return controllers.Result{}, nil
	}
	// A retry of a failed upgrade is an upgrade too: it reports as one and keeps the rollout
	// stopped until it succeeds.
	mc.start(m.Name, want, upgradedState(m) == metav1.ConditionFalse, mc.bootstrap)
	return controllers.Result{}, nil
}

// upgradedState is the status of the machine's Upgraded condition ("" without one).
func upgradedState(m *bosunv1.Machine) metav1.ConditionStatus {
	if c := findCondition(m.Status.Conditions, ConditionUpgraded); c != nil {
		return c.Status
	}
	return ""
}

// claimUpgradeSlot starts an upgrade of name unless the rollout is stopped (another machine's
// upgrade failed) or maxUnavailable machines are being upgraded already. Counting and starting
// happen under one lock, so that concurrent reconciles cannot both take the last slot.
func (mc *Controller) claimUpgradeSlot(name, hash string) (bool, string) {
	limit := int(mc.c.Cluster().Spec.Upgrade.MaxUnavailable)
	if limit < 1 {
		limit = 1
	}
	mc.mu.Lock()
	defer mc.mu.Unlock()
	upgrading := map[string]bool{}
	for n, j := range mc.jobs {
		if j.upgrade && n != name {
			upgrading[n] = true
		}
	}
	for _, obj := range mc.machines.GetStore().List() {
		m := obj.(*bosunv1.Machine)
		if m.Name == name || m.DeletionTimestamp != nil {
			continue // a machine being retired no longer holds up the rollout
		}
		c := findCondition(m.Status.Conditions, ConditionUpgraded)
		if mc.failedUpgrades[m.Name] || c != nil && c.Status == metav1.ConditionFalse && c.Reason == ReasonUpgradeFailed {
			return false, "the upgrade of machine " + m.Name + " failed; the rollout stopped"
		}
		if c != nil && c.Status == metav1.ConditionFalse {
			upgrading[m.Name] = true // being upgraded (or the cache has not seen the end yet)
		}
	}
	if len(upgrading) >= limit {
		return false, fmt.Sprintf("%d machines are being upgraded (maxUnavailable %d)", len(upgrading), limit)
	}
	mc.startLocked(name, hash, true, mc.bootstrap)
	return true, ""
}

// start runs fn for the machine in a goroutine unless one runs already.
func (mc *Controller) start(name, hash string, upgrade bool, fn func(ctx context.Context, name string, upgrade bool) error) {
	mc.mu.Lock()
	defer mc.mu.Unlock()
	mc.startLocked(name, hash, upgrade, fn)
}

// startLocked is start with mc.mu held.
func (mc *Controller) startLocked(name, hash string, upgrade bool, fn func(ctx context.Context, name string, upgrade bool) error) {
	if _, ok := mc.jobs[name]; ok {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	mc.jobs[name] = &job{hash: hash, upgrade: upgrade, cancel: cancel}
	go func() {
		defer cancel()
		err := func() error {
			select {
			case mc.sem <- struct{}{}:
				defer func() { <-mc.sem }()
			case <-ctx.Done():
				return ctx.Err()
			}
			return fn(ctx, name, upgrade)
		}()
		if err != nil && !errors.Is(err, context.Canceled) {
			mc.log.Warn("machine job failed", "machine", name, "err", err)
		}
		mc.mu.Lock()
		delete(mc.jobs, name)
		mc.mu.Unlock()
		mc.queue.Add(name)
		if upgrade {
			mc.enqueueAll() // the next machine of the rollout
		}
	}()
}

// specHash identifies what a bootstrap of m installs, apart from the binary.
func (mc *Controller) specHash(m *bosunv1.Machine) string {
	cl := mc.c.Cluster().Spec
	b, _ := json.Marshal(struct {
		Spec                    bosunv1.MachineSpec
		PodCIDR, Domain, Server string
		Registry                bootstrap.RegistryConfig
	}{m.Spec, cl.PodCIDR, cl.ClusterDomain, mc.o.ServerURL, mc.o.Registry})
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:8])
}

func (mc *Controller) addFinalizer(ctx context.Context, name string) error {
	return mc.updateMachine(ctx, name, func(m *bosunv1.Machine) bool {
		if slices.Contains(m.Finalizers, Finalizer) || m.DeletionTimestamp != nil {
			return false
		}
		m.Finalizers = append(m.Finalizers, Finalizer)
		return true
	})
}

// updateMachine applies change to the stored machine's metadata/spec, retrying conflicts.
func (mc *Controller) updateMachine(ctx context.Context, name string, change func(*bosunv1.Machine) bool) error {
	for range 5 {
		obj, err := mc.c.Store.Get(ctx, resource.Machines, "", name)
		if apierrors.IsNotFound(err) {
			return nil
		}
		if err != nil {
			return err
		}
		m := obj.(*bosunv1.Machine).DeepCopy()
		if !change(m) {
			return nil
		}
		_, err = mc.c.Store.Update(ctx, resource.Machines, m)
		if apierrors.IsConflict(err) {
			continue
		}
		if apierrors.IsNotFound(err) {
			return nil
		}
		return err
	}
	return fmt.Errorf("updating machine %s: too many conflicts", name)
}

// updateStatus applies change to the stored machine's status, retrying conflicts.
func (mc *Controller) updateStatus(ctx context.Context, name string, change func(*bosunv1.MachineStatus)) (*bosunv1.Machine, error) {
	ctx = context.WithoutCancel(ctx) // record the outcome even when the job was cancelled
	for range 5 {
		obj, err := mc.c.Store.Get(ctx, resource.Machines, "", name)
		if err != nil {
			return nil, err
		}
		m := obj.(*bosunv1.Machine).DeepCopy()
		change(&m.Status)
		out, err := mc.c.Store.UpdateStatus(ctx, resource.Machines, m)
		if apierrors.IsConflict(err) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("updating status of machine %s: %w", name, err)
		}
		return out.(*bosunv1.Machine), nil
	}
	return nil, fmt.Errorf("updating status of machine %s: too many conflicts", name)
}

// nodeIP is the address the node is known by: the machine's address, resolved if it is a name.
func nodeIP(ctx context.Context, address string) (string, error) {
	if ip := net.ParseIP(address); ip != nil {
		return ip.String(), nil
	}
	ips, err := net.DefaultResolver.LookupIPAddr(ctx, address)
	if err != nil || len(ips) == 0 {
		return "", fmt.Errorf("resolving %s: %w", address, errors.Join(err, errors.New("no addresses")))
	}
	return ips[0].IP.String(), nil
}

// checkServerURL refuses an API address that machines cannot reach.
func checkServerURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || u.Hostname() == "" {
		return fmt.Errorf("the operator's API address %q is not a URL", s)
	}
	if ip := net.ParseIP(u.Hostname()); ip != nil && (ip.IsLoopback() || ip.IsUnspecified()) || u.Hostname() == "localhost" {
		return fmt.Errorf("the operator's API address %s is not reachable from machines: start the operator with --advertise-address set to an address the machines can reach", s)
	}
	return nil
}
