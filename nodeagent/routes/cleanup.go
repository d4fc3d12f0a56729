package routes

import (
	"fmt"

	"github.com/coreos/go-iptables/iptables"
	"github.com/vishvananda/netlink"
)

// RemoveAll deletes what the reconciler wrote on this host: its routes (Protocol), the jump to
// MasqChain and the chain itself; `bosun agent cleanup` runs it when a machine is retired. It
// returns how many routes, rules and chains it removed. Forwarding stays enabled: other software
// may rely on it.
func RemoveAll() (int, error) {
	n := 0
	routes, err := listOurs()
	if err != nil {
		return 0, err
	}
	for i := range routes {
		if err := netlink.RouteDel(&routes[i]); err != nil && !isNoSuchProcess(err) {
			return n, fmt.Errorf("deleting route to %s: %w", routes[i].Dst, err)
		}
		n++
	}
	ipt, err := iptables.New()
	if err != nil {
		return n, nil // no iptables: no rules of ours either
	}
	ok, err := ipt.ChainExists("nat", MasqChain)
	if err != nil || !ok {
		return n, err
	}
	if exists, err := ipt.Exists("nat", "POSTROUTING", jumpRule()...); err == nil && exists {
		if err := ipt.Delete("nat", "POSTROUTING", jumpRule()...); err != nil {
			return n, fmt.Errorf("deleting the jump to %s: %w", MasqChain, err)
		}
		n++
	}
	if err := ipt.ClearAndDeleteChain("nat", MasqChain); err != nil {
		return n, fmt.Errorf("deleting chain %s: %w", MasqChain, err)
	}
	return n + 1, nil
}
