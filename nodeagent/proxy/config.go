package proxy

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// ServiceLister is the subset of client-go's ServiceLister the proxier reads.
type ServiceLister interface {
	List(selector labels.Selector) ([]*corev1.Service, error)
}

// EndpointsLister is the subset of client-go's EndpointsLister the proxier reads.
type EndpointsLister interface {
	List(selector labels.Selector) ([]*corev1.Endpoints, error)
}

// Proxy modes.
const (
	// ModeIPTables writes BOSUN-* chains with iptables-restore (the default).
	ModeIPTables = "iptables"
	// ModeNFTables programs its own nftables tables, ip bosun and the shards ip bosun-0 … ip
	// bosun-15, over netlink.
	ModeNFTables = "nftables"
)

// Config configures a Proxier.
type Config struct {
	// Mode is ModeIPTables (empty means it too) or ModeNFTables.
	Mode string
	// Services and Endpoints list the cluster's Services and Endpoints; in the agent they are
	// client-go listers of informers that have synced before Run is called.
	Services  ServiceLister
	Endpoints EndpointsLister
	// ClusterCIDR is the pod network (e.g. 10.244.0.0/16): traffic to a ClusterIP from outside
	// it is masqueraded (kube-proxy's masqueradeAll=false). Empty masquerades all service traffic.
	ClusterCIDR string
	// NetNS is the path of the network namespace that the nftables mode programs (tests); empty
	// is this process's. The iptables mode runs its commands through Exec instead; both must
	// name the same namespace, since each mode removes the other's leftovers there.
	NetNS string
	// Backend selects "nft" or "legacy" iptables (iptables mode); empty detects it from `iptables --version`.
	Backend string
	// Exec runs iptables, iptables-restore, iptables-save and conntrack (both modes clear
	// stale UDP flows with it); nil runs them on this host (tests run them inside a network
	// namespace).
	Exec Executor
	// MinSyncPeriod coalesces bursts of changes: two syncs are at least this far apart (1s).
	MinSyncPeriod time.Duration
	// FullSyncPeriod rewrites every chain even if nothing changed (15m).
	FullSyncPeriod time.Duration
	// CheckPeriod is how often the jump rules and canary chains are checked (10s).
	CheckPeriod time.Duration
	Logger      *slog.Logger
}

func (c *Config) setDefaults() {
	if c.Mode == "" {
		c.Mode = ModeIPTables
	}
	if c.MinSyncPeriod == 0 {
		c.MinSyncPeriod = time.Second
	}
	if c.FullSyncPeriod == 0 {
		c.FullSyncPeriod = 15 * time.Minute
	}
	if c.CheckPeriod == 0 {
		c.CheckPeriod = 10 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Exec == nil {
		c.Exec = HostExec{}
	}
}

// Validate names the first invalid field.
func (c *Config) Validate() error {
	if c.Services == nil {
		return errors.New("proxy config: Services: a lister is required")
	}
	if c.Endpoints == nil {
		return errors.New("proxy config: Endpoints: a lister is required")
	}
	switch c.Mode {
	case "", ModeIPTables, ModeNFTables:
	default:
		return fmt.Errorf("proxy config: Mode: %q is neither %q nor %q", c.Mode, ModeIPTables, ModeNFTables)
	}
	if c.ClusterCIDR != "" {
		if _, err := netip.ParsePrefix(c.ClusterCIDR); err != nil {
			return fmt.Errorf("proxy config: ClusterCIDR: %w", err)
		}
	}
	switch c.Backend {
	case "", BackendNFT, BackendLegacy:
	default:
		return fmt.Errorf("proxy config: Backend: %q is neither %q nor %q", c.Backend, BackendNFT, BackendLegacy)
	}
	if c.MinSyncPeriod < 0 || c.FullSyncPeriod < 0 || c.CheckPeriod < 0 {
		return errors.New("proxy config: periods must not be negative")
	}
	return nil
}
