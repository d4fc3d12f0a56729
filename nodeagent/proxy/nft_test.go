package proxy

import (
	"context"
	"github.com/google/go-cmp/cmp"
	"maps"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
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

// nftList prints table ip bosun as `nft list table` does, with the elements of every set in
// sorted order (the kernel lists a hash set's elements in hash order). ok is false when the
// table does not exist.
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

// TestNFTGolden applies the representative services into a scratch namespace and compares the
// kernel's listing of the table with testdata/nft.golden.
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
	got, ok := nftList(t, ns, nftTable)
	if !ok {
		t.Fatal("no table after the first sync")
	}
	golden(t, "nft.golden", []byte(got))
	for _, notProxied := range []string{"default/headless", "default/failed", "default/ext", "10.244.3.33", "10.244.0.8"} {
		if strings.Contains(got, notProxied) {
			t.Errorf("%s has rules; headless, failed, ExternalName services and not-ready endpoints must not", notProxied)
		}
	}
}

// TestNFTKernelPartialSyncs applies a series of changes as partial syncs and checks after each
// that the kernel holds exactly what a full sync of the same services writes into an empty
// namespace, that each change went in one netlink batch touching only its service, and that
// other tables survive.
func TestNFTKernelPartialSyncs(t *testing.T) {
	ctx := context.Background()
	ns := newNetns(t)
	foreign := "add table ip foreign\n" +
		"add chain ip foreign input { type filter hook input priority 0; }\n" +
		"add rule ip foreign input ip saddr 10.98.0.0/16 accept\n"
	if _, err := (nsExec{ns}).Run(ctx, strings.NewReader(foreign), "nft", "-f", "-"); err != nil {
		t.Fatal(err)
	}
	if _, err := (nsExec{ns}).Run(ctx, nil, "iptables-nft", "-t", "nat", "-A", "POSTROUTING", "-s", "10.99.0.0/16", "-j", "MASQUERADE"); err != nil {
		t.Fatal(err)
	}
	foreignBefore, _ := nftList(t, ns, "foreign")
	natBefore, _ := nftList(t, ns, "nat")

	c := newCluster()
	c.set(t, representative()...)
	p := newNFTProxier(t, c, ns)
	if _, err := p.sync(ctx); err != nil {
		t.Fatal(err)
	}
	first, _ := nftList(t, ns, nftTable)

	// A second full sync changes nothing.
	p.invalidate()
	if _, err := p.sync(ctx); err != nil {
		t.Fatal(err)
	}
	if got, _ := nftList(t, ns, nftTable); got != first {
		t.Errorf("a second full sync changed the table:\n%s", cmp.Diff(first, got))
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
		touched := slices.Concat(st.plan.addChains, st.plan.delChains, st.plan.delSets, slices.Collect(maps.Keys(st.plan.addSets)))
		for _, w := range st.plan.write {
			touched = append(touched, w.name)
		}
		for _, e := range slices.Concat(st.plan.addElems, st.plan.delElems) {
			if e.chain != chainReject {
				touched = append(touched, e.chain)
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
		got, _ := nftList(t, ns, nftTable)
		fresh := newNetns(t)
		pf := newNFTProxier(t, c, fresh)
		if _, err := pf.sync(ctx); err != nil {
			t.Fatal(err)
		}
		want, _ := nftList(t, fresh, nftTable)
		if d := cmp.Diff(want, got); d != "" {
			t.Errorf("%s: the table differs from a full sync of the same services (-full +partial):\n%s", step.name, d)
		}
		if step.name == "udp endpoints gone" && st.conntrackDeletions == 0 {
			t.Errorf("%s: no stale UDP conntrack entries were cleared", step.name)
		}
	}

	if got, _ := nftList(t, ns, "foreign"); got != foreignBefore {
		t.Errorf("table ip foreign changed:\n%s", cmp.Diff(foreignBefore, got))
	}
	if got, _ := nftList(t, ns, "nat"); got != natBefore {
		t.Errorf("iptables-nft's table ip nat changed:\n%s", cmp.Diff(natBefore, got))
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
	got, _ := nftList(t, ns, nftTable)
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
	want, _ := nftList(t, ns, nftTable)
	var affinity string
	for s := range p.nft.last["default/sticky"].sets {
		affinity = s
		break
	}
	meddle := "add chain ip bosun service-STALE\n" +
		"add rule ip bosun service-STALE goto reject-chain\n" +
		"add set ip bosun affinity-STALE { type ipv4_addr; flags dynamic,timeout; timeout 1m; }\n" +
		"add element ip bosun service-ips { 10.96.9.9 . tcp . 80 : goto service-STALE }\n" +
		"flush chain ip bosun services\n" +
		"add element ip bosun " + affinity + " { 10.1.2.3 }\n"
	if _, err := (nsExec{ns}).Run(ctx, strings.NewReader(meddle), "nft", "-f", "-"); err != nil {
		t.Fatal(err)
	}
	p.invalidate()
	if _, err := p.sync(ctx); err != nil {
		t.Fatal(err)
	}
	got, _ := nftList(t, ns, nftTable)
	if strings.Contains(got, "STALE") {
		t.Errorf("stale objects survived a full sync:\n%s", got)
	}
	if !strings.Contains(got, "ip daddr . meta l4proto . th dport vmap @service-ips") {
		t.Errorf("the flushed services chain was not rewritten:\n%s", got)
	}
	if !strings.Contains(got, "10.1.2.3") {
		t.Errorf("a full sync forgot the clients of affinity set %s:\n%s", affinity, got)
	}
	// Apart from the remembered client the table is what the first sync wrote.
	if d := cmp.Diff(want, dropAffinityElements(got)); d != "" {
		t.Errorf("(-first sync +after full resync):\n%s", d)
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
