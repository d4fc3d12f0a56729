package store_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/bosun-gitops/bosun/internal/resource"
	"github.com/bosun-gitops/bosun/operator/store"
	"github.com/bosun-gitops/bosun/operator/store/storetest"
)

// BenchmarkBatchCreate creates n ~1 KiB ConfigMaps with Store.Batch and, in the same run, puts
// the same encoded payloads straight to etcd in txns of 128 from 8 goroutines (the ceiling).
// It reports objects/s for both and their ratio.
//
//	go test -run '^$' -bench BatchCreate -benchtime 3x ./operator/store/
func BenchmarkBatchCreate(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("objects=%d", n), func(b *testing.B) {
			ctx := context.Background()
			e := storetest.NewEtcd(b)
			s := store.New(e.Client(), store.Options{Logger: storetest.Logger(b)})
			var storeTime, rawTime time.Duration
			for iter := 0; b.Loop(); iter++ {
				ops := make([]store.Op, n)
				kvs := make(map[string][]byte, n)
				for i := range n {
					cm := configMap(i, 1000)
					cm.Namespace = fmt.Sprintf("it%d-%d", iter, i%10)
					ops[i] = store.Op{Type: store.OpCreate, Resource: resource.ConfigMaps, Object: cm}
				}
				start := time.Now()
				results := s.Batch(ctx, ops)
				storeTime += time.Since(start)
				for i, r := range results {
					if r.Err != nil {
						b.Fatalf("op %d: %v", i, r.Err)
					}
				}
				// The same payloads, encoded as the store stores them, under other keys.
				for i, r := range results {
					data, err := store.Encode(resource.ConfigMaps, r.Object)
					if err != nil {
						b.Fatal(err)
					}
					kvs[fmt.Sprintf("/raw/%d/%d", iter, i)] = data
				}
				start = time.Now()
				if err := storetest.RawPutBatches(ctx, e.Client(), kvs, 128, 8); err != nil {
					b.Fatal(err)
				}
				rawTime += time.Since(start)
			}
			objs := float64(n * b.N)
			storeRate := objs / storeTime.Seconds()
			rawRate := float64(n*b.N) / rawTime.Seconds()
			b.ReportMetric(storeRate, "objects/s")
			b.ReportMetric(rawRate, "raw-keys/s")
			b.ReportMetric(storeRate/rawRate, "ratio")
			fmt.Printf("bench: store-batch-create-%d %.0f objects/s limit=%.0f ratio=%.2f\n", n, storeRate, rawRate, storeRate/rawRate)
		})
	}
}
