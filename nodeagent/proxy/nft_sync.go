package proxy

import (
	"cmp"
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
	// Each batch costs a validation of the tables it touched by the kernel at commit, so batches
	// are made as large as the socket buffers allow.
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
	last        map[string]*nftService // what the last successful sync wrote, by namespace/name
}

func newNFTMode(cfg Config) *nftMode {
	m := &nftMode{netns: cfg.NetNS}
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

// intact reports whether every table of the proxy and their base chains are still there.
func (m *nftMode) intact() (bool, error) {
	c, err := m.dial()
	if err != nil {
		return false, err
	}
	defer c.CloseLasting()
	tables, err := m.listTables(c)
	if err != nil {
		return false, err
	}
	for _, name := range nftTableNames {
		if !tables[name] {
			return false, nil
		}
		for _, ch := range nftLayoutOf(name).chains {
			if _, base := nftBaseChains[ch]; !base {
				continue
			}
			if _, err := c.ListChain(nftTableRef(name), ch); err != nil {
				return false, nil // gone (the library does not keep the errno to tell)
			}
		}
	}
	return true, nil
}

// listTables returns the proxy's tables in the kernel, including stale shards.
func (m *nftMode) listTables(c *nftables.Conn) (map[string]bool, error) {
	tables, err := c.ListTablesOfFamily(nftables.TableFamilyIPv4)
	if err != nil {
		return nil, fmt.Errorf("listing nftables tables: %w", err)
	}
	out := map[string]bool{}
	for _, t := range tables {
		if _, ours := nftShardIndex(t.Name); ours {
			out[t.Name] = true
		}
	}
	return out, nil
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

// nftPlan is what one sync writes: per table, in the order apply sends it (the main table, then
// the shards; stale shards last).
type nftPlan struct {
	tables map[string]*nftTablePlan
}

// nftTablePlan is what one sync writes into one table.
type nftTablePlan struct {
	name      string
	declare   bool                     // the table, its maps and its static chains
	remove    bool                     // a stale shard: delete the whole table
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

func (p *nftPlan) table(name string) *nftTablePlan {
	if p.tables == nil {
		p.tables = map[string]*nftTablePlan{}
	}
	tp := p.tables[name]
	if tp == nil {
		tp = &nftTablePlan{name: name, addSets: map[string]time.Duration{}}
		p.tables[name] = tp
	}
	return tp
}

// ordered returns the table plans in the order apply sends them.
func (p *nftPlan) ordered() []*nftTablePlan {
	return slices.SortedFunc(maps.Values(p.tables), func(a, b *nftTablePlan) int {
		i, _ := nftShardIndex(a.name)
		j, _ := nftShardIndex(b.name)
		return cmp.Compare(i, j)
	})
}

// count sums f over the tables.
func (p *nftPlan) count(f func(*nftTablePlan) int) int {
	n := 0
	for _, tp := range p.tables {
		n += f(tp)
	}
	return n
}

func (tp *nftTablePlan) empty() bool {
	return !tp.declare && !tp.remove && len(tp.addSets)+len(tp.addChains)+len(tp.write)+len(tp.delElems)+
		len(tp.addElems)+len(tp.delChains)+len(tp.delSets) == 0
}

func (p *nftPlan) empty() bool {
	return p.count(func(tp *nftTablePlan) int {
		if tp.empty() {
			return 0
		}
		return 1
	}) == 0
}

// diffPlan is the partial sync from prev to next: only the services whose objects were
// regenerated are compared, and only their chains, sets and map elements are touched: those of
// the service's shard table, and its no-endpoint elements in the main table.
func diffPlan(prev, next map[string]*nftService) *nftPlan {
	p := &nftPlan{}
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
	table := cmp.Or(n.table, o.table) // a Service's shard never changes
	var tp *nftTablePlan
	shard := func() *nftTablePlan { // made on first use: a plan for a table that changes
		if tp == nil {
			tp = p.table(table)
		}
		return tp
	}
	for _, name := range slices.Sorted(maps.Keys(n.sets)) {
		if _, ok := o.sets[name]; !ok {
			shard().addSets[name] = n.sets[name]
		}
	}
	for _, name := range slices.Sorted(maps.Keys(n.chains)) {
		c := n.chains[name]
		oc, ok := o.chains[name]
		switch {
		case !ok:
			shard().addChains = append(shard().addChains, name)
			shard().write = append(shard().write, nftWrite{name: name, chain: c})
		case oc.spec() != c.spec():
			shard().write = append(shard().write, nftWrite{name: name, chain: c, flush: true})
		}
	}
	for _, e := range sortedElems(o.elems) {
		if target, ok := n.elems[e]; !ok || target != o.elems[e] {
			et := p.table(e.table)
			et.delElems = append(et.delElems, nftElemVerdict{e, o.elems[e]})
		}
	}
	for _, e := range sortedElems(n.elems) {
		if target, ok := o.elems[e]; !ok || target != n.elems[e] {
			et := p.table(e.table)
			et.addElems = append(et.addElems, nftElemVerdict{e, n.elems[e]})
		}
	}
	for _, name := range slices.Sorted(maps.Keys(o.chains)) {
		if _, ok := n.chains[name]; !ok {
			shard().delChains = append(shard().delChains, name)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(o.sets)) {
		if _, ok := n.sets[name]; !ok {
			shard().delSets = append(shard().delSets, name)
		}
	}
}

func sortedElems(m map[nftElem]string) []nftElem {
	return slices.SortedFunc(maps.Keys(m), func(a, b nftElem) int {
		return cmp.Or(strings.Compare(a.table, b.table), strings.Compare(a.set, b.set), a.ip.Compare(b.ip),
			cmp.Compare(a.proto, b.proto), cmp.Compare(a.port, b.port))
	})
}

// fullPlan rewrites everything: every table is declared and every chain flushed and filled,
// the map elements, chains and sets that next does not want are deleted, and so are stale shard
// tables. Affinity sets and map elements that stay are left alone, so a periodic full sync
// keeps client affinity.
func (m *nftMode) fullPlan(c *nftables.Conn, next map[string]*nftService) (*nftPlan, error) {
	p := &nftPlan{}
	existing, err := m.listTables(c)
	if err != nil {
		return nil, err
	}
	kernel := map[string]map[string]bool{} // the chains of the proxy's tables now: they need a flush
	if len(existing) > 0 {
		chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyIPv4)
		if err != nil {
			return nil, fmt.Errorf("listing nftables chains: %w", err)
		}
		for _, ch := range chains {
			if existing[ch.Table.Name] {
				if kernel[ch.Table.Name] == nil {
					kernel[ch.Table.Name] = map[string]bool{}
				}
				kernel[ch.Table.Name][ch.Name] = true
			}
		}
	}
	for _, name := range nftTableNames {
		tp := p.table(name)
		tp.declare = true
		for _, ch := range nftLayoutOf(name).chains {
			tp.addChains = append(tp.addChains, ch)
			tp.write = append(tp.write, nftWrite{name: ch, static: true, flush: kernel[name][ch]})
		}
	}
	want := map[nftElem]string{}
	for _, key := range slices.Sorted(maps.Keys(next)) {
		s := next[key]
		tp := p.table(s.table)
		maps.Copy(tp.addSets, s.sets)
		for _, name := range slices.Sorted(maps.Keys(s.chains)) {
			tp.addChains = append(tp.addChains, name)
			tp.write = append(tp.write, nftWrite{name: name, chain: s.chains[name], flush: kernel[s.table][name]})
		}
		for e, target := range s.elems {
			if _, taken := want[e]; !taken { // two services on one address and port: the first wins
				want[e] = target
			}
		}
	}
	for _, e := range sortedElems(want) {
		tp := p.table(e.table)
		tp.addElems = append(tp.addElems, nftElemVerdict{e, want[e]})
	}

	for name := range existing {
		tp := p.table(name)
		if !tp.declare {
			tp.remove = true
			continue
		}
		if err := tp.planStale(c, kernel[name], want); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// planStale adds the deletion of what the table holds (its chains in kernel) and the plan does
// not want.
func (tp *nftTablePlan) planStale(c *nftables.Conn, kernel map[string]bool, want map[nftElem]string) error {
	wantChains := map[string]bool{}
	for _, name := range tp.addChains {
		wantChains[name] = true
	}
	for name := range kernel {
		if !wantChains[name] {
			tp.delChains = append(tp.delChains, name)
		}
	}
	slices.Sort(tp.delChains)
	layout := nftLayoutOf(tp.name)
	sets, err := c.GetSets(nftTableRef(tp.name))
	if err != nil {
		return fmt.Errorf("listing the sets of table ip %s: %w", tp.name, err)
	}
	existing := map[string]bool{}
	for _, s := range sets {
		existing[s.Name] = true
		isMap := slices.ContainsFunc(layout.maps, func(mp nftMap) bool { return mp.name == s.Name })
		if _, ok := tp.addSets[s.Name]; !ok && !isMap && !strings.HasPrefix(s.Name, "__") {
			tp.delSets = append(tp.delSets, s.Name)
		}
	}
	slices.Sort(tp.delSets)
	for _, mp := range layout.maps {
		if !existing[mp.name] {
			continue // someone deleted it: the plan declares it again
		}
		elems, err := c.GetSetElements(nftMapSet(nftTableRef(tp.name), mp.name, mp.withIP))
		if err != nil {
			return fmt.Errorf("listing the elements of map %s of table ip %s: %w", mp.name, tp.name, err)
		}
		for _, el := range elems {
			e, ok := parseNFTElem(tp.name, mp.name, mp.withIP, el.Key)
			var target string
			if el.VerdictData != nil {
				target = el.VerdictData.Chain
			}
			if !ok {
				continue // not ours to interpret; the map is only ever written by the proxy
			}
			if w, found := want[e]; !found || w != target {
				tp.delElems = append(tp.delElems, nftElemVerdict{e, target})
			}
		}
	}
	return nil
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
// every chain's flush and rules still go in one batch. Tables are written one after the other,
// so that each batch of a full sync touches (and makes the kernel validate) few of them.
func (m *nftMode) apply(c *nftables.Conn, plan *nftPlan) (batches, messages int, err error) {
	b := &nftBatch{conn: c}
	for _, tp := range plan.ordered() {
		if err := m.applyTable(c, b, tp); err != nil {
			return b.batches, b.messages, err
		}
	}
	err = b.flush()
	return b.batches, b.messages, err
}

func (m *nftMode) applyTable(c *nftables.Conn, b *nftBatch, tp *nftTablePlan) error {
	t := nftTableRef(tp.name)
	if tp.remove {
		c.DelTable(t)
		return b.queued(1)
	}
	if tp.declare {
		c.AddTable(t)
		layout := nftLayoutOf(tp.name)
		for _, mp := range layout.maps {
			if err := c.AddSet(nftMapSet(t, mp.name, mp.withIP), nil); err != nil {
				return err
			}
		}
		if err := b.queued(1 + len(layout.maps)); err != nil {
			return err
		}
	}
	for _, name := range slices.Sorted(maps.Keys(tp.addSets)) {
		if err := c.AddSet(affinitySet(t, name, tp.addSets[name]), nil); err != nil {
			return err
		}
		if err := b.queued(1); err != nil {
			return err
		}
	}
	for _, name := range tp.addChains {
		c.AddChain(nftChainRef(t, name))
		if err := b.queued(1); err != nil {
			return err
		}
	}
	for _, w := range tp.write {
		ch := nftChainRef(t, w.name)
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
					return err
				}
				lookup := r.exprs[len(r.exprs)-1].(*expr.Lookup)
				lookup.SetID, lookup.SetName = r.vmap.ID, r.vmap.Name
				n += 2
			}
			c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: r.exprs})
			n++
		}
		if err := b.queued(n); err != nil {
			return err
		}
	}
	for i, ops := range [][]nftElemVerdict{tp.delElems, tp.addElems} {
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
			var err error
			if add {
				err = c.SetAddElements(set, elems)
			} else {
				err = c.SetDeleteElements(set, elems)
			}
			if err != nil {
				return err
			}
			if err := b.queued(1); err != nil {
				return err
			}
			ops = ops[n:]
		}
	}
	// Flush every chain to delete before deleting any: they may jump to one another. Sets go
	// in between: a flushed rule no longer uses them, and a deleted map no longer jumps.
	for _, name := range tp.delChains {
		c.FlushChain(nftChainRef(t, name))
		if err := b.queued(1); err != nil {
			return err
		}
	}
	for _, name := range tp.delSets {
		c.DelSet(&nftables.Set{Table: t, Name: name})
		if err := b.queued(1); err != nil {
			return err
		}
	}
	for _, name := range tp.delChains {
		c.DelChain(nftChainRef(t, name))
		if err := b.queued(1); err != nil {
			return err
		}
	}
	return nil
}

// nftChainRef names a chain of table t, with its hook if it is a base chain.
func nftChainRef(t *nftables.Table, name string) *nftables.Chain {
	if bc, ok := nftBaseChains[name]; ok {
		return bc.chain(t, name)
	}
	return &nftables.Chain{Table: t, Name: name}
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
	st.written = plan.count(func(tp *nftTablePlan) int { return len(tp.write) })
	st.removed = plan.count(func(tp *nftTablePlan) int { return len(tp.delChains) })
	st.elements = plan.count(func(tp *nftTablePlan) int { return len(tp.addElems) + len(tp.delElems) })

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
