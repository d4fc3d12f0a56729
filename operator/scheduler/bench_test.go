package scheduler

import (
	"context"
	"fmt"
	"os"
	"runtime/pprof"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bosun-gitops/bosun/internal/resource"
	"github.com/bosun-gitops/bosun/operator/controllers/controllertest"
	"github.com/bosun-gitops/bosun/operator/store"
	"github.com/bosun-gitops/bosun/operator/store/storetest"
	clientv3 "go.etcd.io/etcd/client/v3"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"
)

// BenchmarkSchedulingThroughput binds 10 000 pending pods (owned by 100 ReplicaSets, 100m/128Mi
// each) on 1 000 and 5 000 ready nodes written straight to the store, with the real store, informers
// and event recorder, and reports pods bound per second from the moment the scheduler's caches
// are synced to the last bind seen by the pod informer. In the same run it measures etcd's raw
// write rate for as many pod-sized values: in transactions of 128 puts from 8 goroutines (the
// ceiling, since binds are batched the same way) and as single puts from 64 goroutines.
//
//	go test -run '^$' -bench SchedulingThroughput -benchtime 1x ./operator/scheduler/
//
// BOSUN_BENCH_CPU_PROFILE=FILE writes a CPU profile of each scheduling window to FILE-nodes-<N>.
func BenchmarkSchedulingThroughput(b *testing.B) {
	const numPods = 10000
	for _, numNodes := range []int{1000, 5000} {
		b.Run(fmt.Sprintf("nodes=%d", numNodes), func(b *testing.B) {
			var rate, rawBatched, rawSingle float64
			for range b.N {
				rate, rawBatched, rawSingle = scheduleOnce(b, numNodes, numPods)
			}
			b.ReportMetric(rate, "pods/s")
			b.ReportMetric(rawBatched, "raw-batched-keys/s")
			b.ReportMetric(rawSingle, "raw-single-puts/s")
			fmt.Printf("bench: scheduler-raw-etcd-single-puts-64-goroutines-%d-nodes %.0f keys/s\n", numNodes, rawSingle)
			fmt.Printf("bench: scheduler-raw-etcd-txn128-batches-%d-nodes %.0f keys/s (the ceiling)\n", numNodes, rawBatched)
			fmt.Printf("bench: scheduler-pods-per-second-%d-nodes %.0f pods/s limit=%.0f ratio=%.2f\n", numNodes, rate, rawBatched, rate/rawBatched)
		})
	}
}

func scheduleOnce(b *testing.B, numNodes, numPods int) (rate, rawBatched, rawSingle float64) {
	env := controllertest.New(b, nil)
	ctx := env.Ctx
	mustBatch(b, env.Store, ctx, numNodes, func(i int) (*resource.Resource, resource.Object) {
		return resource.Nodes, testNode(fmt.Sprintf("node-%05d", i), "32", "128Gi", 110)
	})
	mustBatch(b, env.Store, ctx, numPods, func(i int) (*resource.Resource, resource.Object) {
		return resource.Pods, testPod(fmt.Sprintf("pod-%05d", i), "100m", "128Mi", types.UID(fmt.Sprintf("rs-%03d", i%100)))
	})

	var bound atomic.Int64
	done := make(chan struct{})
	var once sync.Once
	_, err := env.Context.Informers.For(resource.Pods).AddEventHandler(cache.ResourceEventHandlerFuncs{
		UpdateFunc: func(oldObj, obj any) {
			if oldObj.(*corev1.Pod).Spec.NodeName == "" && obj.(*corev1.Pod).Spec.NodeName != "" {
				if bound.Add(1) == int64(numPods) {
					once.Do(func() { close(done) })
				}
			}
		},
	})
	if err != nil {
		b.Fatal(err)
	}
	start(b, env, Config{}, nil) // returns once the caches are synced
	stopProfile := profileCPU(b, fmt.Sprintf("nodes-%d", numNodes))
	began := time.Now()
	select {
	case <-done:
	case <-time.After(10 * time.Minute):
		b.Fatalf("only %d of %d pods bound", bound.Load(), numPods)
	}
	elapsed := time.Since(began)
	stopProfile()

	sample, err := env.Store.Get(ctx, resource.Pods, "default", "pod-00000")
	if err != nil {
		b.Fatal(err)
	}
	value, err := store.Encode(resource.Pods, sample) // what the store writes for a pod
	if err != nil {
		b.Fatal(err)
	}
	client := env.Store.Client()
	kvs := make(map[string][]byte, numPods)
	for i := range numPods {
		kvs[fmt.Sprintf("/raw/batched/%d", i)] = value
	}
	t0 := time.Now()
	if err := storetest.RawPutBatches(ctx, client, kvs, 128, 8); err != nil {
		b.Fatal(err)
	}
	rawBatched = float64(numPods) / time.Since(t0).Seconds()
	t0 = time.Now()
	rawSinglePuts(b, ctx, client, numPods, value)
	rawSingle = float64(numPods) / time.Since(t0).Seconds()
	return float64(numPods) / elapsed.Seconds(), rawBatched, rawSingle
}

// profileCPU writes a CPU profile of the scheduling window to $BOSUN_BENCH_CPU_PROFILE-<name>
// when that variable is set; the returned function ends it.
func profileCPU(b *testing.B, name string) (stop func()) {
	path := os.Getenv("BOSUN_BENCH_CPU_PROFILE")
	if path == "" {
		return func() {}
	}
	f, err := os.Create(path + "-" + name)
	if err != nil {
		b.Fatal(err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		b.Fatal(err)
	}
	return func() {
		pprof.StopCPUProfile()
		if err := f.Close(); err != nil {
			b.Error(err)
		}
	}
}

func mustBatch(b *testing.B, st *store.Store, ctx context.Context, n int, obj func(i int) (*resource.Resource, resource.Object)) {
	ops := make([]store.Op, n)
	for i := range n {
		res, o := obj(i)
		ops[i] = store.Op{Type: store.OpCreate, Resource: res, Object: o}
	}
	for i, r := range st.Batch(ctx, ops) {
		if r.Err != nil {
			b.Fatalf("creating object %d: %v", i, r.Err)
		}
	}
}

func rawSinglePuts(b *testing.B, ctx context.Context, client *clientv3.Client, n int, value []byte) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1)
				if i > int64(n) {
					return
				}
				if _, err := client.Put(ctx, fmt.Sprintf("/raw/single/%d", i), string(value)); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
}
