package network

import (
	"context"
	"errors"
)

// Route sends one other node's pod CIDR to that node.
type Route struct {
	PodCIDR string // "10.244.7.0/24"
	NodeIP  string // the node's address on a shared L2 segment
}

// ErrRoutesNotImplemented is returned by SyncRoutes until routes to other nodes land (issue 5).
var ErrRoutesNotImplemented = errors.New("routes to other nodes' pod CIDRs are not implemented yet (issue 5)")

// SyncRoutes will make the host's routes to other nodes' pod CIDRs exactly routes (netlink,
// own route protocol so that only Bosun's routes are touched). Issue 5 fills it in.
func (n *Network) SyncRoutes(ctx context.Context, routes []Route) error {
	return ErrRoutesNotImplemented
}
