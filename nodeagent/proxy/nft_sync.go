package proxy

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	corev1 "k8s.io/api/core/v1"
)

const (
	// nftBatchLimit bounds the messages of one netlink batch. The kernel acknowledges every
	// message of a batch before userspace reads any acknowledgement, so a full sync of 10 000
	// services (≈ 500 000 messages) in one batch would overflow any receive buffer (ENOBUFS).
	// A partial sync is far smaller and always goes in one batch.
	// Each batch costs a validation of the whole table by the kernel at commit, so batches are
	// made as large as the socket buffers allow.
	nftBatchLimit = 32768
	// nftSocketBuffer holds the acknowledgements of one batch (≈ 1 KiB of socket memory each)
	// and the batch itself; root may exceed the sysctl maxima (SO_RCVBUFFORCE, SO_SNDBUFFORCE).
	nftSocketBuffer = 64 << 20
	// nftElemsPerMessage keeps a set element message under netlink's 64 KiB attribute limit.
	nftElemsPerMessage = 512
)

// nftMode is the nftables mode's state, owned by the goroutine that syncs (under Proxier.mu).
type nftMode struct {
	netns       string
	clusterCIDR netip.Prefix
	table       *nftables.Table
	last        map[string]*nftService // what the last successful sync wrote, by namespace/name
}

func newNFTMode(cfg Config) *nftMode {
	m := &nftMode{netns: cfg.NetNS, table: &nftables.Table{Family: nftables.TableFamilyIPv4, Name: nftTable}}
	if cfg.ClusterCIDR != "" {
		m.clusterCIDR = netip.MustParsePrefix(cfg.ClusterCIDR).Masked() // Validate parsed it
	}
	return m
}

// dial opens a netlink connection in the configured network namespace. The namespace is only
// needed while the socket is made: the socket stays in it.
func (m *nftMode) dial() (*nftables.Conn, error) {
	opts := []nftables.ConnOption{nftables.AsLasting(), nftables.WithSockOptions(func(c *netlink.Conn) error {
		if err := c.SetReadBuffer(nftSocketBuffer); err != nil {
			return err
		}
		return c.SetWriteBuffer(nftSocketBuffer)
	})}
	if m.netns != "" {
		f, err := os.Open(m.netns)
		if err != nil {
			return nil, fmt.Errorf("opening the network namespace of the nftables proxy: %w", err)
		}
		defer f.Close()
		opts = append(opts, nftables.WithNetNSFd(int(f.Fd())))
	}
	c, err := nftables.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("opening an nftables netlink socket (does the kernel have nf_tables?): %w", err)
	}
	return c, nil
}

// intact reports whether the table and its base chains are still there.
func (m *nftMode) intact() (bool, error) {
	c, err := m.dial()
	if err != nil {
		return false, err
	}
	defer c.CloseLasting()
	ok, err := m.tableExists(c)
	if err != nil || !ok {
		return false, err
	}
	for name := range nftBaseChains {
		if _, err := c.ListChain(m.table, name); err != nil {
			return false, nil // gone (the library does not keep the errno to tell)
		}
	}
	return true, nil
}

func (m *nftMode) tableExists(c *nftables.Conn) (bool, error) {
	tables, err := c.ListTablesOfFamily(nftables.TableFamilyIPv4)
	if err != nil {
		return false, fmt.Errorf("listing nftables tables: %w", err)
	}
	return slices.ContainsFunc(tables, func(t *nftables.Table) bool { return t.Name == nftTable }), nil
}

// generate computes the desired objects, reusing those of every Service whose Service and
// Endpoints objects are the ones of the last successful sync.
func (m *nftMode) generate(svcs []*corev1.Service, epByKey map[string]*corev1.Endpoints) map[string]*nftService {
	out := make(map[string]*nftService, len(svcs))
	for _, s := range svcs {
		key := s.Namespace + "/" + s.Name
		ep := epByKey[key]
		if old := m.last[key]; old != nil && old.svc == s && old.ep == ep {
			out[key] = old
			continue
		}
		out[key] = generateNFTService(s, ep)
	}
	return out
}

// nftPlan is what one sync writes, in the order apply sends it.
type nftPlan struct {
	full      bool                     // also (re)declare the table, the maps and the static chains
	addSets   map[string]time.Duration // affinity sets
	addChains []string
	write     []nftWrite // chains to fill, flushed first unless new
	delElems  []nftElemVerdict
	addElems  []nftElemVerdict
	delChains []string
	delSets   []string
}

