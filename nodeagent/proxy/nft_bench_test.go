package proxy

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// benchNFTSync measures the nftables mode inside scratch network namespaces: the first (full)
// sync of n services × 10 endpoints against the same plan applied raw (netlink batches built
// from the plan, no listing, generating or diffing) into another empty namespace, and one
// endpoint change against the same change's netlink batch sent raw to a namespace that holds
// the same table.
func benchNFTSync(b *testing.B, n int) {
	ctx := context.Background()
	c := newCluster()
	c.set(b, synthetic(n, 10)...)
	ns, raw := newNetns(b), newNetns(b)
	p, pr := newNFTProxier(b, c, ns), newNFTProxier(b, c, raw)

	st, err := p.sync(ctx)
	if err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	if err := applyRaw(pr.nft, st.plan); err != nil {
		b.Fatal(err)
	}
	limit := time.Since(start)
	fmt.Printf("bench: proxy-nft-sync-%d %.3f s limit=%.3f ratio=%.2f (%d messages in %d batches)\n", n,
		st.took.Seconds(), limit.Seconds(), st.took.Seconds()/limit.Seconds(), st.messages, st.batches)
	// The raw namespace now holds what a sync would have written; let its proxier know.
	if _, err := pr.sync(ctx); err != nil {
		b.Fatal(err)
	}

	replaceOneEndpoint(b, c, n)
	st, err = p.sync(ctx)
	if err != nil {
		b.Fatal(err)
	}
	if st.full || st.batches != 1 || st.written != 2 || st.removed != 1 || st.elements != 0 {
		b.Fatalf("endpoint change: full=%v batches=%d, wrote %d chains, removed %d, %d elements; want a partial sync in one batch writing 2, removing 1",
			st.full, st.batches, st.written, st.removed, st.elements)
	}
	start = time.Now()
	if err := applyRaw(pr.nft, st.plan); err != nil {
		b.Fatal(err)
	}
	limit = time.Since(start)
	fmt.Printf("bench: proxy-nft-endpoint-change-%d %.1f ms limit=%.1f ratio=%.2f (%d messages)\n", n,
		float64(st.took.Microseconds())/1000, float64(limit.Microseconds())/1000, st.took.Seconds()/limit.Seconds(), st.messages)
	want, _ := nftListAll(b, ns)
	if got, _ := nftListAll(b, raw); got != want {
		b.Fatal("the raw replay of the change left another table than the proxier's")
	}
}

// replaceOneEndpoint replaces one endpoint of the service in the middle of synthetic(n, 10).
func replaceOneEndpoint(b *testing.B, c *cluster, n int) {
	i := n / 2
	ports := []portSpec{{"http", "TCP", 80, 8080, 0}}
	name := fmt.Sprintf("svc-%05d", i)
	var ips []string
	for j := range 10 {
		ips = append(ips, fmt.Sprintf("10.%d.%d.%d", 100+j, i/250, i%250+1))
	}
	ips[0] = "10.99.99.99"
	c.set(b, endpoints(fmt.Sprintf("ns-%d", i%50), name, ips, nil, ports...))
}

// applyRaw sends plan over a new netlink connection, as a sync does after planning.
func applyRaw(m *nftMode, plan *nftPlan) error {
	conn, err := m.dial()
	if err != nil {
		return err
	}
	defer conn.CloseLasting()
	_, _, err = m.apply(conn, plan)
	return err
}

func BenchmarkProxyNFTSync1000(b *testing.B) {
	for range b.N {
		benchNFTSync(b, 1000)
	}
}

func BenchmarkProxyNFTSync10000(b *testing.B) {
	if testing.Short() {
		b.Skip("-short")
	}
	for range b.N {
		benchNFTSync(b, 10000)
	}
}
