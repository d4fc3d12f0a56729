// Package network implements pods.Network: one network namespace per pod, created and pinned by
// the agent under its run dir, with lo up, wired with CNI (bridge + host-local IPAM in the node's
// pod CIDR + portmap for hostPorts). Containers join the pinned namespace, so the pod's network
// outlives any one container and CNI DEL always finds the namespace it set up.
//
//	PinNetns:    unshare+lo up+bind-mount <RunDir>/netns/<uid>   (the pod workers create the
//	             pod's containers in it while SetupPod runs)
//	SetupPod:    [pin, unless pinned] ──> CNI ADD (bridge, portmap)
//	TeardownPod: CNI DEL (cached config: IP released, masquerade/hostPort rules gone) ──> umount, rm
package network

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sort"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"

	"github.com/bosun-gitops/bosun/nodeagent/pods"
)

var _ pods.Network = (*Network)(nil)

// Defaults for empty Config fields.
const (
	DefaultCNIBinDir  = "/usr/lib/cni"
	DefaultBridgeName = "bosun0"
	DefaultMTU        = 1500
	// NetworkName is the CNI network name (cache keys and iptables comments carry it).
	NetworkName = "bosun"
	// podIfName is the pod's interface.
	podIfName = "eth0"
)

// Config configures pod networking.
type Config struct {
	// RunDir holds the pinned namespaces: <RunDir>/netns/<pod-uid> (a tmpfs like /run is best:
	// pins do not survive a reboot, and neither do the namespaces).
	RunDir string
	// CNIBinDir holds the CNI plugins (Debian's containernetworking-plugins: /usr/lib/cni).
	CNIBinDir string
	// CNIConfDir, when set and holding a *.conflist, overrides the generated configuration.
	CNIConfDir string
	// PodCIDR is this node's pod range, "10.244.3.0/24".
	PodCIDR string
	// BridgeName is the host bridge the pods attach to.
	BridgeName string
	// MTU of the bridge and veths.
	MTU int
	// DataDir keeps host-local IPAM allocations and libcni's result cache.
	DataDir string
	// Logger receives logs; nil discards them.
	Logger *slog.Logger
}

// Validate names the first invalid field.
func (c Config) Validate() error {
	if c.RunDir == "" {
		return errors.New("network config: RunDir is required")
	}
	if c.DataDir == "" {
		return errors.New("network config: DataDir is required")
	}
	if c.CNIConfDir == "" || !hasConflist(c.CNIConfDir) {
		if _, _, err := net.ParseCIDR(c.PodCIDR); err != nil {
			return fmt.Errorf("network config: PodCIDR %q: %w", c.PodCIDR, err)
		}
	}
	if c.MTU < 0 || c.MTU > 65535 {
		return fmt.Errorf("network config: MTU %d out of range", c.MTU)
	}
	return nil
}

func (c Config) withDefaults() Config {
	if c.CNIBinDir == "" {
		c.CNIBinDir = DefaultCNIBinDir
	}
	if c.BridgeName == "" {
		c.BridgeName = DefaultBridgeName
	}
	if c.MTU == 0 {
		c.MTU = DefaultMTU
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Network is a pods.Network backed by pinned namespaces and libcni.
type Network struct {
	cfg  Config
	cni  *libcni.CNIConfig
	list *libcni.NetworkConfigList
	// noPorts is list without the portmap plugin, for ADD of pods without hostPorts (one plugin
	// exec less on the pod start path; DEL still runs the whole list, which portmap tolerates).
	noPorts *libcni.NetworkConfigList
	log     *slog.Logger
}

// New prepares the directories, loads or generates the CNI configuration and enables IPv4
// forwarding.
func New(cfg Config) (*Network, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	for _, d := range []string{filepath.Join(cfg.RunDir, "netns"), filepath.Join(cfg.DataDir, "ipam"), filepath.Join(cfg.DataDir, "cni-cache")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("creating %s: %w", d, err)
		}
	}
	var list *libcni.NetworkConfigList
	if cfg.CNIConfDir != "" && hasConflist(cfg.CNIConfDir) {
		files, _ := libcni.ConfFiles(cfg.CNIConfDir, []string{".conflist"})
		sort.Strings(files)
		l, err := libcni.ConfListFromFile(files[0])
		if err != nil {
			return nil, fmt.Errorf("loading CNI config %s: %w", files[0], err)
		}
		list = l
	} else {
		data, err := Conflist(cfg)
		if err != nil {
			return nil, err
		}
		l, err := libcni.ConfListFromBytes(data)
		if err != nil {
			return nil, fmt.Errorf("parsing generated CNI config: %w", err)
		}
		list = l
	}
	if err := os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1"), 0o644); err != nil {
		return nil, fmt.Errorf("enabling net.ipv4.ip_forward: %w", err)
	}
	return &Network{
		cfg:     cfg,
		cni:     libcni.NewCNIConfigWithCacheDir([]string{cfg.CNIBinDir}, filepath.Join(cfg.DataDir, "cni-cache"), nil),
		list:    list,
		noPorts: withoutPlugin(list, "portmap"),
		log:     cfg.Logger.With("component", "network"),
	}, nil
}

