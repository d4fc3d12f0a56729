package proxy

import (
	"context"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// TestModeSwitchRemovesLeftovers switches one namespace from the iptables mode to the nftables
// mode and back: each start removes the other mode's rules, and only those (another program's
// iptables chain, nodeagent/routes' BOSUN-POD-MASQ and a foreign nftables table stay).
func TestModeSwitchRemovesLeftovers(t *testing.T) {
	ns := newNetns(t)
	if !backendAvailable(t, ns, BackendNFT) {
		t.Skip("no nft iptables here")
	}
	ctx := context.Background()
	ex := nsExec{ns}
	for _, args := range [][]string{
		{"iptables", "-t", "nat", "-N", "KUBE-FOREIGN"},
		{"iptables", "-t", "nat", "-A", "POSTROUTING", "-j", "KUBE-FOREIGN"},
		{"iptables", "-t", "nat", "-N", "BOSUN-POD-MASQ"},
		{"iptables", "-t", "nat", "-A", "POSTROUTING", "-j", "BOSUN-POD-MASQ"},
		{"nft", "add", "table", "ip", "foreign"},
	} {
		if out, err := ex.Run(ctx, nil, args[0], args[1:]...); err != nil {
			t.Fatalf("%v: %v: %s", args, err, out)
		}
	}
	ports := []portSpec{{"http", corev1.ProtocolTCP, 80, 8080, 0}}
	c := newCluster()
	c.set(t, service("default", "web", "10.96.0.10", ports...), endpoints("default", "web", []string{"10.244.1.2"}, nil, ports...))
	start := func(mode string) {
		t.Helper()
		p, err := New(Config{Mode: mode, Services: c.serviceLister(), Endpoints: c.endpointsLister(),
			ClusterCIDR: "10.244.0.0/16", Exec: ex, NetNS: "/run/netns/" + ns})
		if err != nil {
			t.Fatal(err)
		}
		if err := p.init(ctx); err != nil {
			t.Fatalf("%s mode: %v", mode, err)
		}
		if _, err := p.sync(ctx); err != nil {
			t.Fatalf("%s mode: sync: %v", mode, err)
		}
	}
	state := func() (ipt, nft string) {
		t.Helper()
		a, err := ex.Run(ctx, nil, "iptables-save")
		if err != nil {
			t.Fatal(err)
		}
		b, err := ex.Run(ctx, nil, "nft", "list", "tables")
		if err != nil {
			t.Fatal(err)
		}
		return string(a), string(b)
	}
	proxyChains := func(ipt string) (n int) {
		for _, l := range strings.Split(ipt, "\n") {
			if strings.HasPrefix(l, ":") {
				name, _, _ := strings.Cut(l[1:], " ")
				if ownedChain(name) {
					n++
				}
			}
			if ownedRule(l) {
				n++
			}
		}
		return n
	}
	kept := func(ipt, nft string) {
		t.Helper()
		for _, want := range []string{"-A POSTROUTING -j KUBE-FOREIGN", "-A POSTROUTING -j BOSUN-POD-MASQ"} {
			if !strings.Contains(ipt, want) {
				t.Errorf("%q is gone:\n%s", want, ipt)
			}
		}
		if !strings.Contains(nft, "table ip foreign") {
			t.Errorf("the foreign nftables table is gone:\n%s", nft)
		}
	}

	start(ModeIPTables)
	ipt, nft := state()
	if proxyChains(ipt) == 0 || strings.Contains(nft, "table ip bosun") {
		t.Fatalf("iptables mode: %d proxy chains and rules, tables:\n%s", proxyChains(ipt), nft)
	}
	start(ModeNFTables)
	ipt, nft = state()
	if n := proxyChains(ipt); n != 0 {
		t.Errorf("after switching to nftables: %d iptables chains and rules of the proxy left:\n%s", n, ipt)
	}
	if !strings.Contains(nft, "table ip bosun\n") || !strings.Contains(nft, "table ip bosun-0\n") {
		t.Errorf("nftables mode wrote no tables:\n%s", nft)
	}
	kept(ipt, nft)
	start(ModeIPTables)
	ipt, nft = state()
	if strings.Contains(nft, "table ip bosun") {
		t.Errorf("after switching back to iptables the nftables tables are left:\n%s", nft)
	}
	if proxyChains(ipt) == 0 {
		t.Errorf("iptables mode wrote no rules after the switch back:\n%s", ipt)
	}
	kept(ipt, nft)
}
