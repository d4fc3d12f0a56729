package nodeagent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/bosun-gitops/bosun/internal/memtrim"
	"github.com/bosun-gitops/bosun/internal/version"
	"github.com/bosun-gitops/bosun/nodeagent/logs"
	"github.com/bosun-gitops/bosun/nodeagent/node"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
)

// resyncPeriod is how often every pod is handed to the pod manager again (SyncAll).
const resyncPeriod = time.Minute

// PodManager is what the wiring feeds from the pod informer; pods.Manager implements it.
type PodManager interface {
	UpdatePod(pod *corev1.Pod)
	DeletePod(pod *corev1.Pod)
	// SyncAll hands over every pod bound to the node; pods not in the list are cleaned up.
	SyncAll(pods []*corev1.Pod)
	// Run drives the workers until ctx ends.
	Run(ctx context.Context) error
}

// PodEnv is what a PodManager is built from.
type PodEnv struct {
	Config  Config
	Client  kubernetes.Interface
	NodeIP  string
	PodCIDR string
	// Status, Objects and Recorder implement pods.StatusWriter, pods.ObjectGetter and
	// pods.EventRecorder against the API.
	Status interface {
		UpdatePodStatus(context.Context, *corev1.Pod) error
		DeletePod(context.Context, *corev1.Pod) error
	}
	Objects  apiObjects
	Recorder interface {
		Eventf(pod *corev1.Pod, eventType, reason, messageFmt string, args ...any)
	}
	Allocatable corev1.ResourceList
	// Metrics is the registry served on the debug endpoint's /metrics.
	Metrics prometheus.Registerer
	Logger  *slog.Logger
}

// Deps are the parts built by other packages; nil fields fall back to defaults.
type Deps struct {
	// NewPodManager builds the pod workers (containerd, CNI) once the pod CIDR is known.
	NewPodManager func(ctx context.Context, env PodEnv) (PodManager, error)
	// RuntimeVersion reports "containerd://<version>"; an error makes the node NotReady.
	RuntimeVersion func(ctx context.Context) (string, error)
	// Registrar overrides node registration settings (tests shorten the intervals).
	Registrar func(*node.Config)
	// RenewalInterval is how often the running agent checks whether its certificates are due
	// for renewal; 0 = hourly (tests shorten it).
	RenewalInterval time.Duration
}

// Agent is a running `bosun agent`.
type Agent struct {
	cfg   Config
	deps  Deps
	log   *slog.Logger
	ready chan struct{}

	mu          sync.Mutex
	listenAddr  net.Addr
	debugAddr   net.Addr
	podInformer cache.SharedIndexInformer
}

// Run runs the agent with cfg until ctx ends.
func Run(ctx context.Context, cfg Config) error {
	a, err := New(cfg, DefaultDeps(cfg))
	if err != nil {
		return err
	}
	return a.Run(ctx)
}

// New checks cfg; Run does the work.
func New(cfg Config, deps Deps) (*Agent, error) {
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Agent{cfg: cfg, deps: deps, log: log.With("component", "agent", "node", cfg.NodeName), ready: make(chan struct{})}, nil
}

// Ready is closed once the node is registered, the logs endpoint serves and the pod informer
// has synced.
func (a *Agent) Ready() <-chan struct{} { return a.ready }

// ListenAddr is the bound address of the logs endpoint (after Ready).
func (a *Agent) ListenAddr() net.Addr { a.mu.Lock(); defer a.mu.Unlock(); return a.listenAddr }

// DebugAddr is the bound loopback metrics address (after Ready), nil when disabled.
func (a *Agent) DebugAddr() net.Addr { a.mu.Lock(); defer a.mu.Unlock(); return a.debugAddr }

// RESTConfig is the client configuration from the agent's credentials.
func (c Config) RESTConfig() *rest.Config {
	return &rest.Config{
		Host:      c.Server,
		UserAgent: "bosun-agent/" + version.Version,
		QPS:       50,
		Burst:     100,
		TLSClientConfig: rest.TLSClientConfig{
			CAFile: c.CAFile, CertFile: c.CertFile, KeyFile: c.KeyFile,
		},
	}
}