// withoutPlugin returns a copy of list without the plugins of type typ.
func withoutPlugin(list *libcni.NetworkConfigList, typ string) *libcni.NetworkConfigList {
	out := *list
	out.Plugins = nil
	for _, p := range list.Plugins {
		if p.Network == nil || p.Network.Type != typ {
			out.Plugins = append(out.Plugins, p)
		}
	}
	return &out
}

func hasConflist(dir string) bool {
	files, err := libcni.ConfFiles(dir, []string{".conflist"})
	return err == nil && len(files) > 0
}

// Conflist generates the CNI configuration for the node's pod CIDR: a bridge that is the pods'
// gateway and masquerades their traffic leaving the pod CIDR, host-local IPAM and portmap for
// hostPorts. There is no loopback plugin: SetupPod sets lo up itself when it creates the
// namespace (one plugin exec less per pod start).
func Conflist(cfg Config) ([]byte, error) {
	cfg = cfg.withDefaults()
	_, subnet, err := net.ParseCIDR(cfg.PodCIDR)
	if err != nil {
		return nil, fmt.Errorf("pod CIDR %q: %w", cfg.PodCIDR, err)
	}
	gateway := make(net.IP, len(subnet.IP.To4()))
	copy(gateway, subnet.IP.To4())
	gateway[len(gateway)-1]++
	conf := map[string]any{
		"cniVersion": "1.0.0",
		"name":       NetworkName,
		"plugins": []any{
			map[string]any{
				"type":        "bridge",
				"bridge":      cfg.BridgeName,
				"isGateway":   true,
				"ipMasq":      true,
				"hairpinMode": true,
				"mtu":         cfg.MTU,
				"ipam": map[string]any{
					"type":    "host-local",
					"dataDir": filepath.Join(cfg.DataDir, "ipam"),
					"ranges":  [][]map[string]string{{{"subnet": subnet.String(), "gateway": gateway.String()}}},
					"routes":  []map[string]string{{"dst": "0.0.0.0/0"}},
				},
			},
			map[string]any{
				"type":         "portmap",
				"capabilities": map[string]bool{"portMappings": true},
				"snat":         true,
			},
		},
	}
	return json.MarshalIndent(conf, "", "  ")
}

// NetnsPath is where the pod's namespace is pinned.
func (n *Network) NetnsPath(podUID string) string {
	return filepath.Join(n.cfg.RunDir, "netns", podUID)
}

