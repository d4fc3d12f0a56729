package proxy

import (
	"hash/fnv"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
)

// The nftables mode's objects, named as in kube-proxy's nftables mode, spread over tables that
// nothing else writes: deleting them removes the whole proxy. The kernel validates the jump
// graph of every table a transaction touched, at every commit that adds a jump, a NAT or a
// lookup, so the services are spread over nftShards shard tables (ip bosun-0 … ip bosun-15,
// a service's shard a hash of namespace/name) and a change of one service costs a validation of
// one shard's chains, not of every service's. What is global stays in the main table ip bosun.
const (
	nftTable = "bosun"
	// nftShards is how many tables the services are spread over. Changing it moves services:
	// the first full sync after that deletes the shard tables beyond it.
	nftShards = 16

	// Verdict maps keyed by ip daddr . meta l4proto . th dport (ClusterIPs) or by
	// meta l4proto . th dport (NodePorts, on local addresses). The first two are per shard, the
	// no-endpoint maps are in the main table, so that the filter hooks do one lookup per packet.
	mapServiceIPs          = "service-ips"
	mapServiceNodePorts    = "service-nodeports"
	mapNoEndpointServices  = "no-endpoint-services"
	mapNoEndpointNodePorts = "no-endpoint-nodeports"

	chainNATPrerouting          = "nat-prerouting"
	chainNATOutput              = "nat-output"
	chainNATPostrouting         = "nat-postrouting"
	chainFilterInput            = "filter-input"
	chainFilterForward          = "filter-forward"
	chainFilterOutput           = "filter-output"
	chainNFTServices            = "services"
	chainServiceEndpointsCheck  = "service-endpoints-check"
	chainNodePortEndpointsCheck = "nodeport-endpoints-check"
	chainMarkForMasquerade      = "mark-for-masquerade"
	chainMasquerading           = "masquerading"
	chainReject                 = "reject-chain"

	// nftMasqMark is masqMark as a number.
	nftMasqMark = 0x4000
	// filterPriority runs the endpoint checks before DNAT (nat output is at -100), so that they
	// still see the ClusterIP, as kube-proxy does.
	filterPriority = -110
	// affinitySetSize bounds the client addresses remembered per endpoint (kube-proxy's size).
	affinitySetSize = 65535
)

// nftTableNames are the proxy's tables: the main table, then the shards.
var nftTableNames = func() []string {
	names := []string{nftTable}
	for i := range nftShards {
		names = append(names, nftShardTable(i))
	}
	return names
}()

func nftShardTable(i int) string { return nftTable + "-" + strconv.Itoa(i) }

// nftShardOf is the shard table of the Service namespace/name.
func nftShardOf(key string) string {
	h := fnv.New32a()
	h.Write([]byte(key))
	return nftShardTable(int(h.Sum32() % nftShards))
}

// nftShardIndex is the number of a shard table, -1 for the main table; ok is false for a table
// that is not the proxy's. Any number is a shard, whatever nftShards is now: ip bosun-99 is a
// stale one.
func nftShardIndex(table string) (int, bool) {
	if table == nftTable {
		return -1, true
	}
	rest, ok := strings.CutPrefix(table, nftTable+"-")
	if !ok {
		return 0, false
	}
	i, err := strconv.Atoi(rest)
	if err != nil || i < 0 || strconv.Itoa(i) != rest {
		return 0, false
	}
	return i, true
}

func nftTableRef(name string) *nftables.Table {
	return &nftables.Table{Family: nftables.TableFamilyIPv4, Name: name}
}

// nftLayout is what a table holds whatever the services: its verdict maps and its static
// chains, regular chains first so that the base chains' jumps find them.
type nftLayout struct {
	maps   []nftMap
	chains []string
}

var (
	// The main table: masquerading and the rejection of services without endpoints.
	nftMainLayout = nftLayout{
		maps: []nftMap{{mapNoEndpointServices, true}, {mapNoEndpointNodePorts, false}},
		chains: []string{chainServiceEndpointsCheck, chainNodePortEndpointsCheck, chainMasquerading, chainReject,
			chainNATPostrouting, chainFilterInput, chainFilterForward, chainFilterOutput},
	}
	// A shard: DNAT of its services. Each shard hooks nat prerouting and output at the same
	// priority; the first chain that sets up NAT for a connection ends the hook's NAT lookups
	// (nf_nat_inet_fn), so the shards never both DNAT one connection.
	nftShardLayout = nftLayout{
		maps:   []nftMap{{mapServiceIPs, true}, {mapServiceNodePorts, false}},
		chains: []string{chainNFTServices, chainMarkForMasquerade, chainNATPrerouting, chainNATOutput},
	}
)