// nftWrite is a chain to fill: a static chain (static) or a per-service one.
type nftWrite struct {
	name   string
	static bool
	chain  nftChain
	flush  bool
}

type nftElemVerdict struct {
	elem  nftElem
	chain string
}

func (p *nftPlan) empty() bool {
	return !p.full && len(p.addSets)+len(p.addChains)+len(p.write)+len(p.delElems)+len(p.addElems)+
		len(p.delChains)+len(p.delSets) == 0
}

// diffPlan is the partial sync from prev to next: only the services whose objects were
// regenerated are compared, and only their chains, sets and map elements are touched.
func diffPlan(prev, next map[string]*nftService) *nftPlan {
	p := &nftPlan{addSets: map[string]time.Duration{}}
	var changed []string
	for key, n := range next {
		if prev[key] != n {
			changed = append(changed, key)
		}
	}
	for key := range prev {
		if _, ok := next[key]; !ok {
			changed = append(changed, key)
		}
	}
	slices.Sort(changed)
	for _, key := range changed {
		p.diffService(prev[key], next[key]) // nil when created or deleted
	}
	return p
}

var emptyNFTService = &nftService{}

func (p *nftPlan) diffService(o, n *nftService) {
	if o == nil {
		o = emptyNFTService
	}
	if n == nil {
		n = emptyNFTService
	}
	for _, name := range slices.Sorted(maps.Keys(n.sets)) {
		if _, ok := o.sets[name]; !ok {
			p.addSets[name] = n.sets[name]
		}
	}
	for _, name := range slices.Sorted(maps.Keys(n.chains)) {
		c := n.chains[name]
		oc, ok := o.chains[name]
		switch {
		case !ok:
			p.addChains = append(p.addChains, name)
			p.write = append(p.write, nftWrite{name: name, chain: c})
		case oc.spec() != c.spec():
			p.write = append(p.write, nftWrite{name: name, chain: c, flush: true})
		}
	}
	for _, e := range sortedElems(o.elems) {
		if target, ok := n.elems[e]; !ok || target != o.elems[e] {
			p.delElems = append(p.delElems, nftElemVerdict{e, o.elems[e]})
		}
	}
	for _, e := range sortedElems(n.elems) {
		if target, ok := o.elems[e]; !ok || target != n.elems[e] {
			p.addElems = append(p.addElems, nftElemVerdict{e, n.elems[e]})
		}
	}
	for _, name := range slices.Sorted(maps.Keys(o.chains)) {
		if _, ok := n.chains[name]; !ok {
			p.delChains = append(p.delChains, name)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(o.sets)) {
		if _, ok := n.sets[name]; !ok {
			p.delSets = append(p.delSets, name)
		}
	}
}

func sortedElems(m map[nftElem]string) []nftElem {
	return slices.SortedFunc(maps.Keys(m), func(a, b nftElem) int {
		return strings.Compare(a.set, b.set)*8 + a.ip.Compare(b.ip)*4 + cmpInt(a.proto, b.proto)*2 + cmpInt(a.port, b.port)
	})
}

func cmpInt[T uint8 | uint16](a, b T) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// fullPlan rewrites everything: every chain is declared, flushed and filled, the map elements
// and the chains and sets of the table that next does not want are deleted. Affinity sets and
// map elements that stay are left alone, so a periodic full sync keeps client affinity.
func (m *nftMode) fullPlan(c *nftables.Conn, next map[string]*nftService) (*nftPlan, error) {
	p := &nftPlan{full: true, addSets: map[string]time.Duration{}}
	exists, err := m.tableExists(c)
	if err != nil {
		return nil, err
	}
	kernel := map[string]bool{} // the chains of the table now: they need a flush
	if exists {
		chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyIPv4)
		if err != nil {
			return nil, fmt.Errorf("listing nftables chains: %w", err)
		}
		for _, ch := range chains {
			if ch.Table.Name == nftTable {
				kernel[ch.Name] = true
			}
		}
	}
	wantChains := map[string]bool{}
	for _, name := range nftStaticChains {
		wantChains[name] = true
		p.addChains = append(p.addChains, name)
		p.write = append(p.write, nftWrite{name: name, static: true, flush: kernel[name]})
	}
	want := map[nftElem]string{}
	for _, key := range slices.Sorted(maps.Keys(next)) {
		s := next[key]
		maps.Copy(p.addSets, s.sets)
		for _, name := range slices.Sorted(maps.Keys(s.chains)) {
			wantChains[name] = true
			p.addChains = append(p.addChains, name)
			p.write = append(p.write, nftWrite{name: name, chain: s.chains[name], flush: kernel[name]})
		}
		for e, target := range s.elems {
			if _, taken := want[e]; !taken { // two services on one address and port: the first wins
				want[e] = target
			}
		}
	}
	for _, e := range sortedElems(want) {
		p.addElems = append(p.addElems, nftElemVerdict{e, want[e]})
	}

	if !exists {
		return p, nil
	}
	for name := range kernel {
		if !wantChains[name] {
			p.delChains = append(p.delChains, name)
		}
	}
	slices.Sort(p.delChains)
	sets, err := c.GetSets(m.table)
	if err != nil {
		return nil, fmt.Errorf("listing the sets of table ip %s: %w", nftTable, err)
	}
	existing := map[string]bool{}
	for _, s := range sets {
		existing[s.Name] = true
		isMap := slices.ContainsFunc(nftMaps, func(mp nftMap) bool { return mp.name == s.Name })
		if _, ok := p.addSets[s.Name]; !ok && !isMap && !strings.HasPrefix(s.Name, "__") {
			p.delSets = append(p.delSets, s.Name)
		}
	}
	slices.Sort(p.delSets)
	for _, mp := range nftMaps {
		if !existing[mp.name] {
			continue // someone deleted it: the plan declares it again
		}
		elems, err := c.GetSetElements(nftMapSet(m.table, mp.name, mp.withIP))
		if err != nil {
			return nil, fmt.Errorf("listing the elements of map %s: %w", mp.name, err)
		}
		for _, el := range elems {
			e, ok := parseNFTElem(mp.name, mp.withIP, el.Key)
			var target string
			if el.VerdictData != nil {
				target = el.VerdictData.Chain
			}
			if !ok {
				continue // not ours to interpret; the map is only ever written by the proxy
			}
			if w, found := want[e]; !found || w != target {
				p.delElems = append(p.delElems, nftElemVerdict{e, target})
			}
		}
	}
	return p, nil
}

