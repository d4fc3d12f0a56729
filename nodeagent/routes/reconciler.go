package routes

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"time"

	"github.com/vishvananda/netlink"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// Protocol is the rtnetlink protocol number on every route Bosun programs ("proto 98" in
// `ip route`); only routes with it are updated or deleted. It is unassigned in iproute2's
// rt_protos and not used by the routing daemons we know of (BIRD, FRR, Calico, Cilium).
const Protocol netlink.RouteProtocol = 98

// ipForwardPath is the sysctl enabling IPv4 forwarding in the current network namespace.
const ipForwardPath = "/proc/sys/net/ipv4/ip_forward"

// NodeLister lists the cluster's nodes; client-go's NodeLister satisfies it.
type NodeLister interface {
	List(selector labels.Selector) ([]*corev1.Node, error)
}

// Reconciler keeps this node's pod routes, forwarding and masquerade rule in sync. Its kernel
// calls act on the network namespace of the calling thread.
type Reconciler struct {
	cfg     Config
	cluster netip.Prefix
	log     *slog.Logger
	masq    *masquerade
}

// New returns a reconciler for cfg.
func New(cfg Config) (*Reconciler, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("routes config: %w", err)
	}
	if cfg.ResyncPeriod == 0 {
		cfg.ResyncPeriod = 30 * time.Second
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cluster := netip.MustParsePrefix(cfg.ClusterPodCIDR)
	return &Reconciler{cfg: cfg, cluster: cluster, log: log.With("component", "routes"), masq: newMasquerade(cluster)}, nil
}

// Sync makes the kernel match nodes: a route to every other node's pod CIDR via its InternalIP,
// no stale Bosun route, forwarding on, the masquerade rule installed once. It does all it can
// and returns the errors joined; nodes that cannot be routed yet are logged, not errors.
func (r *Reconciler) Sync(ctx context.Context, nodes []*corev1.Node) error {
	want, skipped := Desired(r.cfg.NodeName, r.cluster, nodes)
	for _, s := range skipped {
		r.log.Debug("node not routed", "reason", s)
	}
	var errs []error
	if err := r.syncRoutes(want); err != nil {
		errs = append(errs, err)
	}
	if err := enableForwarding(); err != nil {
		errs = append(errs, err)
	}
	if err := ctx.Err(); err != nil {
		return errors.Join(append(errs, err)...)
	}
	if err := r.masq.ensure(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Installed returns the routes with Bosun's protocol in the main table, sorted by destination.
func Installed() ([]Route, error) {
	kernel, err := listOurs()
	if err != nil {
		return nil, err
	}
	var out []Route
	for _, k := range kernel {
		if rt, ok := fromNetlink(k); ok {
			out = append(out, rt)
		}
	}
	sortRoutes(out)
	return out, nil
}

func (r *Reconciler) syncRoutes(want []Route) error {
	kernel, err := listOurs()
	if err != nil {
		return err
	}
	have := map[netip.Prefix]netip.Addr{}
	for _, k := range kernel {
		if rt, ok := fromNetlink(k); ok {
			have[rt.Dst] = rt.Gw
		}
	}
	var errs []error
	wanted := map[netip.Prefix]bool{}
	for _, w := range want {
		wanted[w.Dst] = true
		if gw, ok := have[w.Dst]; ok && gw == w.Gw {
			continue
		}
		if err := netlink.RouteReplace(toNetlink(w)); err != nil {
			errs = append(errs, fmt.Errorf("route %s via %s (node %s): %w", w.Dst, w.Gw, w.Node, err))
			continue
		}
		r.log.Info("route set", "dst", w.Dst, "via", w.Gw, "node", w.Node)
	}
	for _, k := range kernel {
		rt, ok := fromNetlink(k)
		if ok && wanted[rt.Dst] {
			continue
		}
		if err := netlink.RouteDel(&k); err != nil && !errors.Is(err, os.ErrNotExist) && !isNoSuchProcess(err) {
			errs = append(errs, fmt.Errorf("deleting route %s: %w", k.Dst, err))
			continue
		}
		r.log.Info("route deleted", "dst", k.Dst)
	}
	return errors.Join(errs...)
}

func isNoSuchProcess(err error) bool { return err != nil && err.Error() == "no such process" }

func listOurs() ([]netlink.Route, error) {
	filter := &netlink.Route{Protocol: Protocol, Table: mainTable}
	rs, err := netlink.RouteListFiltered(netlink.FAMILY_V4, filter, netlink.RT_FILTER_PROTOCOL|netlink.RT_FILTER_TABLE)
	if err != nil {
		return nil, fmt.Errorf("listing routes: %w", err)
	}
	return rs, nil
}

// mainTable is RT_TABLE_MAIN.
const mainTable = 254

func toNetlink(rt Route) *netlink.Route {
	return &netlink.Route{
		Dst:      &net.IPNet{IP: rt.Dst.Addr().AsSlice(), Mask: net.CIDRMask(rt.Dst.Bits(), 32)},
		Gw:       rt.Gw.AsSlice(),
		Protocol: Protocol,
		Table:    mainTable,
	}
}

func fromNetlink(k netlink.Route) (Route, bool) {
	if k.Dst == nil || k.Gw == nil {
		return Route{}, false
	}
	addr, ok := netip.AddrFromSlice(k.Dst.IP.To4())
	if !ok {
		return Route{}, false
	}
	bits, _ := k.Dst.Mask.Size()
	gw, ok := netip.AddrFromSlice(k.Gw.To4())
	if !ok {
		return Route{}, false
	}
	return Route{Dst: netip.PrefixFrom(addr, bits), Gw: gw}, true
}

func enableForwarding() error {
	b, err := os.ReadFile(ipForwardPath)
	if err == nil && len(b) > 0 && b[0] == '1' {
		return nil
	}
	if err := os.WriteFile(ipForwardPath, []byte("1\n"), 0o644); err != nil {
		return fmt.Errorf("enabling IPv4 forwarding: %w", err)
	}
	return nil
}

// Run syncs now, whenever notify delivers (node added, changed or deleted) and every
// ResyncPeriod, until ctx ends. A failed sync is retried at the next tick or notification. It
// returns nil when ctx ends. The kernel calls happen on the goroutine that calls Run, so lock it
// to its OS thread first when the process switches network namespaces.
func (r *Reconciler) Run(ctx context.Context, nodes NodeLister, notify <-chan struct{}) error {
	retry := time.Second
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-notify:
		case <-timer.C:
		}
		next := r.cfg.ResyncPeriod
		list, err := nodes.List(labels.Everything())
		if err == nil {
			err = r.Sync(ctx, list)
		}
		if err != nil && ctx.Err() == nil {
			r.log.Warn("sync failed, retrying", "err", err, "in", retry)
			next = retry
			retry = min(retry*2, r.cfg.ResyncPeriod)
		} else {
			retry = time.Second
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(next)
	}
}
