package operator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/bosun-gitops/bosun/bootstrap"
	"github.com/bosun-gitops/bosun/internal/memtrim"
	"github.com/bosun-gitops/bosun/internal/resource"
	"github.com/bosun-gitops/bosun/operator/apiserver"
	"github.com/bosun-gitops/bosun/operator/controllers"
	"github.com/bosun-gitops/bosun/operator/controllers/machine"
	"github.com/bosun-gitops/bosun/operator/gitsync"
	"github.com/bosun-gitops/bosun/operator/plan"
	"github.com/bosun-gitops/bosun/operator/preview"
	"github.com/bosun-gitops/bosun/operator/store"
	"github.com/bosun-gitops/bosun/operator/webhook"
	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"golang.org/x/crypto/ssh"
	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// electionName is the etcd key prefix of the leader election: each campaigning operator holds
// one key under electionName + "/", and the oldest leads.
const electionName = "/bosun/leader"

// leaseTTLSeconds is how long the etcd election session outlives a crashed leader: another
// operator takes over within this time.
const leaseTTLSeconds = 10

var nowFunc = time.Now

// Operator is a running control plane; Run starts it.
type Operator struct {
	cfg   Config
	ready chan struct{}
	hooks *webhook.Receiver // nil until Run
	plans *plan.Handler

	signer ssh.Signer
	// metrics is served on the API server's /metrics: the Go runtime, the process, the API
	// server's requests and, while leading, Git sync.
	metrics *prometheus.Registry

	mu        sync.Mutex
	server    *apiserver.Server
	store     *store.Store
	previews  *preview.Manager // the leader's, while it leads
	debugAddr net.Addr         // the profiling endpoint's, if on
}

// New returns an operator for a validated configuration.
func New(cfg Config) (*Operator, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Operator{cfg: cfg, ready: make(chan struct{}), metrics: newMetricsRegistry()}, nil
}

// Run is New followed by Operator.Run.
func Run(ctx context.Context, cfg Config) error {
	op, err := New(cfg)
	if err != nil {
		return err
	}
	return op.Run(ctx)
}

// Ready is closed once the API server is serving.
func (o *Operator) Ready() <-chan struct{} { return o.ready }

// Server returns the API server once Ready is closed.
func (o *Operator) Server() *apiserver.Server {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.server
}

// DebugAddr returns the address of the profiling endpoint (Config.DebugListen) once Ready is
// closed; nil when it is off.
func (o *Operator) DebugAddr() net.Addr {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.debugAddr
}

// Store returns the object store once Ready is closed.
func (o *Operator) Store() *store.Store {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.store
}