func nftLayoutOf(table string) nftLayout {
	if table == nftTable {
		return nftMainLayout
	}
	return nftShardLayout
}

// nftBaseChain is a chain hooked into netfilter.
type nftBaseChain struct {
	typ      nftables.ChainType
	hook     *nftables.ChainHook
	priority nftables.ChainPriority
}

func (b nftBaseChain) chain(t *nftables.Table, name string) *nftables.Chain {
	return &nftables.Chain{Table: t, Name: name, Type: b.typ, Hooknum: b.hook, Priority: nftables.ChainPriorityRef(b.priority)}
}

var nftBaseChains = map[string]nftBaseChain{
	chainNATPrerouting:  {nftables.ChainTypeNAT, nftables.ChainHookPrerouting, nftables.ChainPriority(-100)},
	chainNATOutput:      {nftables.ChainTypeNAT, nftables.ChainHookOutput, nftables.ChainPriority(-100)},
	chainNATPostrouting: {nftables.ChainTypeNAT, nftables.ChainHookPostrouting, nftables.ChainPriority(100)},
	chainFilterInput:    {nftables.ChainTypeFilter, nftables.ChainHookInput, nftables.ChainPriority(filterPriority)},
	chainFilterForward:  {nftables.ChainTypeFilter, nftables.ChainHookForward, nftables.ChainPriority(filterPriority)},
	chainFilterOutput:   {nftables.ChainTypeFilter, nftables.ChainHookOutput, nftables.ChainPriority(filterPriority)},
}

// nftMap is a verdict map; withIP says whether its key starts with the address.
type nftMap struct {
	name   string
	withIP bool
}

func nftMapSet(t *nftables.Table, name string, withIP bool) *nftables.Set {
	key := nftables.MustConcatSetType(nftables.TypeInetProto, nftables.TypeInetService)
	if withIP {
		key = nftables.MustConcatSetType(nftables.TypeIPAddr, nftables.TypeInetProto, nftables.TypeInetService)
	}
	return &nftables.Set{Table: t, Name: name, IsMap: true, Concatenation: true, KeyType: key, DataType: nftables.TypeVerdict}
}

func affinitySet(t *nftables.Table, name string, timeout time.Duration) *nftables.Set {
	return &nftables.Set{Table: t, Name: name, KeyType: nftables.TypeIPAddr, Dynamic: true,
		HasTimeout: true, Timeout: timeout, Size: affinitySetSize}
}

// nftElem is the key of a verdict map element of a table; ip is the zero Addr in the NodePort
// maps.
type nftElem struct {
	table string
	set   string
	ip    netip.Addr
	proto uint8
	port  uint16
}

// key encodes the concatenation as the kernel stores it: each field padded to 4 bytes.
func (e nftElem) key() []byte {
	var b []byte
	if e.ip.IsValid() {
		a := e.ip.As4()
		b = append(b, a[:]...)
	}
	b = append(b, e.proto, 0, 0, 0)
	return append(b, byte(e.port>>8), byte(e.port), 0, 0)
}

// parseNFTElem is key's inverse; ok is false for a key of another shape.
func parseNFTElem(table, set string, withIP bool, key []byte) (nftElem, bool) {
	e := nftElem{table: table, set: set}
	if withIP {
		if len(key) != 12 {
			return e, false
		}
		e.ip = netip.AddrFrom4([4]byte(key[:4]))
		key = key[4:]
	}
	if len(key) != 8 {
		return e, false
	}
	e.proto, e.port = key[0], uint16(key[4])<<8|uint16(key[5])
	return e, true
}

func l4proto(proto string) uint8 {
	if proto == "udp" {
		return unix.IPPROTO_UDP
	}
	return unix.IPPROTO_TCP
}

// nftChainKind says how a per-service chain's rules are made.
type nftChainKind uint8

const (
	kindService  nftChainKind = iota // mark for masquerade, affinity, load-balance to endpoints
	kindEndpoint                     // hairpin masquerade, affinity update, DNAT
	kindExternal                     // NodePort: mark for masquerade, then the service chain
)

// nftChain is a per-service chain: what its rules are made of. Two chains of one name with
// equal specs have equal rules.
type nftChain struct {
	kind     nftChainKind
	port     *servicePort
	endpoint string // kindEndpoint: "ip:port"
}