func (n *Network) runtimeConf(pod pods.PodRef, netnsPath string, ports []pods.PortMapping) *libcni.RuntimeConf {
	rt := &libcni.RuntimeConf{
		ContainerID: pod.UID,
		NetNS:       netnsPath,
		IfName:      podIfName,
		Args: [][2]string{
			{"IgnoreUnknown", "1"},
			{"K8S_POD_NAMESPACE", pod.Namespace},
			{"K8S_POD_NAME", pod.Name},
			{"K8S_POD_INFRA_CONTAINER_ID", pod.UID},
			{"K8S_POD_UID", pod.UID},
		},
	}
	if len(ports) > 0 {
		var pm []map[string]any
		for _, p := range ports {
			proto := p.Protocol
			if proto == "" {
				proto = "tcp"
			}
			m := map[string]any{"hostPort": p.HostPort, "containerPort": p.ContainerPort, "protocol": proto}
			if p.HostIP != "" {
				m["hostIP"] = p.HostIP
			}
			pm = append(pm, m)
		}
		rt.CapabilityArgs = map[string]any{"portMappings": pm}
	}
	return rt
}

// PinNetns creates and pins the pod's namespace, unless it is pinned already, and returns its
// path; SetupPod then wires it. The pod workers pin first so that containers can be created
// while CNI ADD runs.
func (n *Network) PinNetns(ctx context.Context, pod pods.PodRef) (string, error) {
	if pod.UID == "" {
		return "", errors.New("pinning pod network namespace: pod has no UID")
	}
	path := n.NetnsPath(pod.UID)
	pinned, err := isPinned(path)
	if err == nil && !pinned {
		err = n.pin(ctx, pod, path)
	}
	if err != nil {
		return "", fmt.Errorf("pinning network namespace of pod %s: %w", pod.UID, err)
	}
	return path, nil
}

// pin creates the pod's namespace at path, after releasing the network of a namespace lost there.
func (n *Network) pin(ctx context.Context, pod pods.PodRef, path string) error {
	n.releaseLost(ctx, pod, path)
	return pinNetns(path)
}