// Run starts every component and blocks until ctx ends or one of them fails.
func (o *Operator) Run(ctx context.Context) error {
	cfg := o.cfg
	log := cfg.Logger.With("component", "operator")
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("creating data dir: %w", err)
	}

	applyGCSettings(cfg, log)
	rctx, stopRelease := context.WithCancel(ctx)
	defer stopRelease()
	go memtrim.ReleaseWhenIdle(rctx, memtrim.OperatorThresholds, log)
	if cfg.DebugListen != "" {
		// Listening before etcd starts lets a profile cover the start-up too.
		debug, err := listenDebug(cfg.DebugListen, cfg.Logger)
		if err != nil {
			return err
		}
		o.mu.Lock()
		o.debugAddr = debug.Addr()
		o.mu.Unlock()
		dctx, stop := context.WithCancel(ctx)
		defer stop()
		go func() {
			if err := debug.Run(dctx); err != nil {
				log.Error("profiling endpoint stopped", "err", err)
			}
		}()
	}

	client, closeEtcd, err := o.connectEtcd(ctx)
	if err != nil {
		return err
	}
	defer closeEtcd()

	// The SSH identity machines authorize (`bosun ssh-key` prints it); created on first start.
	signer, err := bootstrap.LoadOrCreateIdentity(filepath.Join(cfg.DataDir, bootstrap.IdentityFile))
	if err != nil {
		return err
	}
	o.signer = signer

	st := store.New(client, store.Options{Logger: cfg.Logger, MediaType: cfg.StorageMediaType})
	for _, c := range st.Collectors() {
		if err := o.metrics.Register(c); err != nil {
			return fmt.Errorf("registering the store metrics: %w", err)
		}
	}
	if err := ensureSystemNamespaces(ctx, st); err != nil {
		return err
	}
	hooks, plans, err := o.newPullRequestHandlers(st)
	if err != nil {
		return err
	}
	srv, err := apiserver.New(ctx, apiserver.Config{
		Listen:      cfg.Listen,
		DataDir:     cfg.DataDir,
		ServerNames: serverNames(cfg),
		Store:       st,
		Logger:      cfg.Logger,
		Metrics:     o.metrics,
		Hooks:       hooks,
		Plans:       plans,
	})
	if err != nil {
		return fmt.Errorf("starting API server: %w", err)
	}
	o.mu.Lock()
	o.server, o.store = srv, st
	o.mu.Unlock()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 4)
	var wg sync.WaitGroup
	start := func(name string, run func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := run(ctx); err != nil && !errors.Is(err, context.Canceled) {
				errc <- fmt.Errorf("%s: %w", name, err)
			}
		}()
	}
	start("api server", srv.Run)
	start("leader", func(ctx context.Context) error { return o.lead(ctx, client, st) })

	select {
	case <-srv.Ready():
		close(o.ready)
		log.Info("operator ready", "api", srv.URL(), "kubeconfig", srv.AdminKubeconfigPath(),
			"repo", gitsync.RedactURL(cfg.Repo), "branch", cfg.Branch, "path", cfg.Path)
	case err := <-errc:
		cancel()
		wg.Wait()
		return err
	case <-ctx.Done():
	}

	var runErr error
	select {
	case runErr = <-errc:
	case <-ctx.Done():
	}
	cancel()
	wg.Wait()
	return runErr
}

func (o *Operator) connectEtcd(ctx context.Context) (*clientv3.Client, func(), error) {
	cfg := o.cfg
	if len(cfg.Etcd.Endpoints) > 0 {
		client, err := store.Connect(ctx, cfg.Etcd)
		if err != nil {
			return nil, nil, fmt.Errorf("connecting to etcd %v: %w", cfg.Etcd.Endpoints, err)
		}
		return client, func() { client.Close() }, nil
	}
	etcd, err := store.StartEtcd(ctx, store.EtcdConfig{
		Name:    "bosun",
		DataDir: filepath.Join(cfg.DataDir, "etcd"),
		Logger:  cfg.Logger,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("starting embedded etcd in %s: %w", filepath.Join(cfg.DataDir, "etcd"), err)
	}
	for _, c := range etcd.Collectors() {
		if err := o.metrics.Register(c); err != nil {
			etcd.Close()
			return nil, nil, fmt.Errorf("registering the etcd metrics: %w", err)
		}
	}
	// The database file keeps the size compaction freed inside it until defragmented (see
	// store.DBSize): at start, before the API serves, and while serving once mostly free.
	log := cfg.Logger.With("component", "etcd")
	etcd.DefragmentAtStart(ctx, log)
	dctx, stopDefrag := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		etcd.RunDefragmenter(dctx, store.DefragCheckInterval, store.ServingDefrag, log)
	}()
	return etcd.Client(), func() {
		stopDefrag()
		<-done
		etcd.Close()
	}, nil
}