// nftBatch sends the queued messages whenever a unit of work ends past nftBatchLimit.
type nftBatch struct {
	conn     *nftables.Conn
	pending  int
	batches  int
	messages int
}

func (b *nftBatch) queued(n int) error {
	b.pending += n
	b.messages += n
	if b.pending < nftBatchLimit {
		return nil
	}
	return b.flush()
}

func (b *nftBatch) flush() error {
	if b.pending == 0 {
		return nil
	}
	b.pending = 0
	b.batches++
	if err := b.conn.Flush(); err != nil {
		return fmt.Errorf("nftables batch %d: %w", b.batches, err)
	}
	return nil
}

// apply sends plan: one batch unless it has more than nftBatchLimit messages, in which case
// every chain's flush and rules still go in one batch.
func (m *nftMode) apply(c *nftables.Conn, plan *nftPlan) (batches, messages int, err error) {
	b := &nftBatch{conn: c}
	t := m.table
	if plan.full {
		c.AddTable(t)
		for _, mp := range nftMaps {
			if err := c.AddSet(nftMapSet(t, mp.name, mp.withIP), nil); err != nil {
				return 0, 0, err
			}
		}
		if err := b.queued(1 + len(nftMaps)); err != nil {
			return b.batches, b.messages, err
		}
	}
	for _, name := range slices.Sorted(maps.Keys(plan.addSets)) {
		if err := c.AddSet(affinitySet(t, name, plan.addSets[name]), nil); err != nil {
			return b.batches, b.messages, err
		}
		if err := b.queued(1); err != nil {
			return b.batches, b.messages, err
		}
	}
	for _, name := range plan.addChains {
		c.AddChain(m.chain(name))
		if err := b.queued(1); err != nil {
			return b.batches, b.messages, err
		}
	}
	for _, w := range plan.write {
		ch := m.chain(w.name)
		n := 0
		if w.flush {
			c.FlushChain(ch)
			n++
		}
		var rules []nftRule
		if w.static {
			for _, e := range nftStaticRules(w.name) {
				rules = append(rules, nftRule{exprs: e})
			}
		} else {
			rules = w.chain.rules(t, m.clusterCIDR)
		}
		for _, r := range rules {
			if r.vmap != nil {
				if err := c.AddSet(r.vmap, r.vmapElem); err != nil {
					return b.batches, b.messages, err
				}
				lookup := r.exprs[len(r.exprs)-1].(*expr.Lookup)
				lookup.SetID, lookup.SetName = r.vmap.ID, r.vmap.Name
				n += 2
			}
			c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: r.exprs})
			n++
		}
		if err := b.queued(n); err != nil {
			return b.batches, b.messages, err
		}
	}
	for i, ops := range [][]nftElemVerdict{plan.delElems, plan.addElems} {
		add := i == 1
		for len(ops) > 0 {
			// One message per run of elements of one map.
			mp := ops[0].elem.set
			n := 1
			for n < len(ops) && n < nftElemsPerMessage && ops[n].elem.set == mp {
				n++
			}
			set := nftMapSet(t, mp, ops[0].elem.ip.IsValid())
			elems := make([]nftables.SetElement, n)
			for i, op := range ops[:n] {
				elems[i] = nftables.SetElement{Key: op.elem.key()}
				if add {
					elems[i].VerdictData = &expr.Verdict{Kind: expr.VerdictGoto, Chain: op.chain}
				}
			}
			if add {
				err = c.SetAddElements(set, elems)
			} else {
				err = c.SetDeleteElements(set, elems)
			}
			if err != nil {
				return b.batches, b.messages, err
			}
			if err := b.queued(1); err != nil {
				return b.batches, b.messages, err
			}
			ops = ops[n:]
		}
	}
	// Flush every chain to delete before deleting any: they may jump to one another.
	for _, name := range plan.delChains {
		c.FlushChain(m.chain(name))
		if err := b.queued(1); err != nil {
			return b.batches, b.messages, err
		}
	}
	for _, name := range plan.delChains {
		c.DelChain(m.chain(name))
		if err := b.queued(1); err != nil {
			return b.batches, b.messages, err
		}
	}
	for _, name := range plan.delSets {
		c.DelSet(&nftables.Set{Table: t, Name: name})
		if err := b.queued(1); err != nil {
			return b.batches, b.messages, err
		}
	}
	err = b.flush()
	return b.batches, b.messages, err
}

