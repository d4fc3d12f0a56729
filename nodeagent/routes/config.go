package routes

import (
	"fmt"
	"log/slog"
	"net/netip"
	"time"
)

// Config configures the route reconciler.
type Config struct {
	// NodeName is this node; its own pod CIDR is served by the local bridge, not routed.
	NodeName string
	// ClusterPodCIDR is the whole pod network (Cluster spec.podCIDR, "10.244.0.0/16"): traffic
	// from it to anywhere outside it is masqueraded.
	ClusterPodCIDR string
	// ResyncPeriod is how often Run re-syncs without a notification, which repairs routes and
	// rules removed behind its back. Zero means 30 s.
	ResyncPeriod time.Duration
	// Logger receives the changes made; nil discards them.
	Logger *slog.Logger
}

// Validate checks the configuration and names the first bad field.
func (c Config) Validate() error {
	if c.NodeName == "" {
		return fmt.Errorf("NodeName: empty")
	}
	p, err := netip.ParsePrefix(c.ClusterPodCIDR)
	if err != nil {
		return fmt.Errorf("ClusterPodCIDR: %w", err)
	}
	if !p.Addr().Is4() {
		return fmt.Errorf("ClusterPodCIDR: %s is not IPv4 (only IPv4 pod networks are supported)", c.ClusterPodCIDR)
	}
	if p != p.Masked() {
		return fmt.Errorf("ClusterPodCIDR: %s has host bits set (did you mean %s?)", c.ClusterPodCIDR, p.Masked())
	}
	if c.ResyncPeriod < 0 {
		return fmt.Errorf("ResyncPeriod: negative")
	}
	return nil
}
