package apiserver_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/bosun-gitops/bosun/internal/resource"
	"github.com/bosun-gitops/bosun/operator/apiserver"
	"github.com/bosun-gitops/bosun/operator/store"
	"github.com/bosun-gitops/bosun/operator/store/storetest"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// BenchmarkCreatePod creates pods through client-go and HTTPS, and reports the rate next to
// the same creates made straight on the store in the same run (the ceiling the API adds to).
//
//	go test -run '^$' -bench CreatePod ./operator/apiserver
func BenchmarkCreatePod(b *testing.B) {
	st := storetest.NewStore(b)
	ctx := context.Background()
	if _, err := st.Create(ctx, resource.Namespaces, nsObject("direct")); err != nil {
		b.Fatal(err)
	}
	const n = 300
	start := time.Now()
	for i := range n {
		if _, err := st.Create(ctx, resource.Pods, withNS(testPod(fmt.Sprintf("p%d", i), "", nil), "direct")); err != nil {
			b.Fatal(err)
		}
	}
	direct := float64(n) / time.Since(start).Seconds()

	ts := startBenchServer(b, st)
	if _, err := st.Create(ctx, resource.Namespaces, nsObject("api")); err != nil {
		b.Fatal(err)
	}
	pods := ts.CoreV1().Pods("api")
	for i := 0; b.Loop(); i++ {
		if _, err := pods.Create(ctx, testPod(fmt.Sprintf("p%d", i), "", nil), metav1.CreateOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	viaAPI := float64(b.N) / b.Elapsed().Seconds()
	b.ReportMetric(viaAPI, "pods/s")
	b.ReportMetric(direct, "store-pods/s")
	b.ReportMetric(viaAPI/direct, "ratio")
}

func nsObject(name string) *corev1.Namespace {
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
}

// startBenchServer runs a server on st for a benchmark and returns an admin clientset.
func startBenchServer(b *testing.B, st *store.Store) kubernetes.Interface {
	b.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := apiserver.New(ctx, apiserver.Config{Listen: "127.0.0.1:0", DataDir: b.TempDir(), Store: st})
	if err != nil {
		cancel()
		b.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	b.Cleanup(func() { cancel(); <-done })
	<-srv.Ready()
	cfg, err := clientcmd.BuildConfigFromFlags("", srv.AdminKubeconfigPath())
	if err != nil {
		b.Fatal(err)
	}
	cfg.QPS, cfg.Burst = -1, 0 // no client-side rate limit
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		b.Fatal(err)
	}
	return cs
}
