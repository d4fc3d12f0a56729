package endpoints

import (
	"bytes"
	"crypto/md5"
	"fmt"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/dump"
)

// RepackSubsets merges subsets into the canonical form of Kubernetes'
// pkg/api/v1/endpoints.RepackSubsets: every address that offers the same set of ports (with the
// same readiness for each) ends up in one subset, an address not ready for some port is not
// ready for all of them, and the result is sorted with SortSubsets. Subsets without ports are
// kept (headless Services without ports). The input is not modified.
func RepackSubsets(subsets []corev1.EndpointSubset) []corev1.EndpointSubset {
	// Map each unique port to the set of addresses offering it, and their readiness.
	allAddrs := map[addressKey]*corev1.EndpointAddress{}
	portToAddrReady := map[corev1.EndpointPort]addressSet{}
	for i := range subsets {
		if len(subsets[i].Ports) == 0 {
			// A sentinel port keeps addresses without ports.
			mapAddressesByPort(&subsets[i], corev1.EndpointPort{Port: -1}, allAddrs, portToAddrReady)
			continue
		}
		for _, port := range subsets[i].Ports {
			mapAddressesByPort(&subsets[i], port, allAddrs, portToAddrReady)
		}
	}

	// Map each set of addresses to the ports it offers.
	keyToAddrReady := map[string]addressSet{}
	keyToPorts := map[string][]corev1.EndpointPort{}
	for port, addrs := range portToAddrReady {
		key := addrs.key()
		keyToAddrReady[key] = addrs
		if port.Port > 0 {
			keyToPorts[key] = append(keyToPorts[key], port)
		} else if _, found := keyToPorts[key]; !found {
			keyToPorts[key] = nil
		}
	}

	final := make([]corev1.EndpointSubset, 0, len(keyToPorts))
	for key, ports := range keyToPorts {
		var ready, notReady []corev1.EndpointAddress
		for addr, isReady := range keyToAddrReady[key] {
			if isReady {
				ready = append(ready, *addr)
			} else {
				notReady = append(notReady, *addr)
			}
		}
		final = append(final, corev1.EndpointSubset{Addresses: ready, NotReadyAddresses: notReady, Ports: ports})
	}
	return SortSubsets(final)
}

// addressKey de-duplicates addresses: the same IP from two pods stays two addresses.
type addressKey struct {
	ip  string
	uid types.UID
}

func keyOf(addr *corev1.EndpointAddress) addressKey {
	k := addressKey{ip: addr.IP}
	if addr.TargetRef != nil {
		k.uid = addr.TargetRef.UID
	}
	return k
}

// addressSet maps each (de-duplicated) address to its readiness.
type addressSet map[*corev1.EndpointAddress]bool

// key identifies the set by its addresses and their readiness.
func (s addressSet) key() string {
	parts := make([]string, 0, len(s))
	for addr, ready := range s {
		k := keyOf(addr)
		parts = append(parts, fmt.Sprintf("%s\x00%s\x00%t", k.ip, k.uid, ready))
	}
	sort.Strings(parts)
	return strings.Join(parts, "\x01")
}

func mapAddressesByPort(subset *corev1.EndpointSubset, port corev1.EndpointPort, allAddrs map[addressKey]*corev1.EndpointAddress, portToAddrReady map[corev1.EndpointPort]addressSet) {
	for i := range subset.Addresses {
		mapAddressByPort(&subset.Addresses[i], port, true, allAddrs, portToAddrReady)
	}
	for i := range subset.NotReadyAddresses {
		mapAddressByPort(&subset.NotReadyAddresses[i], port, false, allAddrs, portToAddrReady)
	}
}

func mapAddressByPort(addr *corev1.EndpointAddress, port corev1.EndpointPort, ready bool, allAddrs map[addressKey]*corev1.EndpointAddress, portToAddrReady map[corev1.EndpointPort]addressSet) {
	key := keyOf(addr)
	existing := allAddrs[key]
	if existing == nil {
		// Keep the first full address (its TargetRef) and never write to the input.
		cp := *addr
		existing = &cp
		allAddrs[key] = existing
	}
	set := portToAddrReady[port]
	if set == nil {
		set = addressSet{}
		portToAddrReady[port] = set
	}
	// Not ready trumps ready.
	if wasReady, found := set[existing]; !found || wasReady {
		set[existing] = ready
	}
}

// SortSubsets sorts, in place, the addresses of each subset by IP then pod UID, and the ports and
// the subsets by the MD5 of their hash dump, as Kubernetes does. It returns its argument.
func SortSubsets(subsets []corev1.EndpointSubset) []corev1.EndpointSubset {
	for i := range subsets {
		ss := &subsets[i]
		sortAddresses(ss.Addresses)
		sortAddresses(ss.NotReadyAddresses)
		sortByHash(ss.Ports)
	}
	sortByHash(subsets)
	return subsets
}

func sortAddresses(addrs []corev1.EndpointAddress) {
	sort.SliceStable(addrs, func(i, j int) bool { return lessAddress(&addrs[i], &addrs[j]) })
}

// lessAddress compares IPs as strings (byte-wise, as Kubernetes does), then pod UIDs.
func lessAddress(a, b *corev1.EndpointAddress) bool {
	if c := strings.Compare(a.IP, b.IP); c != 0 {
		return c < 0
	}
	if b.TargetRef == nil {
		return false
	}
	if a.TargetRef == nil {
		return true
	}
	return a.TargetRef.UID < b.TargetRef.UID
}

// sortByHash orders items by the MD5 of dump.ForHash, Kubernetes' hashutil.DeepHashObject.
func sortByHash[T any](items []T) {
	hashes := make([][]byte, len(items))
	for i := range items {
		hashes[i] = hashObject(items[i])
	}
	idx := make([]int, len(items))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool { return bytes.Compare(hashes[idx[a]], hashes[idx[b]]) < 0 })
	sorted := make([]T, len(items))
	for i, j := range idx {
		sorted[i] = items[j]
	}
	copy(items, sorted)
}

func hashObject(obj any) []byte {
	h := md5.New()
	fmt.Fprintf(h, "%v", dump.ForHash(obj))
	return h.Sum(nil)
}