func (c nftChain) spec() string {
	switch c.kind {
	case kindService:
		return "service " + strconv.Itoa(c.port.affinity) + " " + strings.Join(c.port.endpoints, ",")
	case kindEndpoint:
		return "endpoint " + c.port.proto + " " + c.endpoint + " " + strconv.Itoa(c.port.affinity)
	default:
		return "external"
	}
}

// nftService is everything one Service contributes to the table. Like serviceRules, it is cached
// per Service and regenerated only when the Service or its Endpoints object changed.
type nftService struct {
	svc   *corev1.Service
	ep    *corev1.Endpoints
	table string // its shard: the table of its chains, sets and service map elements

	chains map[string]nftChain
	sets   map[string]time.Duration // affinity sets and their timeouts
	elems  map[nftElem]string       // verdict map elements: goto this chain
	udp    []udpPort
}

// nftChainSuffix is kube-proxy's chain name tail: a hash, then ns/name/proto/port.
func nftChainSuffix(sp *servicePort, endpoint string) string {
	ns, rest, _ := strings.Cut(sp.name, "/")
	name, port, _ := strings.Cut(rest, ":")
	h := hashSuffix(sp.name, sp.proto)
	tail := ns + "/" + name + "/" + sp.proto + "/" + port
	if endpoint != "" {
		h = hashSuffix(sp.name, sp.proto, endpoint)
		host, p, _ := net.SplitHostPort(endpoint)
		tail += "__" + host + "/" + p
	}
	return h[:8] + "-" + tail
}

func nftServiceChainName(sp *servicePort) string  { return "service-" + nftChainSuffix(sp, "") }
func nftExternalChainName(sp *servicePort) string { return "external-" + nftChainSuffix(sp, "") }
func nftEndpointChainName(sp *servicePort, endpoint string) string {
	return "endpoint-" + nftChainSuffix(sp, endpoint)
}

// affinitySetName carries the timeout so that a changed timeout makes a new set rather than
// needing an update of a set in use.
func affinitySetName(sp *servicePort, endpoint string) string {
	return "affinity-" + hashSuffix(sp.name, sp.proto, endpoint, strconv.Itoa(sp.affinity))[:8] + "-" +
		strings.SplitN(nftChainSuffix(sp, endpoint), "-", 2)[1]
}

// generateNFTService computes the objects of one Service.
func generateNFTService(svc *corev1.Service, ep *corev1.Endpoints) *nftService {
	s := &nftService{svc: svc, ep: ep, table: nftShardOf(svc.Namespace + "/" + svc.Name),
		chains: map[string]nftChain{}, sets: map[string]time.Duration{}, elems: map[nftElem]string{}}
	ports := servicePorts(svc, ep)
	s.udp = udpPorts(ports)
	for i := range ports {
		sp := &ports[i]
		ip, _ := netip.ParseAddr(sp.clusterIP)
		proto := l4proto(sp.proto)
		if len(sp.endpoints) == 0 {
			s.elems[nftElem{nftTable, mapNoEndpointServices, ip, proto, uint16(sp.port)}] = chainReject
			if sp.nodePort != 0 {
				s.elems[nftElem{nftTable, mapNoEndpointNodePorts, netip.Addr{}, proto, uint16(sp.nodePort)}] = chainReject
			}
			continue
		}
		svcChain := nftServiceChainName(sp)
		s.chains[svcChain] = nftChain{kind: kindService, port: sp}
		s.elems[nftElem{s.table, mapServiceIPs, ip, proto, uint16(sp.port)}] = svcChain
		if sp.nodePort != 0 {
			ext := nftExternalChainName(sp)
			s.chains[ext] = nftChain{kind: kindExternal, port: sp}
			s.elems[nftElem{s.table, mapServiceNodePorts, netip.Addr{}, proto, uint16(sp.nodePort)}] = ext
		}
		for _, e := range sp.endpoints {
			s.chains[nftEndpointChainName(sp, e)] = nftChain{kind: kindEndpoint, port: sp, endpoint: e}
			if sp.affinity > 0 {
				s.sets[affinitySetName(sp, e)] = time.Duration(sp.affinity) * time.Second
			}
		}
	}
	return s
}

// The expressions below are what `nft --debug=netlink` shows for the rules in their comments.

const (
	regVerdict = 0
	reg1       = 1 // 16-byte register 1 (= 32-bit registers 8..11)
	reg32_01   = 9
	reg32_02   = 10
)

func verdict(kind expr.VerdictKind, chain string) expr.Any {
	return &expr.Verdict{Kind: kind, Chain: chain}
}

// markForMasquerade: jump mark-for-masquerade
func markForMasquerade() expr.Any { return verdict(expr.VerdictJump, chainMarkForMasquerade) }