// Run registers the node, serves logs and metrics, and feeds the pods bound to this node to the
// pod manager, until ctx ends.
func (a *Agent) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	client, err := kubernetes.NewForConfig(a.cfg.RESTConfig())
	if err != nil {
		return fmt.Errorf("creating API client: %w", err)
	}
	nodeIP := a.cfg.NodeIP
	if nodeIP == "" {
		if nodeIP, err = detectNodeIP(hostOf(a.cfg.Server)); err != nil {
			return err
		}
	}
	creds, err := a.loadCredentials(ctx, nodeIP)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", a.cfg.Listen)
	if err != nil {
		return fmt.Errorf("listening on %s (listen): %w", a.cfg.Listen, err)
	}
	a.mu.Lock()
	a.listenAddr = ln.Addr()
	a.mu.Unlock()

	var wg sync.WaitGroup
	errc := make(chan error, 4)
	goRun := func(name string, f func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(); err != nil && ctx.Err() == nil {
				errc <- fmt.Errorf("%s: %w", name, err)
			}
		}()
	}
	defer wg.Wait()
	defer cancel()

	// Pods bound to this node only: the API filters by spec.nodeName.
	factory := informers.NewSharedInformerFactoryWithOptions(client, resyncPeriod,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("spec.nodeName", a.cfg.NodeName).String()
		}))
	podInformer := factory.Core().V1().Pods().Informer()
	a.mu.Lock()
	a.podInformer = podInformer
	a.mu.Unlock()

	// Logs endpoint.
	lh := logs.NewHandler(logs.Config{
		LogDir:  func(uid, c string) string { return logDir(a.cfg.DataDir, uid, c) },
		LogPath: func(uid, c string, n int32) string { return logPath(a.cfg.DataDir, uid, c, n) },
		Pods:    a.pod,
		Logger:  a.log,
	})
	srv := &http.Server{Handler: lh, TLSConfig: logs.TLSConfig(creds.getServing, creds.pool), ReadHeaderTimeout: 10 * time.Second,
		ErrorLog: slog.NewLogLogger(a.log.Handler(), slog.LevelDebug)}
	goRun("logs endpoint", func() error {
		err := srv.ServeTLS(ln, "", "")
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return err
	})
	go func() { <-ctx.Done(); srv.Close() }()

	// Certificate renewal while the agent runs.
	interval := a.deps.RenewalInterval
	if interval <= 0 {
		interval = defaultRenewalInterval
	}
	goRun("certificate renewal", func() error { a.renewLoop(ctx, creds, nodeIP, interval); return nil })

	// Metrics and health on loopback.
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		memtrim.NewReleasesCounter())
	if a.cfg.DebugListen != "-" {
		dln, err := net.Listen("tcp", a.cfg.DebugListen)
		if err != nil {
			return fmt.Errorf("listening on %s (debugListen): %w", a.cfg.DebugListen, err)
		}
		a.mu.Lock()
		a.debugAddr = dln.Addr()
		a.mu.Unlock()
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok")) })
		mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
			select {
			case <-a.ready:
				w.Write([]byte("ok"))
			default:
				http.Error(w, "not ready", http.StatusServiceUnavailable)
			}
		})
		dsrv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		goRun("debug endpoint", func() error {
			if err := dsrv.Serve(dln); !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		})
		go func() { <-ctx.Done(); dsrv.Close() }()
	}

	// Node registration and heartbeat.
	port := int32(ln.Addr().(*net.TCPAddr).Port)
	ncfg := node.Config{
		Client: client, NodeName: a.cfg.NodeName, NodeIP: nodeIP, DataDir: a.cfg.DataDir, Port: port,
		Labels: a.cfg.Labels, Taints: a.cfg.Taints, AgentVersion: version.Version,
		RuntimeVersion: a.deps.RuntimeVersion, Logger: a.log,
	}
	if a.deps.Registrar != nil {
		a.deps.Registrar(&ncfg)
	}
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "bosun_agent_pods", Help: "Pods bound to this node, as the informer sees them.",
	}, func() float64 { return float64(len(podInformer.GetStore().ListKeys())) }))
	registrar, err := node.New(ncfg)
	if err != nil {
		return err
	}
	goRun("node registration", func() error { return registrar.Run(ctx) })

	// Pod workers.
	// Events get a client of their own, with its own rate limit, as the kubelet's do: a burst of
	// pod starts posts three events per pod, which must not delay the pods' status writes.
	eventClient, err := kubernetes.NewForConfig(a.cfg.RESTConfig())
	if err != nil {
		return fmt.Errorf("creating API client: %w", err)
	}
	events := newEventRecorder(eventClient, a.cfg.NodeName, a.log)
	defer events.stop()
	var mgr PodManager = nopManager{log: a.log}
	if a.deps.NewPodManager != nil {
		select {
		case <-ctx.Done():
			return nil
		case <-registrar.Registered():
		}
		cidr, err := waitForPodCIDR(ctx, client, a.cfg.NodeName, a.log)
		if err != nil {
			return nil // ctx ended
		}
		n, err := client.CoreV1().Nodes().Get(ctx, a.cfg.NodeName, metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("reading node %s: %w", a.cfg.NodeName, err)
		}
		mgr, err = a.deps.NewPodManager(ctx, PodEnv{
			Config: a.cfg, Client: client, NodeIP: nodeIP, PodCIDR: cidr,
			Status: apiStatusWriter{client}, Objects: apiObjects{client}, Recorder: events,
			Allocatable: n.Status.Allocatable, Metrics: reg, Logger: a.log,
		})
		if err != nil {
			return fmt.Errorf("starting pod workers: %w", err)
		}
	} else {
		a.log.Warn("this build has no pod workers: pods bound to the node are not run")
	}
	goRun("pod workers", func() error { return mgr.Run(ctx) })
	if _, err := podInformer.AddEventHandler(podHandler(mgr)); err != nil {
		return fmt.Errorf("pod informer: %w", err)
	}
	factory.Start(ctx.Done())
	defer factory.Shutdown()
	if !cache.WaitForCacheSync(ctx.Done(), podInformer.HasSynced) {
		return nil
	}
	mgr.SyncAll(a.listPods())
	select {
	case <-registrar.Registered():
	case <-ctx.Done():
		return nil
	case err := <-errc:
		return err
	}
	close(a.ready)
	debug := "off"
	if addr := a.DebugAddr(); addr != nil {
		debug = addr.String()
	}
	a.log.Info("agent ready", "logs", ln.Addr().String(), "debug", debug, "nodeIP", nodeIP)

	t := time.NewTicker(resyncPeriod)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-errc:
			return err
		case <-t.C:
			mgr.SyncAll(a.listPods())
		}
	}
}