// chain names a chain of the table, with its hook if it is a base chain.
func (m *nftMode) chain(name string) *nftables.Chain {
	if bc, ok := nftBaseChains[name]; ok {
		return bc.chain(m.table, name)
	}
	return &nftables.Chain{Table: m.table, Name: name}
}

// syncNFT is sync in the nftables mode.
func (p *Proxier) syncNFT(ctx context.Context, svcs []*corev1.Service, epByKey map[string]*corev1.Endpoints, start time.Time) (syncStats, error) {
	m := p.nft
	next := m.generate(svcs, epByKey)
	st := syncStats{full: p.full || m.last == nil, services: len(next)}
	c, err := m.dial()
	if err != nil {
		return st, err
	}
	defer c.CloseLasting()
	var plan *nftPlan
	if st.full {
		if plan, err = m.fullPlan(c, next); err != nil {
			return st, err
		}
	} else {
		plan = diffPlan(m.last, next)
	}
	st.plan = plan
	if !plan.empty() {
		if st.batches, st.messages, err = m.apply(c, plan); err != nil {
			return st, fmt.Errorf("writing the nftables service rules: %w", err)
		}
	}
	st.written, st.removed = len(plan.write), len(plan.delChains)
	st.elements = len(plan.addElems) + len(plan.delElems)

	prev := m.last
	m.last, p.full = next, false
	if prev != nil {
		var deletions [][]string
		for key, n := range next {
			if o := prev[key]; o != n {
				var oudp []udpPort
				if o != nil {
					oudp = o.udp
				}
				deletions = append(deletions, staleUDPConntrack(oudp, n.udp)...)
			}
		}
		for key, o := range prev {
			if _, ok := next[key]; !ok {
				deletions = append(deletions, staleUDPConntrack(o.udp, nil)...)
			}
		}
		st.conntrackDeletions = len(deletions)
		if err := clearConntrack(ctx, p.cfg.Exec, deletions); err != nil {
			p.log.Warn("clearing conntrack", "err", err) // the rules are right; flows expire
		}
	}
	st.took = time.Since(start)
	return st, nil
}
