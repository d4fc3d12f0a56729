package store_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/bosun-gitops/bosun/internal/resource"
	"github.com/bosun-gitops/bosun/operator/store"
	"github.com/bosun-gitops/bosun/operator/store/storetest"
	clientv3 "go.etcd.io/etcd/client/v3"
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

// BenchmarkDefragment measures how long a defragmentation stalls the embedded member: 60 000
// values of 1.2 KB (the size of a stored object), half of them then deleted and compacted away.
// The limit measured in the same run is writing the bytes in use to a new file in the same
// directory and syncing it, which a defragmentation does at the least.
//
//	go test -run '^$' -bench Defragment -benchtime 1x ./operator/store/
func BenchmarkDefragment(b *testing.B) {
	const n, size = 60000, 1200
	ctx := context.Background()
	var took, limit time.Duration
	var inUse int64
	for range b.N {
		e := storetest.NewEtcd(b)
		value := []byte(strings.Repeat("v", size))
		kvs := make(map[string][]byte, n)
		for i := range n {
			kvs[fmt.Sprintf("/objects/%06d", i)] = value
		}
		if err := storetest.RawPutBatches(ctx, e.Client(), kvs, store.DefaultMaxTxnOps, store.DefaultBatchConcurrency); err != nil {
			b.Fatal(err)
		}
		del, err := e.Client().Delete(ctx, fmt.Sprintf("/objects/%06d", n/2), clientv3.WithRange("/objects0"))
		if err != nil {
			b.Fatal(err)
		}
		storetest.FreeHistory(ctx, b, e, del.Header.Revision, 8<<20)
		inUse = e.DBSize().InUse

		start := time.Now()
		if _, _, err := e.Defragment(ctx); err != nil {
			b.Fatal(err)
		}
		took += time.Since(start)

		start = time.Now()
		f, err := os.CreateTemp(b.TempDir(), "limit")
		if err != nil {
			b.Fatal(err)
		}
		if _, err := f.Write(make([]byte, inUse)); err != nil {
			b.Fatal(err)
		}
		if err := f.Sync(); err != nil {
			b.Fatal(err)
		}
		f.Close()
		limit += time.Since(start)
	}
	per, lim := took/time.Duration(b.N), limit/time.Duration(b.N)
	fmt.Printf("bench: etcd-defragment-%d-objects %.0f ms limit=%.0f ms ratio=%.1f (%.0f MiB in use; limit: writing and syncing as many bytes)\n",
		n/2, float64(per)/1e6, float64(lim)/1e6, float64(per)/float64(lim), float64(inUse)/(1<<20))
	b.ReportMetric(float64(per)/1e6, "ms/defrag")
}
