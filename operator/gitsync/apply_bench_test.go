package gitsync

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/bosun-gitops/bosun/operator/store"
	"github.com/bosun-gitops/bosun/operator/store/storetest"
	repolayout "github.com/bosun-gitops/bosun/repo-layout"
)

// BenchmarkApply measures the apply phase alone: 10 000 Deployments (loaded once) created in a
// fresh etcd by Syncer.apply, beside the raw etcd batches of the same payloads in the same run.
//
//	go test ./operator/gitsync -run '^$' -bench Apply -benchtime 3x
func BenchmarkApply(b *testing.B) {
	const n = 10000
	f := newGitFixture(b)
	writeBenchRepo(f, n)
	set, err := repolayout.LoadDir(f.work)
	if err != nil {
		b.Fatal(err)
	}
	want, err := desiredFrom(set, ".")
	if err != nil {
		b.Fatal(err)
	}
	commit := strings.Repeat("c", 40)
	var applyTime, rawTime, applyCPU, rawCPU time.Duration
	for b.Loop() {
		b.StopTimer()
		ctx := context.Background()
		etcd := storetest.NewEtcd(b)
		st := store.New(etcd.Client(), store.Options{Logger: storetest.Logger(b)})
		s := &Syncer{st: st, log: testLogger(b)}
		p := computePlan(want, nil)
		b.StartTimer()
		start, cpu := time.Now(), processCPU(b)
		counts, err := s.apply(ctx, p, commit)
		applyTime += time.Since(start)
		applyCPU += processCPU(b) - cpu
		b.StopTimer()
		if err != nil || counts.created != len(want) {
			b.Fatalf("apply: %+v, %v", counts, err)
		}
		kvs := storedPayloads(b, etcd.Client())
		start, cpu = time.Now(), processCPU(b)
		if err := storetest.RawPutBatches(ctx, etcd.Client(), kvs, store.DefaultMaxTxnOps, store.DefaultBatchConcurrency); err != nil {
			b.Fatal(err)
		}
		rawTime += time.Since(start)
		rawCPU += processCPU(b) - cpu
		b.StartTimer()
	}
	fmt.Printf("bench: gitsync-apply-%d %.3f s limit=%.3f ratio=%.2f\n", n,
		applyTime.Seconds()/float64(b.N), rawTime.Seconds()/float64(b.N), applyTime.Seconds()/rawTime.Seconds())
	fmt.Printf("bench: gitsync-apply-cpu-%d %.3f s limit=%.3f ratio=%.2f (CPU time of the process: apply and embedded etcd)\n", n,
		applyCPU.Seconds()/float64(b.N), rawCPU.Seconds()/float64(b.N), applyCPU.Seconds()/rawCPU.Seconds())
}
