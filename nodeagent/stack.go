package nodeagent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/bosun-gitops/bosun/nodeagent/dns"
	"github.com/bosun-gitops/bosun/nodeagent/network"
	"github.com/bosun-gitops/bosun/nodeagent/pods"
	"github.com/bosun-gitops/bosun/nodeagent/proxy"
	"github.com/bosun-gitops/bosun/nodeagent/routes"
	"github.com/bosun-gitops/bosun/nodeagent/runtime"
	bosunv1 "github.com/bosun-gitops/bosun/repo-layout/v1alpha1"
	"github.com/vishvananda/netlink"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	coreinformers "k8s.io/client-go/informers/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// routesResyncPeriod is how often the pod routes and the masquerade rule are re-checked.
const routesResyncPeriod = 10 * time.Second

// NodeStack is the real PodManager: the pod workers (pods.Manager on containerd and CNI) plus
// what every node runs beside them — the service proxy (iptables or nftables, Config.ProxyMode),
// the cluster DNS server on the pod bridge's gateway address, and the routes to other nodes' pod
// CIDRs with the cluster-wide masquerade.
//
//	NewNodeStack: containerd (import <data-dir>/images/*.tar) ─> CNI conflist (ipMasq off) ─> bridge
//	Run:          pods; informers (Services, Endpoints, Nodes) ─> synced ─> proxy, DNS, routes
type NodeStack struct {
	*pods.Manager
	rt      *runtime.Runtime
	env     PodEnv
	gateway netip.Prefix
	// factory holds the informers of Services (also the pods' service variables), Endpoints
	// and Nodes; Run starts them.
	factory informers.SharedInformerFactory
	log     *slog.Logger
}

// NewNodeStack connects to containerd, imports the offline images, prepares the pod network for
// env.PodCIDR and builds the pod manager; Run starts it all. It is Deps.NewPodManager of
// DefaultDeps.
func NewNodeStack(ctx context.Context, env PodEnv) (PodManager, error) {
	log := env.Logger
	if log == nil {
		log = slog.Default()
	}
	env.Config = withClusterSettings(ctx, env.Client, env.Config, log)
	cfg := env.Config
	gw, err := bridgeGateway(env.PodCIDR)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	rt, err := runtime.New(ctx, runtime.Config{
		Address:   cfg.ContainerdSocket,
		ImportDir: cfg.ImagesDir(),
		Registry:  runtime.RegistryConfig{Mirrors: cfg.Registry.Mirrors, PlainHTTP: cfg.Registry.PlainHTTP},
		Logger:    log,
	})
	if err != nil {
		return nil, fmt.Errorf("connecting to containerd: %w", err)
	}
	log.Info("containerd connected, offline images imported", "socket", cfg.ContainerdSocket, "images", cfg.ImagesDir(), "took", time.Since(start).Round(time.Millisecond),
		"podCIDR", env.PodCIDR, "clusterCIDR", cfg.ClusterCIDR, "clusterDomain", cfg.ClusterDomain)
	netCfg := network.Config{
		RunDir:     cfg.RunDir,
		CNIConfDir: filepath.Join(cfg.DataDir, "cni", "net.d"),
		PodCIDR:    env.PodCIDR,
		DataDir:    filepath.Join(cfg.DataDir, "network"),
		Logger:     log,
	}
	if err := writeConflist(netCfg); err != nil {
		rt.Close()
		return nil, err
	}
	nw, err := network.New(netCfg)
	if err != nil {
		rt.Close()
		return nil, fmt.Errorf("preparing the pod network: %w", err)
	}
	if err := ensureBridge(network.DefaultBridgeName, network.DefaultMTU, gw); err != nil {
		rt.Close()
		return nil, err
	}
	logMaxSize, err := cfg.containerLogMaxSize()
	if err != nil {
		rt.Close()
		return nil, err
	}
	factory := informers.NewSharedInformerFactory(env.Client, 10*time.Minute)
	svcInf := factory.Core().V1().Services()
	mgr, err := pods.NewManager(pods.ManagerConfig{
		NodeName: cfg.NodeName, DataDir: cfg.DataDir,
		Runtime: rt, Network: nw, Status: env.Status, Objects: env.Objects, Recorder: env.Recorder,
		Services:            serviceLister{svcInf},
		ContainerLogMaxSize: logMaxSize, ContainerLogMaxFiles: cfg.ContainerLogMaxFiles,
		ClusterDNS: []string{gw.Addr().String()}, ClusterDomain: cfg.ClusterDomain,
		NodeIP: env.NodeIP, NodeAllocatable: env.Allocatable, Metrics: pods.NewMetrics(env.Metrics), Logger: log,
	})
	if err != nil {
		rt.Close()
		return nil, err
	}
	return &NodeStack{Manager: mgr, rt: rt, env: env, gateway: gw, factory: factory, log: log}, nil
}