// loadSaddr: ip saddr
func loadAddr(dst bool) expr.Any {
	off := uint32(12)
	if dst {
		off = 16
	}
	return &expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: 4}
}

// matchPrefix: ip saddr (!=) prefix
func matchPrefix(dst, negate bool, p netip.Prefix) []expr.Any {
	op := expr.CmpOpEq
	if negate {
		op = expr.CmpOpNeq
	}
	a := p.Masked().Addr().As4()
	mask := net.CIDRMask(p.Bits(), 32)
	return []expr.Any{
		loadAddr(dst),
		&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4, Mask: mask, Xor: []byte{0, 0, 0, 0}},
		&expr.Cmp{Op: op, Register: reg1, Data: a[:]},
	}
}

// ctStateNew: ct state new
func ctStateNew() []expr.Any {
	return []expr.Any{
		&expr.Ct{Register: reg1, Key: expr.CtKeySTATE},
		&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(expr.CtStateBitNEW), Xor: binaryutil.NativeEndian.PutUint32(0)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: reg1, Data: binaryutil.NativeEndian.PutUint32(0)},
	}
}

// localNodePort: fib daddr type local ip daddr != 127.0.0.0/8
func localDaddr() []expr.Any {
	return append([]expr.Any{
		&expr.Fib{Register: reg1, FlagDADDR: true, ResultADDRTYPE: true},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: binaryutil.NativeEndian.PutUint32(unix.RTN_LOCAL)},
	}, matchPrefix(true, true, netip.MustParsePrefix("127.0.0.0/8"))...)
}

// vmapLookup: [ip daddr .] meta l4proto . th dport vmap @set
func vmapLookup(set string, withIP bool) []expr.Any {
	var out []expr.Any
	l4, port := uint32(reg1), uint32(reg32_01)
	if withIP {
		out = append(out, loadAddr(true))
		l4, port = reg32_01, reg32_02
	}
	return append(out,
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: l4},
		&expr.Payload{DestRegister: port, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Lookup{SourceRegister: reg1, DestRegister: regVerdict, IsDestRegSet: true, SetName: set},
	)
}

// nftStaticRules returns the rules of a static chain.
func nftStaticRules(chain string) [][]expr.Any {
	mark := binaryutil.NativeEndian.PutUint32(nftMasqMark)
	zero := binaryutil.NativeEndian.PutUint32(0)
	jumpIfNew := func(to string) []expr.Any { return append(ctStateNew(), verdict(expr.VerdictJump, to)) }
	switch chain {
	case chainNATPrerouting, chainNATOutput:
		return [][]expr.Any{{verdict(expr.VerdictJump, chainNFTServices)}}
	case chainNATPostrouting:
		return [][]expr.Any{{verdict(expr.VerdictJump, chainMasquerading)}}
	case chainFilterInput:
		return [][]expr.Any{jumpIfNew(chainNodePortEndpointsCheck), jumpIfNew(chainServiceEndpointsCheck)}
	case chainFilterForward, chainFilterOutput:
		return [][]expr.Any{jumpIfNew(chainServiceEndpointsCheck)}
	case chainNFTServices:
		return [][]expr.Any{
			vmapLookup(mapServiceIPs, true),
			append(localDaddr(), vmapLookup(mapServiceNodePorts, false)...),
		}
	case chainServiceEndpointsCheck:
		return [][]expr.Any{vmapLookup(mapNoEndpointServices, true)}
	case chainNodePortEndpointsCheck:
		return [][]expr.Any{append(localDaddr(), vmapLookup(mapNoEndpointNodePorts, false)...)}
	case chainMarkForMasquerade: // meta mark set meta mark | 0x4000
		return [][]expr.Any{{
			&expr.Meta{Key: expr.MetaKeyMARK, Register: reg1},
			&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4,
				Mask: binaryutil.NativeEndian.PutUint32(^uint32(nftMasqMark)), Xor: mark},
			&expr.Meta{Key: expr.MetaKeyMARK, SourceRegister: true, Register: reg1},
		}}
	case chainMasquerading:
		return [][]expr.Any{
			{ // meta mark & 0x4000 == 0 return
				&expr.Meta{Key: expr.MetaKeyMARK, Register: reg1},
				&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4, Mask: mark, Xor: zero},
				&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: zero},
				verdict(expr.VerdictReturn, ""),
			},
			{ // meta mark set meta mark ^ 0x4000 (so that a reply is not masqueraded again)
				&expr.Meta{Key: expr.MetaKeyMARK, Register: reg1},
				&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4,
					Mask: binaryutil.NativeEndian.PutUint32(^uint32(0)), Xor: mark},
				&expr.Meta{Key: expr.MetaKeyMARK, SourceRegister: true, Register: reg1},
			},
			{&expr.Masq{FullyRandom: true}}, // masquerade fully-random
		}
	case chainReject: // reject (icmp port-unreachable)
		return [][]expr.Any{{&expr.Reject{Type: unix.NFT_REJECT_ICMP_UNREACH, Code: 3}}}
	}
	return nil
}