func (a *Agent) listPods() []*corev1.Pod {
	a.mu.Lock()
	inf := a.podInformer
	a.mu.Unlock()
	var out []*corev1.Pod
	for _, o := range inf.GetStore().List() {
		if p, ok := o.(*corev1.Pod); ok {
			out = append(out, p)
		}
	}
	return out
}

// Pods returns the pods the agent's informer holds (those bound to this node).
func (a *Agent) Pods() []*corev1.Pod { return a.listPods() }

// pod returns the pod namespace/name from the agent's informer, with the status last written.
func (a *Agent) pod(namespace, name string) (*corev1.Pod, bool) {
	a.mu.Lock()
	inf := a.podInformer
	a.mu.Unlock()
	if inf == nil {
		return nil, false
	}
	o, ok, err := inf.GetStore().GetByKey(namespace + "/" + name)
	if err != nil || !ok {
		return nil, false
	}
	return o.(*corev1.Pod), true
}

func podHandler(m PodManager) cache.ResourceEventHandler {
	return cache.ResourceEventHandlerFuncs{
		AddFunc: func(o any) {
			if p, ok := o.(*corev1.Pod); ok {
				m.UpdatePod(p)
			}
		},
		UpdateFunc: func(_, o any) {
			if p, ok := o.(*corev1.Pod); ok {
				m.UpdatePod(p)
			}
		},
		DeleteFunc: func(o any) {
			if d, ok := o.(cache.DeletedFinalStateUnknown); ok {
				o = d.Obj
			}
			if p, ok := o.(*corev1.Pod); ok {
				m.DeletePod(p)
			}
		},
	}
}

// waitForPodCIDR polls the Node until the operator's node IPAM set spec.podCIDR.
func waitForPodCIDR(ctx context.Context, client kubernetes.Interface, name string, log *slog.Logger) (string, error) {
	logged := false
	for {
		n, err := client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err == nil && n.Spec.PodCIDR != "" {
			return n.Spec.PodCIDR, nil
		}
		if !logged {
			log.Info("waiting for the operator to assign the node's pod CIDR (spec.podCIDR)")
			logged = true
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// nopManager stands in when no pod workers are built in.
type nopManager struct{ log *slog.Logger }

func (nopManager) UpdatePod(*corev1.Pod)         {}
func (nopManager) DeletePod(*corev1.Pod)         {}
func (nopManager) SyncAll([]*corev1.Pod)         {}
func (nopManager) Run(ctx context.Context) error { <-ctx.Done(); return nil }

func hostOf(server string) string {
	if u, err := parseURL(server); err == nil {
		return u
	}
	return server
}
