package nodeagent

import (
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"

	"github.com/bosun-gitops/bosun/nodeagent/proxy"
	corev1 "k8s.io/api/core/v1"
	apiresource "k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"
)

// Defaults of the agent's listeners and paths.
const (
	DefaultDataDir          = "/var/lib/bosun/agent"
	DefaultContainerdSocket = "/run/containerd/containerd.sock"
	// DefaultListen is the agent's HTTPS endpoint (logs), the kubelet's port.
	DefaultListen = ":10250"
	// DefaultDebugListen serves /metrics, /healthz and /readyz on loopback only.
	DefaultDebugListen = "127.0.0.1:10248"
	// DefaultRunDir holds the pinned pod network namespaces (a tmpfs: they do not survive a
	// reboot, and neither do the namespaces).
	DefaultRunDir = "/run/bosun/agent"
	// DefaultClusterCIDR and DefaultClusterDomain match the operator's Cluster defaults, for a
	// cluster whose repository has no bosun.yaml.
	DefaultClusterCIDR   = "10.244.0.0/16"
	DefaultClusterDomain = "cluster.local"
	// ConfigFileName is the config `bosun agent --token` writes under the data dir.
	ConfigFileName = "agent.yaml"
)

// Config is the agent's configuration, read from YAML (`bosun agent --config FILE`) or written by
// the join flow (DataDir/agent.yaml). Relative file paths are relative to the config file.
type Config struct {
	// Server is the operator API URL, e.g. https://10.0.0.1:6443.
	Server string `json:"server"`
	// CAFile verifies the server; CertFile and KeyFile are the node's client certificate
	// (CN=system:node:<NodeName>, O=system:nodes).
	CAFile   string `json:"caFile"`
	CertFile string `json:"certFile"`
	KeyFile  string `json:"keyFile"`
	// ServingCertFile and ServingKeyFile are the agent's HTTPS serving certificate, signed by the
	// cluster CA; empty = the agent asks the join endpoint for one at start.
	ServingCertFile string `json:"servingCertFile,omitempty"`
	ServingKeyFile  string `json:"servingKeyFile,omitempty"`
	NodeName        string `json:"nodeName"`
	// NodeIP is the node's InternalIP; empty = the local address that reaches Server.
	NodeIP  string `json:"nodeIP,omitempty"`
	DataDir string `json:"dataDir"`
	// RunDir holds the pinned pod network namespaces.
	RunDir string `json:"runDir,omitempty"`
	// ClusterCIDR is the whole pod network: traffic from it leaving it is masqueraded, other
	// nodes' pod CIDRs inside it are routed. Empty = the Cluster's spec.podCIDR read from the API
	// at start (DefaultClusterCIDR when there is no Cluster).
	ClusterCIDR string `json:"clusterCIDR,omitempty"`
	// ClusterDomain is the DNS domain of services; empty = the Cluster's spec.clusterDomain.
	ClusterDomain string `json:"clusterDomain,omitempty"`
	// ProxyMode is how the service proxy programs the kernel: "iptables" (the default: BOSUN-*
	// chains written with iptables-restore) or "nftables" (its own tables, ip bosun and the shards
	// ip bosun-0 … ip bosun-15, with verdict maps, written over netlink; an endpoint change costs
	// tens of milliseconds even at 10 000 services).
	ProxyMode string `json:"proxyMode,omitempty"`
	// ContainerdSocket is containerd's gRPC socket.
	ContainerdSocket string            `json:"containerdSocket,omitempty"`
	Labels           map[string]string `json:"labels,omitempty"`
	Taints           []corev1.Taint    `json:"taints,omitempty"`
	Registry         RegistryConfig    `json:"registry,omitempty"`
	// Listen is the HTTPS (mutual TLS) address of the logs endpoint.
	Listen string `json:"listen,omitempty"`
	// DebugListen is the loopback address of /metrics, /healthz, /readyz; "-" disables it.
	DebugListen string `json:"debugListen,omitempty"`
	// ContainerLogMaxSize is the size past which a container's log file is rotated (a quantity
	// such as "10Mi", the default); ContainerLogMaxFiles the files kept per container run, the
	// current one included (default 5), as the kubelet's settings of the same names.
	ContainerLogMaxSize  string `json:"containerLogMaxSize,omitempty"`
	ContainerLogMaxFiles int    `json:"containerLogMaxFiles,omitempty"`

	// Logger receives the agent's structured logs; nil = slog.Default().
	Logger *slog.Logger `json:"-"`
}

// RegistryConfig configures image pulls.
type RegistryConfig struct {
	// Mirrors maps a registry host ("docker.io") to mirror endpoints tried first.
	Mirrors map[string][]string `json:"mirrors,omitempty"`
	// PlainHTTP lists registry hosts spoken to over plain HTTP (for example "127.0.0.1:5000").
	PlainHTTP []string `json:"plainHTTP,omitempty"`
}

// LoadConfig reads a YAML config file strictly (unknown fields are errors) and applies defaults.
func LoadConfig(path string) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("reading agent config: %w", err)
	}
	var c Config
	if err := yaml.UnmarshalStrict(data, &c); err != nil {
		return Config{}, fmt.Errorf("agent config %s: %w", path, err)
	}
	base := filepath.Dir(path)
	for _, p := range []*string{&c.CAFile, &c.CertFile, &c.KeyFile, &c.ServingCertFile, &c.ServingKeyFile, &c.DataDir, &c.RunDir} {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(base, *p)
		}
	}
	c.SetDefaults()
	return c, nil
}