// nftRule is one rule to add; vmap, when set, is the anonymous map of a numgen rule, which must
// be added in the same batch just before it.
type nftRule struct {
	exprs    []expr.Any
	vmap     *nftables.Set
	vmapElem []nftables.SetElement
}

// rules returns the chain's rules. clusterCIDR may be the zero Prefix (masquerade all).
func (c nftChain) rules(t *nftables.Table, clusterCIDR netip.Prefix) []nftRule {
	sp := c.port
	switch c.kind {
	case kindExternal:
		return []nftRule{{exprs: []expr.Any{markForMasquerade()}},
			{exprs: []expr.Any{verdict(expr.VerdictGoto, nftServiceChainName(sp))}}}
	case kindEndpoint:
		host, portStr, _ := net.SplitHostPort(c.endpoint)
		ip := netip.MustParseAddr(host).As4()
		port, _ := strconv.Atoi(portStr)
		out := []nftRule{{exprs: []expr.Any{ // ip saddr <endpoint> jump mark-for-masquerade (hairpin)
			loadAddr(false), &expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: ip[:]}, markForMasquerade(),
		}}}
		if sp.affinity > 0 { // update @affinity-... { ip saddr }
			out = append(out, nftRule{exprs: []expr.Any{loadAddr(false),
				&expr.Dynset{SrcRegKey: reg1, SetName: affinitySetName(sp, c.endpoint), Operation: unix.NFT_DYNSET_OP_UPDATE}}})
		}
		// meta l4proto tcp dnat to ip:port
		return append(out, nftRule{exprs: []expr.Any{
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{l4proto(sp.proto)}},
			&expr.Immediate{Register: 1, Data: ip[:]},
			&expr.Immediate{Register: 2, Data: binaryutil.BigEndian.PutUint16(uint16(port))},
			&expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 1, RegProtoMin: 2, Specified: true},
		}})
	}
	// kindService
	var out []nftRule
	if clusterCIDR.IsValid() { // ip saddr != <cluster CIDR> jump mark-for-masquerade
		out = append(out, nftRule{exprs: append(matchPrefix(false, true, clusterCIDR), markForMasquerade())})
	} else {
		out = append(out, nftRule{exprs: []expr.Any{markForMasquerade()}})
	}
	eps := make([]string, len(sp.endpoints))
	for i, e := range sp.endpoints {
		eps[i] = nftEndpointChainName(sp, e)
		if sp.affinity > 0 { // ip saddr @affinity-... goto endpoint-...
			out = append(out, nftRule{exprs: []expr.Any{loadAddr(false),
				&expr.Lookup{SourceRegister: reg1, SetName: affinitySetName(sp, e)},
				verdict(expr.VerdictGoto, eps[i])}})
		}
	}
	if len(eps) == 1 {
		return append(out, nftRule{exprs: []expr.Any{verdict(expr.VerdictGoto, eps[0])}})
	}
	// numgen random mod N vmap { 0 : goto endpoint-..., 1 : ... }
	vmap := &nftables.Set{Table: t, Anonymous: true, Constant: true, IsMap: true,
		KeyType: nftables.TypeInteger, DataType: nftables.TypeVerdict}
	elems := make([]nftables.SetElement, len(eps))
	for i, name := range eps {
		elems[i] = nftables.SetElement{Key: binaryutil.BigEndian.PutUint32(uint32(i)),
			VerdictData: &expr.Verdict{Kind: expr.VerdictGoto, Chain: name}}
	}
	return append(out, nftRule{vmap: vmap, vmapElem: elems, exprs: []expr.Any{
		&expr.Numgen{Register: reg1, Modulus: uint32(len(eps)), Type: unix.NFT_NG_RANDOM},
		// The library marks an anonymous map's keys big-endian, so that nft lists them right.
		&expr.Byteorder{SourceRegister: reg1, DestRegister: reg1, Op: expr.ByteorderHton, Len: 4, Size: 4},
		&expr.Lookup{SourceRegister: reg1, DestRegister: regVerdict, IsDestRegSet: true}, // set filled in at apply
	}})
}