// lead campaigns for leadership and runs the reconcilers while this operator leads. Losing the
// etcd session ends Run with an error, as kube-controller-manager does: a restart is the only
// state that is certainly clean.
func (o *Operator) lead(ctx context.Context, client *clientv3.Client, st *store.Store) error {
	cfg := o.cfg
	log := cfg.Logger.With("component", "leader")
	session, err := concurrency.NewSession(client, concurrency.WithTTL(leaseTTLSeconds), concurrency.WithContext(ctx))
	if err != nil {
		return fmt.Errorf("creating etcd session: %w", err)
	}
	defer session.Close()
	identity := cfg.Identity
	if identity == "" {
		host, _ := os.Hostname()
		identity = fmt.Sprintf("%s-%d", host, os.Getpid())
	}
	election := concurrency.NewElection(session, electionName)
	log.Info("campaigning for leadership", "identity", identity)
	if err := election.Campaign(ctx, identity); err != nil {
		return fmt.Errorf("campaigning: %w", err)
	}
	log.Info("became leader", "identity", identity)
	if err := recordLeader(ctx, st, identity); err != nil {
		log.Warn("recording leadership in the kube-system/bosun-operator lease", "err", err)
	}

	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go renewLeaderLease(lctx, client, session, election, st, identity, log)
	ctrls, recorder, factory, err := buildControllers(st, cfg.Logger, map[string]controllers.Constructor{
		machine.Name: machine.NewConstructor(o.machineOptions()),
	})
	if err != nil {
		return err
	}
	pr := o.newPullRequestLeader(st, factory.Lookup)
	gcfg := cfg.gitSyncConfig()
	gcfg.OnSynced = pr.onSynced
	syncer, err := gitsync.New(gcfg, st, cfg.Logger)
	if err != nil {
		return err
	}
	if err := syncer.Register(o.metrics); err != nil {
		var dup prometheus.AlreadyRegisteredError
		if !errors.As(err, &dup) {
			return fmt.Errorf("registering the Git sync metrics: %w", err)
		}
	}
	pr.start(lctx, syncer)
	errc := make(chan error, 4)
	go func() { errc <- syncer.Run(lctx) }()
	go func() { errc <- st.RunCompactor(lctx, cfg.CompactInterval, cfg.CompactKeep) }()
	go func() { errc <- recorder.Run(lctx) }()
	go func() { errc <- ctrls.Run(lctx) }()

	select {
	case <-session.Done():
		cancel()
		return errors.New("lost leadership (etcd session expired); restart the operator")
	case err := <-errc:
		cancel()
		return err
	case <-ctx.Done():
		// Resign so that another operator takes over at once instead of after the session TTL.
		rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), 2e9)
		defer rcancel()
		_ = election.Resign(rctx)
		return nil
	}
}

// renewLeaderLease advances the renewTime of the kube-system/bosun-operator Lease on every
// keepalive of the etcd session that makes this operator leader, as Kubernetes leader election
// renews its Lease: readers (kubectl, `bosun status`) see the Lease current while the session
// lives and expired (renewTime + leaseDurationSeconds past) once it can lapse. The keepalive
// channel closes when the session's lease expires or ctx ends.
func renewLeaderLease(ctx context.Context, client *clientv3.Client, session *concurrency.Session, election *concurrency.Election,
	st *store.Store, identity string, log *slog.Logger) {
	keepalives, err := client.KeepAlive(ctx, session.Lease())
	if err != nil {
		log.Warn("following the etcd session's keepalives to renew the leader lease", "err", err)
		return
	}
	for range keepalives {
		err := renewLeader(ctx, st, identity)
		if errors.Is(err, errNotHolder) || apierrors.IsNotFound(err) {
			// The first write failed, or someone edited the Lease: claim it again, but only
			// while etcd still names this session leader, so that an operator that stalled past
			// its session never overwrites its successor.
			resp, lerr := election.Leader(ctx)
			if lerr == nil && len(resp.Kvs) > 0 && string(resp.Kvs[0].Key) == election.Key() {
				err = recordLeader(ctx, st, identity)
			}
		}
		if err != nil && ctx.Err() == nil {
			log.Warn("renewing the kube-system/bosun-operator lease", "err", err)
		}
	}
}

var errNotHolder = errors.New("the leader lease names another holder")

// renewLeader sets the leader Lease's renewTime if it names identity. The update carries the
// resourceVersion read, so it fails rather than overwrite a successor's claim.
func renewLeader(ctx context.Context, st *store.Store, identity string) error {
	obj, err := st.Get(ctx, resource.Leases, metav1.NamespaceSystem, leaderLeaseName)
	if err != nil {
		return err
	}
	lease := obj.(*coordinationv1.Lease).DeepCopy()
	if lease.Spec.HolderIdentity == nil || *lease.Spec.HolderIdentity != identity {
		return errNotHolder
	}
	now := metav1.NewMicroTime(nowFunc())
	lease.Spec.RenewTime = &now
	_, err = st.Update(ctx, resource.Leases, lease)
	return err
}
