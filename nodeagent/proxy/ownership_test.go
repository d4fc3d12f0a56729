package proxy

import (
	"context"
	"slices"
	"strings"
	"testing"
)

func TestOwnedRule(t *testing.T) {
	tests := []struct {
		line string
		want bool
	}{
		{"-A BOSUN-SERVICES -d 10.96.0.1/32 -j BOSUN-SVC-ABC", true},
		{"-A BOSUN-SEP-XYZ -p tcp -j DNAT --to-destination 10.244.1.2:80", true},
		{`-A PREROUTING -m comment --comment "bosun service portals" -j BOSUN-SERVICES`, true},
		{"-A POSTROUTING -j BOSUN-POSTROUTING", true},
		// nodeagent/routes' chain and its jump are not the proxy's.
		{`-A BOSUN-POD-MASQ -s 10.244.0.0/16 ! -d 10.244.0.0/16 -j MASQUERADE`, false},
		{`-A POSTROUTING -m comment --comment "bosun: pod masquerade" -j BOSUN-POD-MASQ`, false},
		{"-A POSTROUTING -j KUBE-POSTROUTING", false},
		{"-A INPUT -s 10.98.0.0/16 -j ACCEPT", false},
		{":BOSUN-SERVICES - [0:0]", false},
	}
	for _, tc := range tests {
		if got := ownedRule(tc.line); got != tc.want {
			t.Errorf("ownedRule(%q) = %v, want %v", tc.line, got, tc.want)
		}
	}
}

// TestKernelKeepsOtherBosunChains: a full sync (whole-table restore, and the --noflush fallback's
// chain listing) keeps BOSUN-* chains that other parts of the agent own, with their jump rules.
// Before, the proxy's first sync deleted nodeagent/routes' BOSUN-POD-MASQ chain under its feet.
func TestKernelKeepsOtherBosunChains(t *testing.T) {
	for _, backend := range []string{BackendNFT, BackendLegacy} {
		t.Run(backend, func(t *testing.T) {
			ns := newNetns(t)
			if !backendAvailable(t, ns, backend) {
				t.Skipf("no %s iptables here", backend)
			}
			ex := nsExec{ns}
			ctx := context.Background()
			routesRules := []string{
				`-A BOSUN-POD-MASQ -s 10.244.0.0/16 ! -d 10.244.0.0/16 -m comment --comment "bosun: masquerade pod traffic leaving the pod network" -j MASQUERADE`,
				`-A POSTROUTING -m comment --comment "bosun: pod masquerade" -j BOSUN-POD-MASQ`,
			}
			for _, args := range [][]string{
				{"-t", "nat", "-N", "BOSUN-POD-MASQ"},
				{"-t", "nat", "-A", "BOSUN-POD-MASQ", "-s", "10.244.0.0/16", "!", "-d", "10.244.0.0/16", "-m", "comment", "--comment", "bosun: masquerade pod traffic leaving the pod network", "-j", "MASQUERADE"},
				{"-t", "nat", "-A", "POSTROUTING", "-m", "comment", "--comment", "bosun: pod masquerade", "-j", "BOSUN-POD-MASQ"},
			} {
				if _, err := ex.Run(ctx, nil, "iptables-"+backend, args...); err != nil {
					t.Fatal(err)
				}
			}
			c := newCluster()
			c.set(t, representative()...)
			p, err := New(Config{Services: c.serviceLister(), Endpoints: c.endpointsLister(),
				ClusterCIDR: "10.244.0.0/16", Backend: backend, Exec: ex, NetNS: "/run/netns/" + ns})
			if err != nil {
				t.Fatal(err)
			}
			if err := p.init(ctx); err != nil {
				t.Fatal(err)
			}
			for i := range 2 {
				p.invalidate()
				st, err := p.sync(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if !st.replaced {
					t.Fatalf("sync %d was not a whole-table restore", i)
				}
				save, err := ex.Run(ctx, nil, "iptables-"+backend+"-save", "-t", "nat")
				if err != nil {
					t.Fatal(err)
				}
				for _, r := range routesRules {
					if n := strings.Count(string(save), r+"\n"); n != 1 {
						t.Errorf("after full sync %d: %d copies of %q, want 1:\n%s", i, n, r, save)
					}
				}
			}
			chains, err := p.ipt.ownedChains(ctx, tableNAT)
			if err != nil {
				t.Fatal(err)
			}
			if slices.Contains(chains, "BOSUN-POD-MASQ") {
				t.Errorf("ownedChains lists nodeagent/routes' chain: %v", chains)
			}
		})
	}
}
