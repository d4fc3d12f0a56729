package network

import (
	"errors"
	"fmt"

	"github.com/vishvananda/netlink"
)

// RemoveBridge deletes the pods' bridge (DefaultBridgeName when name is empty) if it exists;
// `bosun agent cleanup` runs it once no pod is left on the machine. It reports whether it did.
func RemoveBridge(name string) (bool, error) {
	if name == "" {
		name = DefaultBridgeName
	}
	l, err := netlink.LinkByName(name)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return false, nil
		}
		return false, fmt.Errorf("looking up bridge %s: %w", name, err)
	}
	if err := netlink.LinkDel(l); err != nil {
		return false, fmt.Errorf("deleting bridge %s: %w", name, err)
	}
	return true, nil
}
