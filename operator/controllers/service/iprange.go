package service

import (
	"fmt"
	"math/big"
	"net/netip"

	corev1 "k8s.io/api/core/v1"
)

// maxRangeSize caps the number of addresses of a (large IPv6) service range; Kubernetes' bitmap
// allocator had the same kind of limit.
const maxRangeSize = 1 << 20

// ipRange is the set of allocatable cluster IPs, as offsets from the network address.
type ipRange struct {
	prefix netip.Prefix
	base   *big.Int
	// first and last are the lowest and highest usable offsets; first is reservedOffset.
	first, last uint64
	family      corev1.IPFamily
}

// reservedOffset is the address kept for the API service (default/kubernetes), as in Kubernetes.
const reservedOffset = 1

func parseRange(cidr string) (*ipRange, error) {
	p, err := netip.ParsePrefix(cidr)
	if err != nil {
		return nil, fmt.Errorf("parsing service CIDR %q: %w", cidr, err)
	}
	p = p.Masked()
	hostBits := p.Addr().BitLen() - p.Bits()
	size := uint64(maxRangeSize)
	if hostBits < 20 {
		size = 1 << hostBits
	}
	r := &ipRange{prefix: p, base: new(big.Int).SetBytes(p.Addr().AsSlice()), family: corev1.IPv4Protocol}
	last := size - 1
	if p.Addr().Is4() {
		last = size - 2 // broadcast
	} else {
		r.family = corev1.IPv6Protocol // no broadcast address to skip
	}
	if last < reservedOffset+1 {
		return nil, fmt.Errorf("service CIDR %s is too small: it needs room for the API service address and at least one more", cidr)
	}
	r.first, r.last = reservedOffset, last
	return r, nil
}

// size is the number of allocatable addresses, the reserved one included.
func (r *ipRange) size() uint64 { return r.last - r.first + 1 }

// addr returns the address at offset.
func (r *ipRange) addr(offset uint64) netip.Addr {
	n := new(big.Int).Add(r.base, new(big.Int).SetUint64(offset))
	b := n.FillBytes(make([]byte, r.prefix.Addr().BitLen()/8))
	a, _ := netip.AddrFromSlice(b)
	return a
}

// offset returns the offset of ip and whether it is an allocatable address of the range.
func (r *ipRange) offset(ip string) (uint64, bool) {
	a, err := netip.ParseAddr(ip)
	if err != nil || !r.prefix.Contains(a.Unmap()) {
		return 0, false
	}
	n := new(big.Int).Sub(new(big.Int).SetBytes(a.Unmap().AsSlice()), r.base)
	if !n.IsUint64() {
		return 0, false
	}
	off := n.Uint64()
	return off, off >= r.first && off <= r.last
}

func (r *ipRange) String() string { return r.prefix.String() }
