package routes

import (
	"fmt"
	"net/netip"
	"sort"

	corev1 "k8s.io/api/core/v1"
)

// Route is one wanted route: a node's pod CIDR via its address.
type Route struct {
	Dst  netip.Prefix
	Gw   netip.Addr
	Node string
}

// Desired returns the routes this node wants, sorted by destination, and a reason for every
// other node that cannot be routed yet (no pod CIDR or no IPv4 InternalIP; the node may still
// be joining). Pod CIDRs outside the cluster pod network are refused.
func Desired(self string, cluster netip.Prefix, nodes []*corev1.Node) ([]Route, []error) {
	var routes []Route
	var skipped []error
	seen := map[netip.Prefix]string{}
	for _, n := range nodes {
		if n == nil || n.Name == self {
			continue
		}
		gw, ok := internalIPv4(n)
		if !ok {
			skipped = append(skipped, fmt.Errorf("node %s: no IPv4 InternalIP yet", n.Name))
			continue
		}
		cidrs := n.Spec.PodCIDRs
		if len(cidrs) == 0 && n.Spec.PodCIDR != "" {
			cidrs = []string{n.Spec.PodCIDR}
		}
		found := false
		for _, c := range cidrs {
			p, err := netip.ParsePrefix(c)
			if err != nil || !p.Addr().Is4() {
				continue
			}
			p = p.Masked()
			if !cluster.Contains(p.Addr()) || p.Bits() < cluster.Bits() {
				skipped = append(skipped, fmt.Errorf("node %s: pod CIDR %s is outside the cluster pod network %s", n.Name, p, cluster))
				continue
			}
			if other, dup := seen[p]; dup {
				skipped = append(skipped, fmt.Errorf("node %s: pod CIDR %s is also node %s's", n.Name, p, other))
				continue
			}
			seen[p] = n.Name
			routes = append(routes, Route{Dst: p, Gw: gw, Node: n.Name})
			found = true
		}
		if !found && len(cidrs) == 0 {
			skipped = append(skipped, fmt.Errorf("node %s: no pod CIDR yet", n.Name))
		}
	}
	sortRoutes(routes)
	return routes, skipped
}

func sortRoutes(rs []Route) {
	sort.Slice(rs, func(i, j int) bool { return rs[i].Dst.Addr().Less(rs[j].Dst.Addr()) })
}

func internalIPv4(n *corev1.Node) (netip.Addr, bool) {
	for _, a := range n.Status.Addresses {
		if a.Type != corev1.NodeInternalIP {
			continue
		}
		if ip, err := netip.ParseAddr(a.Address); err == nil && ip.Is4() {
			return ip, true
		}
	}
	return netip.Addr{}, false
}