// serviceLister is pods.ServiceLister on the Services informer the proxy and DNS share.
type serviceLister struct{ inf coreinformers.ServiceInformer }

func (l serviceLister) HasSynced() bool { return l.inf.Informer().HasSynced() }

func (l serviceLister) List(namespace string) ([]*corev1.Service, error) {
	return l.inf.Lister().Services(namespace).List(labels.Everything())
}

// Run runs the proxy, DNS and routes once the cluster's Services, Endpoints and Nodes are
// known, and the pod workers, until ctx ends. Only the pod workers' failure ends it: the others
// log and retry.
func (s *NodeStack) Run(ctx context.Context) error {
	defer s.rt.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cfg := s.env.Config

	factory := s.factory
	svcInf := factory.Core().V1().Services()
	epInf := factory.Core().V1().Endpoints()
	nodeInf := factory.Core().V1().Nodes()

	px, err := proxy.New(proxy.Config{Mode: cfg.ProxyMode, Services: svcInf.Lister(), Endpoints: epInf.Lister(),
		ClusterCIDR: cfg.ClusterCIDR, Logger: s.log})
	if err != nil {
		return fmt.Errorf("service proxy: %w", err)
	}
	for _, inf := range []cache.SharedIndexInformer{svcInf.Informer(), epInf.Informer()} {
		if _, err := inf.AddEventHandler(px.Handler()); err != nil {
			return fmt.Errorf("service proxy: %w", err)
		}
	}
	upstreams, err := dns.UpstreamsFromResolvConf("/etc/resolv.conf")
	if err != nil {
		s.log.Warn("cluster DNS forwards nothing: reading the node's resolvers failed", "err", err)
	}
	dnsSrv, err := dns.New(dns.Config{
		Listen: net.JoinHostPort(s.gateway.Addr().String(), "53"), Domain: cfg.ClusterDomain,
		Services: svcInf.Lister(), Endpoints: epInf.Lister(), Upstreams: upstreams, Logger: s.log,
	})
	if err != nil {
		return fmt.Errorf("cluster DNS: %w", err)
	}
	// A 10 s resync (the proxy's CheckPeriod) bounds how long pod egress goes unmasqueraded
	// after someone flushed the nat table; a sync is a route list and four iptables calls.
	rc, err := routes.New(routes.Config{NodeName: cfg.NodeName, ClusterPodCIDR: cfg.ClusterCIDR,
		ResyncPeriod: routesResyncPeriod, Logger: s.log})
	if err != nil {
		return fmt.Errorf("pod routes: %w", err)
	}
	nodeChanged := make(chan struct{}, 1)
	notify := func() {
		select {
		case nodeChanged <- struct{}{}:
		default:
		}
	}
	if _, err := nodeInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(any) { notify() }, UpdateFunc: func(_, _ any) { notify() }, DeleteFunc: func(any) { notify() },
	}); err != nil {
		return fmt.Errorf("pod routes: %w", err)
	}

	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	side := func(name string, run func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := run(ctx); err != nil && ctx.Err() == nil {
				s.log.Error(name+" stopped", "err", err)
			}
		}()
	}
	// The pods do not wait for the cluster's services: a container created before they are read
	// waits (CreateContainerConfigError, as the kubelet's) for its service variables only.
	podsDone := make(chan error, 1)
	go func() { podsDone <- s.Manager.Run(ctx) }()

	factory.Start(ctx.Done())
	defer factory.Shutdown()
	synced := factory.WaitForCacheSync(ctx.Done())
	for typ, ok := range synced {
		if !ok {
			cancel()
			if err := <-podsDone; err != nil {
				return err
			}
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("informer of %v did not sync", typ)
		}
	}
	// The routes' first sync creates BOSUN-POD-MASQ before the proxy's first sync, a whole-table
	// restore of what it has just saved, so that the restore carries the chain over instead of
	// racing with its creation (which dropped it: "Chain 'BOSUN-POD-MASQ' does not exist").
	if nodes, err := nodeInf.Lister().List(labels.Everything()); err == nil {
		if err := rc.Sync(ctx, nodes); err != nil {
			s.log.Warn("first pod routes sync failed; retrying", "err", err)
		}
	}
	side("service proxy", px.Run)
	side("cluster DNS", dnsSrv.Run)
	side("pod routes", func(ctx context.Context) error { return rc.Run(ctx, nodeInf.Lister(), nodeChanged) })
	go func() {
		select {
		case <-dnsSrv.Ready():
			s.log.Info("cluster DNS serving", "addr", dnsSrv.Addr(), "upstreams", upstreams)
		case <-ctx.Done():
		}
	}()
	return <-podsDone
}