// SetupPod creates and pins the pod's namespace (unless PinNetns did) and runs CNI ADD. When the
// namespace exists and libcni has a cached result, that result is returned without running CNI
// again.
func (n *Network) SetupPod(ctx context.Context, pod pods.PodRef, ports []pods.PortMapping) (pods.PodNetwork, error) {
	if pod.UID == "" {
		return pods.PodNetwork{}, errors.New("setting up pod network: pod has no UID")
	}
	path := n.NetnsPath(pod.UID)
	rt := n.runtimeConf(pod, path, ports)
	pinned, err := isPinned(path)
	if err != nil {
		return pods.PodNetwork{}, fmt.Errorf("setting up network of pod %s: %w", pod.UID, err)
	}
	created := false
	if pinned {
		if cached, err := n.cni.GetNetworkListCachedResult(n.list, rt); err == nil && cached != nil {
			if ip, err := podIP(cached); err == nil {
				return pods.PodNetwork{NetnsPath: path, IP: ip}, nil
			}
		}
	} else {
		if err := n.pin(ctx, pod, path); err != nil {
			return pods.PodNetwork{}, fmt.Errorf("setting up network of pod %s: %w", pod.UID, err)
		}
		created = true
	}
	list := n.list
	if len(ports) == 0 {
		list = n.noPorts
	}
	res, err := n.cni.AddNetworkList(ctx, list, rt)
	if err != nil {
		// Leave nothing half-made: DEL what ADD may have done (a veth, an IP: no ADD succeeded
		// before, there is no cached result), then drop a namespace made here (one that
		// PinNetns made, which containers may already use, stays until TeardownPod).
		if derr := n.cni.DelNetworkList(ctx, n.list, rt); derr != nil {
			n.log.Warn("cleaning up after failed CNI ADD", "pod", pod.UID, "err", derr)
		}
		if created {
			_ = unpinNetns(path)
		}
		return pods.PodNetwork{}, fmt.Errorf("setting up network of pod %s/%s: CNI ADD: %w", pod.Namespace, pod.Name, err)
	}
	ip, err := podIP(res)
	if err != nil {
		return pods.PodNetwork{}, fmt.Errorf("setting up network of pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	n.log.Info("pod network up", "pod", pod.Namespace+"/"+pod.Name, "uid", pod.UID, "ip", ip)
	return pods.PodNetwork{NetnsPath: path, IP: ip}, nil
}

// releaseLost runs CNI DEL for a pod whose namespace is gone while libcni still holds the result
// of its ADD: the machine rebooted (the pins live on a tmpfs, IPAM allocations on disk), or the
// pin was removed by hand. Without it host-local refuses the new ADD ("duplicate allocation is
// not allowed") and the pod never gets its network back. CNI plugins accept DEL for a missing
// namespace.
func (n *Network) releaseLost(ctx context.Context, pod pods.PodRef, path string) {
	rt := n.runtimeConf(pod, path, nil)
	_, cachedRT, err := n.cni.GetNetworkListCachedConfig(n.list, rt)
	if err != nil || cachedRT == nil {
		return
	}
	rt.CapabilityArgs = cachedRT.CapabilityArgs
	if len(cachedRT.Args) > 0 {
		rt.Args = cachedRT.Args
	}
	if err := n.cni.DelNetworkList(ctx, n.list, rt); err != nil {
		n.log.Warn("releasing the network of a pod whose namespace is gone", "pod", pod.UID, "err", err)
		return
	}
	n.log.Info("released the network of a pod whose namespace is gone (reboot?)", "pod", pod.UID)
}

// TeardownPod runs CNI DEL (with the configuration cached at ADD, so portmap finds its rules)
// while the namespace still exists, then unmounts and removes it. Missing = success.
func (n *Network) TeardownPod(ctx context.Context, pod pods.PodRef) error {
	path := n.NetnsPath(pod.UID)
	rt := n.runtimeConf(pod, path, nil)
	if _, cachedRT, err := n.cni.GetNetworkListCachedConfig(n.list, rt); err == nil && cachedRT != nil {
		rt.CapabilityArgs = cachedRT.CapabilityArgs
		if len(cachedRT.Args) > 0 {
			rt.Args = cachedRT.Args
		}
	}
	pinned, err := isPinned(path)
	if err != nil {
		return fmt.Errorf("tearing down network of pod %s: %w", pod.UID, err)
	}
	if !pinned {
		// Without the namespace, plugins still release the IP and remove host-side rules.
		rt.NetNS = ""
	}
	if err := n.cni.DelNetworkList(ctx, n.list, rt); err != nil {
		return fmt.Errorf("tearing down network of pod %s: CNI DEL: %w", pod.UID, err)
	}
	if err := unpinNetns(path); err != nil {
		return fmt.Errorf("tearing down network of pod %s: %w", pod.UID, err)
	}
	n.log.Info("pod network down", "uid", pod.UID)
	return nil
}

// ListPods lists the pods with a pinned namespace. Only the UID is known from the pin; the names
// come from libcni's cache when it has them.
func (n *Network) ListPods(ctx context.Context) ([]pods.PodRef, error) {
	entries, err := os.ReadDir(filepath.Join(n.cfg.RunDir, "netns"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("listing pod namespaces: %w", err)
	}
	var out []pods.PodRef
	for _, e := range entries {
		ref := pods.PodRef{UID: e.Name()}
		rt := n.runtimeConf(ref, n.NetnsPath(ref.UID), nil)
		if _, cachedRT, err := n.cni.GetNetworkListCachedConfig(n.list, rt); err == nil && cachedRT != nil {
			for _, a := range cachedRT.Args {
				switch a[0] {
				case "K8S_POD_NAMESPACE":
					ref.Namespace = a[1]
				case "K8S_POD_NAME":
					ref.Name = a[1]
				}
			}
		}
		out = append(out, ref)
	}
	return out, nil
}

// podIP is the pod's IPv4 address on its eth0 from a CNI result.
func podIP(res types.Result) (string, error) {
	cur, err := types100.NewResultFromResult(res)
	if err != nil {
		return "", fmt.Errorf("reading CNI result: %w", err)
	}
	for _, ip := range cur.IPs {
		if ip.Address.IP.To4() != nil && !ip.Address.IP.IsLoopback() {
			return ip.Address.IP.String(), nil
		}
	}
	return "", errors.New("CNI result has no IPv4 address")
}
