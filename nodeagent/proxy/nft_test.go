package proxy

import (
	"cmp"
	"context"
	"maps"
	"slices"
	"strings"
	"testing"

	gocmp "github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// newNFTProxier returns an nftables-mode Proxier that programs the network namespace ns.
func newNFTProxier(t testing.TB, c *cluster, ns string) *Proxier {
	t.Helper()
	p, err := New(Config{Mode: ModeNFTables, Services: c.serviceLister(), Endpoints: c.endpointsLister(),
		ClusterCIDR: "10.244.0.0/16", NetNS: "/run/netns/" + ns, Exec: nsExec{ns}})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.init(context.Background()); err != nil {
		t.Skipf("nftables unavailable here: %v", err)
	}
	return p
}

// nftListAll prints every table of the proxy's as nftList does, the main table first, then the
// shards in order (stale ones too), from one listing of the ruleset. ok is false when there is
// none.
func nftListAll(t testing.TB, ns string) (string, bool) {
	t.Helper()
	out, err := nsExec{ns}.Run(context.Background(), nil, "nft", "list", "ruleset", "ip")
	if err != nil {
		t.Fatal(err)
	}
	tables := map[string]string{}
	var names []string
	for _, block := range strings.SplitAfter(string(out), "\n}\n") {
		block = strings.TrimLeft(block, "\n")
		header, _, _ := strings.Cut(block, "\n")
		name, ok := strings.CutPrefix(header, "table ip ")
		name = strings.TrimSuffix(name, " {")
		if _, ours := nftShardIndex(name); ok && ours {
			tables[name] = canonical(sortElements(block))
			names = append(names, name)
		}
	}
	slices.SortFunc(names, func(a, b string) int {
		i, _ := nftShardIndex(a)
		j, _ := nftShardIndex(b)
		return cmp.Compare(i, j)
	})
	var listings []string
	for _, name := range names {
		listings = append(listings, tables[name])
	}
	return strings.Join(listings, "\n"), len(listings) > 0
}

// nftList prints a table as `nft list table` does, with the elements of every set in sorted
// order (the kernel lists a hash set's elements in hash order). ok is false when the table does
// not exist.
func nftList(t testing.TB, ns, table string) (string, bool) {
	t.Helper()
	out, err := nsExec{ns}.Run(context.Background(), nil, "nft", "list", "table", "ip", table)
	if err != nil {
		if strings.Contains(err.Error(), "No such file") {
			return "", false
		}
		t.Fatal(err)
	}
	return canonical(sortElements(string(out))), true
}

// tableOf is the listing of one table out of nftListAll's.
func tableOf(listing, table string) string {
	_, rest, _ := strings.Cut(listing, "table ip "+table+" {\n")
	body, _, _ := strings.Cut(rest, "\n}\n")
	return body
}

// canonical sorts the blocks (sets, maps, chains) of a table listing: the kernel lists them in
// the order they were made, which differs between a full and a partial sync.
func canonical(listing string) string {
	lines := strings.Split(strings.TrimRight(listing, "\n"), "\n")
	if len(lines) < 2 {
		return listing
	}
	var blocks []string
	var cur []string
	for _, line := range lines[1 : len(lines)-1] {
		if line == "" {
			continue
		}
		cur = append(cur, line)
		if line == "\t}" {
			blocks = append(blocks, strings.Join(cur, "\n"))
			cur = nil
		}
	}
	kind := func(b string) int { // maps, then sets, then chains, as nft lists them
		switch {
		case strings.HasPrefix(b, "\tmap "):
			return 0
		case strings.HasPrefix(b, "\tset "):
			return 1
		}
		return 2
	}
	slices.SortStableFunc(blocks, func(a, b string) int {
		if d := kind(a) - kind(b); d != 0 {
			return d
		}
		return strings.Compare(a, b)
	})
	return lines[0] + "\n" + strings.Join(blocks, "\n\n") + "\n" + lines[len(lines)-1] + "\n"
}

// sortElements sorts the items of each "elements = { a, b, ... }" block, which nft prints over
// one or more lines.
func sortElements(s string) string {
	var b strings.Builder
	for {
		i := strings.Index(s, "elements = { ")
		if i < 0 {
			b.WriteString(s)
			return b.String()
		}
		i += len("elements = { ")
		j := strings.Index(s[i:], " }")
		b.WriteString(s[:i])
		items := strings.Split(s[i:i+j], ",")
		for k := range items {
			items[k] = strings.TrimSpace(items[k])
		}
		slices.Sort(items)
		b.WriteString(strings.Join(items, ",\n\t\t\t     "))
		s = s[i+j:]
	}
}

// TestNFTShardIndex checks which tables the proxy takes for its own: only ip bosun and
// ip bosun-<number>, so that a full sync never deletes a table of another name.
func TestNFTShardIndex(t *testing.T) {
	for _, tc := range []struct {
		table string
		index int
		ours  bool
	}{
		{"bosun", -1, true}, {"bosun-0", 0, true}, {"bosun-15", 15, true}, {"bosun-99", 99, true},
		{"bosun-extra", 0, false}, {"bosun-01", 0, false}, {"bosun--1", 0, false}, {"bosun-", 0, false},
		{"bosunx", 0, false}, {"nat", 0, false},
	} {
		i, ours := nftShardIndex(tc.table)
		if ours != tc.ours || (ours && i != tc.index) {
			t.Errorf("nftShardIndex(%q) = %d, %v; want %d, %v", tc.table, i, ours, tc.index, tc.ours)
		}
	}
	for _, name := range nftTableNames[1:] {
		if i, ours := nftShardIndex(name); !ours || nftShardTable(i) != name {
			t.Errorf("shard table %s is not recognised as one", name)
		}
	}
}

// TestNFTGolden applies the representative services into a scratch namespace and compares the
// kernel's listing of the proxy's tables with testdata/nft.golden.
func TestNFTGolden(t *testing.T) {
	ns := newNetns(t)
	c := newCluster()
	c.set(t, representative()...)
	p := newNFTProxier(t, c, ns)
	st, err := p.sync(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !st.full {
		t.Error("the first sync was not full")
	}
	got, ok := nftListAll(t, ns)
	if !ok {
		t.Fatal("no table after the first sync")
	}
	golden(t, "nft.golden", []byte(got))
	for _, name := range nftTableNames {
		if !strings.Contains(got, "table ip "+name+" {") {
			t.Errorf("no table ip %s after the first sync", name)
		}
	}
	// Every service's objects are in its shard.
	for key, s := range p.nft.last {
		for chain := range s.chains {
			if !strings.Contains(got, "table ip "+s.table+" {") || !strings.Contains(tableOf(got, s.table), "chain "+chain+" {") {
				t.Errorf("%s: chain %s is not in its shard ip %s", key, chain, s.table)
			}
		}
	}
	for _, notProxied := range []string{"default/headless", "default/failed", "default/ext", "10.244.3.33", "10.244.0.8"} {
		if strings.Contains(got, notProxied) {
			t.Errorf("%s has rules; headless, failed, ExternalName services and not-ready endpoints must not", notProxied)
		}
	}
}

// TestNFTKernelPartialSyncs applies a series of changes as partial syncs and checks after each
// that the kernel holds exactly what a full sync of the same services writes into an empty
// namespace, that each change went in one netlink batch touching only its service's objects in
// its shard (and the main table's no-endpoint maps), that other tables survive and that a stale
// shard table is deleted.
func TestNFTKernelPartialSyncs(t *testing.T) {
	ctx := context.Background()
	ns := newNetns(t)
	foreign := "add table ip foreign\n" +
		"add chain ip foreign input { type filter hook input priority 0; }\n" +
		"add rule ip foreign input ip saddr 10.98.0.0/16 accept\n" +
		"add table ip bosun-extra\n" + // not a shard's name: not the proxy's
		"add chain ip bosun-extra c\n" +
		"add table ip bosun-99\n" + // a shard of a proxy with more shards: stale
		"add chain ip bosun-99 nat-output { type nat hook output priority -100; }\n"
	if _, err := (nsExec{ns}).Run(ctx, strings.NewReader(foreign), "nft", "-f", "-"); err != nil {
		t.Fatal(err)
	}
	if _, err := (nsExec{ns}).Run(ctx, nil, "iptables-nft", "-t", "nat", "-A", "POSTROUTING", "-s", "10.99.0.0/16", "-j", "MASQUERADE"); err != nil {
		t.Fatal(err)
	}
	foreignBefore, _ := nftList(t, ns, "foreign")
	extraBefore, _ := nftList(t, ns, "bosun-extra")
	natBefore, _ := nftList(t, ns, "nat")

	c := newCluster()
	c.set(t, representative()...)
	p := newNFTProxier(t, c, ns)
	if _, err := p.sync(ctx); err != nil {
		t.Fatal(err)
	}
	if _, ok := nftList(t, ns, "bosun-99"); ok {
		t.Error("the full sync left the stale shard table ip bosun-99")
	}
	first, _ := nftListAll(t, ns)

	// A second full sync changes nothing.
	p.invalidate()
	if _, err := p.sync(ctx); err != nil {
		t.Fatal(err)
	}
	if got, _ := nftListAll(t, ns); got != first {
		t.Errorf("a second full sync changed the table:\n%s", gocmp.Diff(first, got))
	}

	sticky300 := func() *corev1.Service {
		s := service("default", "sticky", "10.96.0.13", portSpec{"", corev1.ProtocolTCP, 80, 8080, 0})
		s.Spec.SessionAffinity = corev1.ServiceAffinityClientIP
		timeout := int32(300)
		s.Spec.SessionAffinityConfig = &corev1.SessionAffinityConfig{ClientIP: &corev1.ClientIPConfig{TimeoutSeconds: &timeout}}
		return s
	}
	steps := []struct {
		name    string
		service string // the namespace/name the change is about
		change  func()
	}{
		{"endpoints removed", "default/web", func() {
			c.set(t, endpoints("default", "web", []string{"10.244.1.5"}, nil, webPorts...))
		}},
		{"first endpoint", "default/empty", func() {
			c.set(t, endpoints("default", "empty", []string{"10.244.0.8"}, nil, portSpec{"", corev1.ProtocolTCP, 80, 80, 0}))
		}},
		{"affinity timeout", "default/sticky", func() { c.set(t, sticky300()) }},
		{"nodeport removed", "default/np", func() {
			c.set(t, service("default", "np", "10.96.0.11", portSpec{"", corev1.ProtocolTCP, 80, 80, 0}))
		}},
		{"udp endpoints gone", "default/syslog", func() {
			c.set(t, endpoints("default", "syslog", nil, nil, udpNP...))
		}},
		{"service deleted", "kube-system/kube-dns", func() {
			if err := c.svcs.Delete(service("kube-system", "kube-dns", "", dnsPorts...)); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, step := range steps {
		step.change()
		st, err := p.sync(ctx)
		if err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		if st.full || st.batches != 1 {
			t.Errorf("%s: full=%v batches=%d, want a partial sync in one batch", step.name, st.full, st.batches)
		}
		mark := "-" + step.service + "/" // in every chain and set name of the service
		shard := nftShardOf(step.service)
		var touched []string
		for name, tp := range st.plan.tables {
			if name != shard && name != nftTable {
				t.Errorf("%s: the sync touched table ip %s, not %s's shard ip %s", step.name, name, step.service, shard)
			}
			if name == nftTable && len(tp.addSets)+len(tp.addChains)+len(tp.write)+len(tp.delChains)+len(tp.delSets) > 0 {
				t.Errorf("%s: the sync changed chains or sets of the main table", step.name)
			}
			touched = append(touched, slices.Concat(tp.addChains, tp.delChains, tp.delSets, slices.Collect(maps.Keys(tp.addSets)))...)
			for _, w := range tp.write {
				touched = append(touched, w.name)
			}
			for _, e := range slices.Concat(tp.addElems, tp.delElems) {
				if e.chain != chainReject {
					touched = append(touched, e.chain)
				}
			}
		}
		if len(touched) == 0 {
			t.Errorf("%s: the sync changed nothing", step.name)
		}
		for _, name := range touched {
			if !strings.Contains(name, mark) {
				t.Errorf("%s: the sync touched %s, which is not %s's", step.name, name, step.service)
			}
		}
		got, _ := nftListAll(t, ns)
		fresh := newNetns(t)
		pf := newNFTProxier(t, c, fresh)
		if _, err := pf.sync(ctx); err != nil {
			t.Fatal(err)
		}
		want, _ := nftListAll(t, fresh)
		if d := gocmp.Diff(want, got); d != "" {
			t.Errorf("%s: the table differs from a full sync of the same services (-full +partial):\n%s", step.name, d)
		}
		if step.name == "udp endpoints gone" && st.conntrackDeletions == 0 {
			t.Errorf("%s: no stale UDP conntrack entries were cleared", step.name)
		}
	}

	if got, _ := nftList(t, ns, "foreign"); got != foreignBefore {
		t.Errorf("table ip foreign changed:\n%s", gocmp.Diff(foreignBefore, got))
	}
	if got, _ := nftList(t, ns, "bosun-extra"); got != extraBefore {
		t.Errorf("table ip bosun-extra, not the proxy's, changed:\n%s", gocmp.Diff(extraBefore, got))
	}
	if got, _ := nftList(t, ns, "nat"); got != natBefore {
		t.Errorf("iptables-nft's table ip nat changed:\n%s", gocmp.Diff(natBefore, got))
	}

	// Deleting every service leaves the static chains and empty maps.
	for _, o := range representative() {
		if s, ok := o.(*corev1.Service); ok {
			_ = c.svcs.Delete(s)
		}
	}
	if _, err := p.sync(ctx); err != nil {
		t.Fatal(err)
	}
	got, _ := nftListAll(t, ns)
	for _, leftover := range []string{"/tcp/", "/udp/", "set affinity-", "elements"} {
		if strings.Contains(got, leftover) {
			t.Errorf("%q left after every service was deleted:\n%s", leftover, got)
		}
	}
}

// TestNFTFullSyncRemovesStale checks that a full sync deletes chains and sets of the table that
// no service wants, rewrites a flushed chain, and keeps the clients an affinity set remembers.
func TestNFTFullSyncRemovesStale(t *testing.T) {
	ctx := context.Background()
	ns := newNetns(t)
	c := newCluster()
	c.set(t, representative()...)
	p := newNFTProxier(t, c, ns)
	if _, err := p.sync(ctx); err != nil {
		t.Fatal(err)
	}
	want, _ := nftListAll(t, ns)
	var affinity string
	for s := range p.nft.last["default/sticky"].sets {
		affinity = s
		break
	}
	shard := "ip " + p.nft.last["default/sticky"].table
	meddle := "add chain " + shard + " service-STALE\n" +
		"add rule " + shard + " service-STALE goto mark-for-masquerade\n" +
		"add set " + shard + " affinity-STALE { type ipv4_addr; flags dynamic,timeout; timeout 1m; }\n" +
		"add element " + shard + " service-ips { 10.96.9.9 . tcp . 80 : goto service-STALE }\n" +
		"add element ip bosun no-endpoint-services { 10.96.9.9 . tcp . 81 : goto reject-chain }\n" +
		"add chain ip bosun STALE\n" +
		"flush chain " + shard + " services\n" +
		"add element " + shard + " " + affinity + " { 10.1.2.3 }\n"
	if _, err := (nsExec{ns}).Run(ctx, strings.NewReader(meddle), "nft", "-f", "-"); err != nil {
		t.Fatal(err)
	}
	p.invalidate()
	if _, err := p.sync(ctx); err != nil {
		t.Fatal(err)
	}
	got, _ := nftListAll(t, ns)
	if strings.Contains(got, "STALE") || strings.Contains(got, "10.96.9.9") {
		t.Errorf("stale objects survived a full sync:\n%s", got)
	}
	if !strings.Contains(got, "ip daddr . meta l4proto . th dport vmap @service-ips") {
		t.Errorf("the flushed services chain was not rewritten:\n%s", got)
	}
	if !strings.Contains(got, "10.1.2.3") {
		t.Errorf("a full sync forgot the clients of affinity set %s:\n%s", affinity, got)
	}
	// Apart from the remembered client the table is what the first sync wrote.
	if d := gocmp.Diff(want, dropAffinityElements(got)); d != "" {
		t.Errorf("(-first sync +after full resync):\n%s", d)
	}
}

// TestNFTUpgradeFromOneTable checks that the first full sync turns the single-table layout of
// earlier versions (every map and chain in ip bosun) into the sharded one, exactly as a full
// sync into an empty namespace writes it.
func TestNFTUpgradeFromOneTable(t *testing.T) {
	ctx := context.Background()
	ns := newNetns(t)
	c := newCluster()
	c.set(t, representative()...)
	p := newNFTProxier(t, c, ns)

	// The old layout: the shards' maps, static chains, and services all in the main table.
	conn, err := p.nft.dial()
	if err != nil {
		t.Fatal(err)
	}
	defer conn.CloseLasting()
	svcs, err := c.serviceLister().List(labels.Everything())
	if err != nil {
		t.Fatal(err)
	}
	eps, err := c.endpointsLister().List(labels.Everything())
	if err != nil {
		t.Fatal(err)
	}
	epByKey := map[string]*corev1.Endpoints{}
	for _, ep := range eps {
		epByKey[ep.Namespace+"/"+ep.Name] = ep
	}
	plan, err := p.nft.fullPlan(conn, p.nft.generate(svcs, epByKey))
	if err != nil {
		t.Fatal(err)
	}
	main := plan.tables[nftTable]
	for name, tp := range plan.tables {
		if name == nftTable {
			continue
		}
		delete(plan.tables, name)
		maps.Copy(main.addSets, tp.addSets)
		static := len(nftShardLayout.chains)
		if name == nftShardTable(0) { // the shards' static chains once
			static = 0
		}
		main.addChains = append(tp.addChains[static:], main.addChains...) // regular chains before their users
		main.write = append(tp.write[static:], main.write...)
		for _, e := range tp.addElems {
			e.elem.table = nftTable
			main.addElems = append(main.addElems, e)
		}
	}
	conn.AddTable(nftTableRef(nftTable))
	for _, mp := range nftShardLayout.maps {
		if err := conn.AddSet(nftMapSet(nftTableRef(nftTable), mp.name, mp.withIP), nil); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := p.nft.apply(conn, plan); err != nil {
		t.Fatalf("writing the single-table layout: %v", err)
	}
	old, _ := nftListAll(t, ns)
	if !strings.Contains(old, "map service-ips") || strings.Contains(old, "table ip "+nftShardTable(0)) {
		t.Fatalf("not the single-table layout:\n%s", old)
	}

	if _, err := p.sync(ctx); err != nil {
		t.Fatal(err)
	}
	got, _ := nftListAll(t, ns)
	fresh := newNetns(t)
	if _, err := newNFTProxier(t, c, fresh).sync(ctx); err != nil {
		t.Fatal(err)
	}
	want, _ := nftListAll(t, fresh)
	if d := gocmp.Diff(want, got); d != "" {
		t.Errorf("(-fresh full sync +full sync over the single-table layout):\n%s", d)
	}
}

// dropAffinityElements removes the elements lines of dynamic sets from a listing.
func dropAffinityElements(s string) string {
	var out []string
	for _, line := range strings.Split(s, "\n") {
		if strings.Contains(line, "elements = {") && strings.Contains(line, " expires ") {
			continue
		}
		out = append(out, line)
	}
	return strings.Join(out, "\n")
}