// WriteConfig writes c as YAML to path (mode 0600).
func WriteConfig(path string, c Config) error {
	data, err := yaml.Marshal(c)
	if err != nil {
		return fmt.Errorf("encoding agent config: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("writing agent config: %w", err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return fmt.Errorf("writing agent config: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("writing agent config: %w", err)
	}
	return nil
}

// SetDefaults fills empty optional fields.
func (c *Config) SetDefaults() {
	if c.DataDir == "" {
		c.DataDir = DefaultDataDir
	}
	if c.ContainerdSocket == "" {
		c.ContainerdSocket = DefaultContainerdSocket
	}
	if c.RunDir == "" {
		c.RunDir = DefaultRunDir
	}
	if c.Listen == "" {
		c.Listen = DefaultListen
	}
	if c.DebugListen == "" {
		c.DebugListen = DefaultDebugListen
	}
	if c.NodeName == "" {
		if h, err := os.Hostname(); err == nil {
			c.NodeName = h
		}
	}
}

// containerLogMaxSize parses ContainerLogMaxSize; 0 when unset (the default).
func (c Config) containerLogMaxSize() (int64, error) {
	if c.ContainerLogMaxSize == "" {
		return 0, nil
	}
	q, err := apiresource.ParseQuantity(c.ContainerLogMaxSize)
	if err != nil || q.Value() <= 0 {
		return 0, fmt.Errorf("containerLogMaxSize %q: give a size such as 10Mi", c.ContainerLogMaxSize)
	}
	return q.Value(), nil
}

// Validate reports every invalid field by name.
func (c Config) Validate() error {
	var errs []error
	req := func(field, v, hint string) {
		if v == "" {
			errs = append(errs, fmt.Errorf("%s is required%s", field, hint))
		}
	}
	req("server", c.Server, " (the operator API URL, e.g. https://10.0.0.1:6443)")
	req("caFile", c.CAFile, "")
	req("certFile", c.CertFile, "")
	req("keyFile", c.KeyFile, "")
	req("dataDir", c.DataDir, "")
	if (c.ServingCertFile == "") != (c.ServingKeyFile == "") {
		errs = append(errs, errors.New("servingCertFile and servingKeyFile: set both or neither"))
	}
	if c.NodeName == "" {
		errs = append(errs, errors.New("nodeName is required"))
	} else if msgs := validation.IsDNS1123Subdomain(c.NodeName); len(msgs) > 0 {
		errs = append(errs, fmt.Errorf("nodeName %q: %s", c.NodeName, msgs[0]))
	}
	if _, _, err := net.ParseCIDR(c.ClusterCIDR); c.ClusterCIDR != "" && err != nil {
		errs = append(errs, fmt.Errorf("clusterCIDR %q: %v", c.ClusterCIDR, err))
	}
	if _, err := c.containerLogMaxSize(); err != nil {
		errs = append(errs, err)
	}
	if c.ContainerLogMaxFiles < 0 || c.ContainerLogMaxFiles == 1 {
		errs = append(errs, fmt.Errorf("containerLogMaxFiles %d: keep at least 2 files (the current one and one rotation), or leave it out for 5", c.ContainerLogMaxFiles))
	}
	switch c.ProxyMode {
	case "", proxy.ModeIPTables, proxy.ModeNFTables:
	default:
		errs = append(errs, fmt.Errorf("proxyMode %q: must be %q (the default) or %q", c.ProxyMode, proxy.ModeIPTables, proxy.ModeNFTables))
	}
	if c.NodeIP != "" && net.ParseIP(c.NodeIP) == nil {
		errs = append(errs, fmt.Errorf("nodeIP %q: not an IP address", c.NodeIP))
	}
	for _, a := range []struct{ field, v string }{{"listen", c.Listen}, {"debugListen", c.DebugListen}} {
		if a.v == "" || a.v == "-" {
			continue
		}
		if _, _, err := net.SplitHostPort(a.v); err != nil {
			errs = append(errs, fmt.Errorf("%s %q: %v", a.field, a.v, err))
		}
	}
	if c.DebugListen != "" && c.DebugListen != "-" {
		if host, _, err := net.SplitHostPort(c.DebugListen); err == nil {
			if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
				errs = append(errs, fmt.Errorf("debugListen %q: must be a loopback address", c.DebugListen))
			}
		}
	}
	for _, k := range slices.Sorted(maps.Keys(c.Labels)) {
		v := c.Labels[k]
		if msgs := validation.IsQualifiedName(k); len(msgs) > 0 {
			errs = append(errs, fmt.Errorf("labels[%q]: %s", k, msgs[0]))
		}
		if msgs := validation.IsValidLabelValue(v); len(msgs) > 0 {
			errs = append(errs, fmt.Errorf("labels[%q]: %s", k, msgs[0]))
		}
	}
	for i, t := range c.Taints {
		switch t.Effect {
		case corev1.TaintEffectNoSchedule, corev1.TaintEffectPreferNoSchedule, corev1.TaintEffectNoExecute:
		default:
			errs = append(errs, fmt.Errorf("taints[%d].effect %q: must be NoSchedule, PreferNoSchedule or NoExecute", i, t.Effect))
		}
		if msgs := validation.IsQualifiedName(t.Key); len(msgs) > 0 {
			errs = append(errs, fmt.Errorf("taints[%d].key %q: %s", i, t.Key, msgs[0]))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("agent config: %w", err)
	}
	return nil
}

// ImagesDir is where offline image archives (*.tar) are imported from at start.
func (c Config) ImagesDir() string { return filepath.Join(c.DataDir, "images") }
