package apiserver_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/bosun-gitops/bosun/internal/resource"
	"github.com/bosun-gitops/bosun/operator/store"
	"github.com/bosun-gitops/bosun/operator/store/storetest"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
)

// BenchmarkWatchBurst writes 10 000 ConfigMaps with one Batch and measures how long a client-go
// watch through the API takes to see them all, against a watch on the store itself in the same
// process (the ceiling: the API adds encoding, TLS and the client's decoding). Run with
//
//	go test ./operator/apiserver -run '^$' -bench WatchBurst -benchtime 3x
func BenchmarkWatchBurst(b *testing.B) {
	const n = 10000
	st := storetest.NewStore(b)
	cs := startBenchServer(b, st)
	ctx := context.Background()
	var apiTime, storeTime time.Duration
	for iter := 0; iter < b.N; iter++ {
		b.StopTimer()
		ns := fmt.Sprintf("burst-%d", iter)
		if _, err := st.Create(ctx, resource.Namespaces, nsObject(ns)); err != nil {
			b.Fatal(err)
		}
		rv, err := st.CurrentRevision(ctx)
		if err != nil {
			b.Fatal(err)
		}
		wctx, cancel := context.WithCancel(ctx)
		api, err := cs.CoreV1().ConfigMaps(ns).Watch(wctx, metav1.ListOptions{ResourceVersion: fmt.Sprint(rv)})
		if err != nil {
			b.Fatal(err)
		}
		direct, err := st.Watch(wctx, resource.ConfigMaps, ns, store.WatchOptions{ResourceVersion: rv})
		if err != nil {
			b.Fatal(err)
		}
		ops := make([]store.Op, n)
		for i := range ops {
			cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("cm-%d", i)},
				Data: map[string]string{"settings.yaml": fmt.Sprintf("log-level: info\ncache-size: 128\nupstream: http://upstream-%d.internal:8080\n", i)}}
			ops[i] = store.Op{Type: store.OpCreate, Resource: resource.ConfigMaps, Object: cm}
		}
		storeDone := make(chan time.Time, 1)
		go func() {
			for seen := 0; seen < n; seen++ {
				if ev := <-direct; ev.Type != watch.Added {
					b.Errorf("store watch: %s %v", ev.Type, ev.Err)
					return
				}
			}
			storeDone <- time.Now()
		}()
		b.StartTimer()
		start := time.Now()
		for i, r := range st.Batch(ctx, ops) {
			if r.Err != nil {
				b.Fatalf("op %d: %v", i, r.Err)
			}
		}
		for seen := 0; seen < n; seen++ {
			if ev := <-api.ResultChan(); ev.Type != watch.Added {
				b.Fatalf("API watch: %s %v", ev.Type, ev.Object)
			}
		}
		apiTime += time.Since(start)
		b.StopTimer()
		storeTime += (<-storeDone).Sub(start)
		api.Stop()
		cancel()
	}
	fmt.Printf("bench: apiserver-watch-burst-%d %.3f s limit=%.3f ratio=%.2f (client-go watch through the API vs a store watch, from the Batch's start)\n",
		n, apiTime.Seconds()/float64(b.N), storeTime.Seconds()/float64(b.N), apiTime.Seconds()/storeTime.Seconds())
}
