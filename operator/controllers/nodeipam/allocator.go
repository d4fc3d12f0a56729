package nodeipam

import (
	"errors"
	"fmt"
	"math/big"
	"net/netip"
)

// ErrFull is returned by Allocate when every subnet of the cluster range is taken.
var ErrFull = errors.New("no pod CIDR left in the cluster range")

// maxSubnets caps the subnets an allocator tracks (an IPv6 /48 split in /64s has 65 536).
const maxSubnets = 1 << 20

// Allocator hands out fixed-size subnets of a cluster range, lowest free first. It is not safe
// for concurrent use.
type Allocator struct {
	cluster netip.Prefix
	bits    int // prefix length of each subnet
	count   int
	used    map[int]string // subnet index → owner (node name)
	owned   map[string]int // owner → subnet index
}

// NewAllocator splits cluster (for example 10.244.0.0/16) into subnets of nodeBits (24 for IPv4;
// 64 is Kubernetes' IPv6 default). nodeBits shorter than the cluster's prefix uses the whole range.
func NewAllocator(cluster string, nodeBits int) (*Allocator, error) {
	p, err := netip.ParsePrefix(cluster)
	if err != nil {
		return nil, fmt.Errorf("cluster pod CIDR %q: %w", cluster, err)
	}
	p = p.Masked()
	if nodeBits < p.Bits() {
		nodeBits = p.Bits()
	}
	if nodeBits > p.Addr().BitLen() {
		return nil, fmt.Errorf("node CIDR size /%d is longer than an address", nodeBits)
	}
	shift := nodeBits - p.Bits()
	count := maxSubnets
	if shift < 20 {
		count = 1 << shift
	}
	return &Allocator{cluster: p, bits: nodeBits, count: count, used: map[int]string{}, owned: map[string]int{}}, nil
}

// Subnet returns the i-th subnet of the range.
func (a *Allocator) Subnet(i int) netip.Prefix {
	base := a.cluster.Addr().AsSlice()
	n := new(big.Int).SetBytes(base)
	off := new(big.Int).Lsh(big.NewInt(int64(i)), uint(a.cluster.Addr().BitLen()-a.bits))
	n.Add(n, off)
	buf := n.FillBytes(make([]byte, len(base)))
	addr, _ := netip.AddrFromSlice(buf)
	return netip.PrefixFrom(addr, a.bits)
}

// index returns the subnet index of cidr when it is exactly one of the range's subnets.
func (a *Allocator) index(cidr string) (int, bool) {
	p, err := netip.ParsePrefix(cidr)
	if err != nil || p.Bits() != a.bits || !a.cluster.Contains(p.Addr()) || p.Masked() != p {
		return 0, false
	}
	d := new(big.Int).Sub(new(big.Int).SetBytes(p.Addr().AsSlice()), new(big.Int).SetBytes(a.cluster.Addr().AsSlice()))
	d.Rsh(d, uint(a.cluster.Addr().BitLen()-a.bits))
	if !d.IsInt64() || d.Int64() >= int64(a.count) {
		return 0, false
	}
	return int(d.Int64()), true
}

// Occupy records that owner holds cidr. A CIDR outside the range (or of another size) is not
// tracked and succeeds; a CIDR held by another owner fails.
func (a *Allocator) Occupy(owner, cidr string) error {
	i, ok := a.index(cidr)
	if !ok {
		return nil
	}
	if cur, taken := a.used[i]; taken && cur != owner {
		return fmt.Errorf("pod CIDR %s is already assigned to %s", cidr, cur)
	}
	if prev, ok := a.owned[owner]; ok && prev != i {
		delete(a.used, prev)
	}
	a.used[i] = owner
	a.owned[owner] = i
	return nil
}

// Owned returns the CIDR recorded for owner.
func (a *Allocator) Owned(owner string) (string, bool) {
	i, ok := a.owned[owner]
	if !ok {
		return "", false
	}
	return a.Subnet(i).String(), true
}

// Allocate gives owner a subnet: the one it already holds, else the lowest free one.
func (a *Allocator) Allocate(owner string) (string, error) {
	if cidr, ok := a.Owned(owner); ok {
		return cidr, nil
	}
	for i := 0; i < a.count; i++ {
		if _, taken := a.used[i]; !taken {
			a.used[i] = owner
			a.owned[owner] = i
			return a.Subnet(i).String(), nil
		}
	}
	return "", fmt.Errorf("%w (%s in /%d subnets: %d in use)", ErrFull, a.cluster, a.bits, len(a.used))
}

// Release frees owner's subnet.
func (a *Allocator) Release(owner string) {
	if i, ok := a.owned[owner]; ok {
		delete(a.used, i)
		delete(a.owned, owner)
	}
}
