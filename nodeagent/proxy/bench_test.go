package proxy

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"
)

// benchSync measures, inside scratch network namespaces, the first (full, whole-table) sync of
// n services × 10 endpoints against one raw whole-table iptables-restore of the identical
// ruleset in another empty namespace (the ceiling), and with changeToo the time to apply one
// endpoint change afterwards. Both go through `ip netns exec`, so the ratio compares like with
// like.
func benchSync(b *testing.B, n int, changeToo bool) {
	ctx := context.Background()
	for _, backend := range []string{BackendNFT, BackendLegacy} {
		ns := newNetns(b)
		if !backendAvailable(b, ns, backend) {
			continue
		}
		c := newCluster()
		c.set(b, synthetic(n, 10)...)
		p, err := New(Config{Services: c.serviceLister(), Endpoints: c.endpointsLister(),
			ClusterCIDR: "10.244.0.0/16", Backend: backend, Exec: nsExec{ns}, NetNS: "/run/netns/" + ns})
		if err != nil {
			b.Fatal(err)
		}
		if err := p.init(ctx); err != nil {
			b.Fatal(err)
		}
		st, err := p.sync(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if !st.replaced {
			b.Fatal("the first sync did not take the whole-table path")
		}

		raw := newNetns(b)
		start := time.Now()
		if _, err := (nsExec{raw}).Run(ctx, bytes.NewReader(st.input), "iptables-"+backend+"-restore", "-w"); err != nil {
			b.Fatal(err)
		}
		limit := time.Since(start)
		fmt.Printf("bench: proxy-sync-%d-%s %.3f s limit=%.3f ratio=%.2f\n", n, backend,
			st.took.Seconds(), limit.Seconds(), st.took.Seconds()/limit.Seconds())

		if changeToo {
			replaceOneEndpoint(b, c, n)
			st, err := p.sync(ctx)
			if err != nil {
				b.Fatal(err)
			}
			if st.full || st.written != 2 || st.removed != 1 {
				b.Fatalf("endpoint change wrote %d chains and removed %d (full=%v), want 2 and 1", st.written, st.removed, st.full)
			}
			// The same input again, raw: what iptables itself costs for this change.
			start := time.Now()
			if _, err := (nsExec{ns}).Run(ctx, bytes.NewReader(st.input), "iptables-"+backend+"-restore", "-w", "--noflush"); err != nil {
				b.Fatal(err)
			}
			limit := time.Since(start)
			fmt.Printf("bench: proxy-endpoint-change-%d-%s %.1f ms limit=%.1f ratio=%.2f\n", n, backend,
				float64(st.took.Microseconds())/1000, float64(limit.Microseconds())/1000, st.took.Seconds()/limit.Seconds())
		}
	}
}

func BenchmarkProxySync1000(b *testing.B) {
	for range b.N {
		benchSync(b, 1000, true)
	}
}

func BenchmarkProxySync10000(b *testing.B) {
	if testing.Short() {
		b.Skip("-short")
	}
	for range b.N {
		benchSync(b, 10000, true)
	}
}