// withClusterSettings fills the cluster pod CIDR and domain the config leaves empty from the
// Cluster object (bosun.yaml), else from the defaults.
func withClusterSettings(ctx context.Context, client kubernetes.Interface, cfg Config, log *slog.Logger) Config {
	if cfg.ClusterCIDR == "" || cfg.ClusterDomain == "" {
		var list bosunv1.ClusterList
		raw, err := client.Discovery().RESTClient().Get().AbsPath("/apis", bosunv1.Group, bosunv1.Version, "clusters").Do(ctx).Raw()
		if err == nil {
			err = json.Unmarshal(raw, &list)
		}
		switch {
		case err != nil:
			log.Warn("reading the Cluster settings failed: using the defaults", "err", err)
		case len(list.Items) > 0:
			if cfg.ClusterCIDR == "" {
				cfg.ClusterCIDR = list.Items[0].Spec.PodCIDR
			}
			if cfg.ClusterDomain == "" {
				cfg.ClusterDomain = list.Items[0].Spec.ClusterDomain
			}
		}
	}
	if cfg.ClusterCIDR == "" {
		cfg.ClusterCIDR = DefaultClusterCIDR
	}
	if cfg.ClusterDomain == "" {
		cfg.ClusterDomain = DefaultClusterDomain
	}
	return cfg
}

// Runtime is the containerd runtime the stack drives (for diagnostics and tests).
func (s *NodeStack) Runtime() *runtime.Runtime { return s.rt }

// bridgeGateway is the pod bridge's address: the first host of the pod CIDR, with its prefix
// length (network.Conflist's gateway).
func bridgeGateway(podCIDR string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(podCIDR)
	if err != nil || !p.Addr().Is4() {
		return netip.Prefix{}, fmt.Errorf("node pod CIDR %q: not an IPv4 prefix", podCIDR)
	}
	p = p.Masked()
	return netip.PrefixFrom(p.Addr().Next(), p.Bits()), nil
}

// writeConflist writes the generated CNI configuration with the bridge's ipMasq off: the
// cluster-wide masquerade of nodeagent/routes (BOSUN-POD-MASQ) replaces it, so that pod-to-pod
// traffic across nodes keeps its source address. It is rewritten at every start (the pod CIDR
// may have changed).
func writeConflist(cfg network.Config) error {
	data, err := network.Conflist(cfg)
	if err != nil {
		return err
	}
	var conf map[string]any
	if err := json.Unmarshal(data, &conf); err != nil {
		return fmt.Errorf("CNI configuration: %w", err)
	}
	plugins, _ := conf["plugins"].([]any)
	found := false
	for _, p := range plugins {
		if m, ok := p.(map[string]any); ok && m["type"] == "bridge" {
			m["ipMasq"] = false
			found = true
		}
	}
	if !found {
		return errors.New("CNI configuration: the generated conflist has no bridge plugin")
	}
	out, err := json.MarshalIndent(conf, "", "  ")
	if err != nil {
		return fmt.Errorf("CNI configuration: %w", err)
	}
	if err := os.MkdirAll(cfg.CNIConfDir, 0o755); err != nil {
		return fmt.Errorf("writing CNI configuration: %w", err)
	}
	path := filepath.Join(cfg.CNIConfDir, "10-bosun.conflist")
	if err := os.WriteFile(path+".tmp", out, 0o644); err != nil {
		return fmt.Errorf("writing CNI configuration: %w", err)
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		return fmt.Errorf("writing CNI configuration: %w", err)
	}
	return nil
}

// ensureBridge creates the pod bridge with its gateway address before the first pod, so that the
// cluster DNS can listen on that address at once. The CNI bridge plugin adopts it as it is.
func ensureBridge(name string, mtu int, gw netip.Prefix) error {
	link, err := netlink.LinkByName(name)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if !errors.As(err, &nf) {
			return fmt.Errorf("looking up bridge %s: %w", name, err)
		}
		br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: name, MTU: mtu, TxQLen: -1}}
		if err := netlink.LinkAdd(br); err != nil && !os.IsExist(err) {
			return fmt.Errorf("creating bridge %s: %w", name, err)
		}
		if link, err = netlink.LinkByName(name); err != nil {
			return fmt.Errorf("looking up bridge %s: %w", name, err)
		}
	}
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: gw.Addr().AsSlice(), Mask: net.CIDRMask(gw.Bits(), 32)}}
	if err := netlink.AddrReplace(link, addr); err != nil {
		return fmt.Errorf("setting %s on bridge %s: %w", gw, name, err)
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return fmt.Errorf("bringing bridge %s up: %w", name, err)
	}
	return nil
}
