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
	"k8s.io/client-go/rest"
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
	cs, err := kubernetes.NewForConfig(startBenchServerConfig(b, st))
	if err != nil {
		b.Fatal(err)
	}
	return cs
}

// startBenchServerConfig runs a server on st for a benchmark and returns an admin client
// configuration without client-side rate limits.
func startBenchServerConfig(b *testing.B, st *store.Store) *rest.Config {
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
	return cfg
}

// BenchmarkListPods lists 3 000 pods through client-go's typed client, which asks for protobuf,
// and through a JSON client, next to the same list read straight from the store in the same run
// (the ceiling: what the API adds is encoding, TLS and the client's decoding). Each run times
// five lists of each; the setup takes over a second, so the benchmark runs once.
//
//	go test -run '^$' -bench ListPods ./operator/apiserver
func BenchmarkListPods(b *testing.B) {
	const n = 3000
	st := storetest.NewStore(b)
	ctx := context.Background()
	ops := []store.Op{{Type: store.OpCreate, Resource: resource.Namespaces, Object: nsObject("a")}}
	for i := range n {
		p := withNS(testPod(fmt.Sprintf("web-%05d", i), fmt.Sprintf("node-%03d", i%100), map[string]string{"app": "web", "tier": "front"}), "a")
		p.Spec.Containers[0].Ports = []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}}
		ops = append(ops, store.Op{Type: store.OpCreate, Resource: resource.Pods, Object: p})
	}
	for i, r := range st.Batch(ctx, ops) {
		if r.Err != nil {
			b.Fatalf("op %d: %v", i, r.Err)
		}
	}
	cfg := startBenchServerConfig(b, st)
	jsonCfg := rest.CopyConfig(cfg)
	jsonCfg.ContentType, jsonCfg.AcceptContentTypes = "application/json", "application/json"
	perList := func(list func() (int, error)) time.Duration {
		const rounds = 5
		start := time.Now()
		for range rounds {
			got, err := list()
			if err != nil {
				b.Fatal(err)
			}
			if got != n {
				b.Fatalf("listed %d pods, want %d", got, n)
			}
		}
		return time.Since(start) / rounds
	}
	direct := perList(func() (int, error) {
		lr, err := st.List(ctx, resource.Pods, "a", store.ListOptions{})
		if err != nil {
			return 0, err
		}
		return len(lr.Items), nil
	})
	timings := map[string]time.Duration{}
	for _, c := range []struct {
		name string
		cfg  *rest.Config
	}{{"protobuf", cfg}, {"json", jsonCfg}} {
		cs, err := kubernetes.NewForConfig(c.cfg)
		if err != nil {
			b.Fatal(err)
		}
		timings[c.name] = perList(func() (int, error) {
			l, err := cs.CoreV1().Pods("a").List(ctx, metav1.ListOptions{})
			if err != nil {
				return 0, err
			}
			return len(l.Items), nil
		})
	}
	for _, name := range []string{"protobuf", "json"} {
		fmt.Printf("bench: api-list-%d-pods-%s %.1f ms limit=%.1f ratio=%.2f (limit: the store's own list)\n",
			n, name, ms(timings[name]), ms(direct), float64(timings[name])/float64(direct))
	}
	b.ReportMetric(ms(timings["protobuf"]), "ms/list-protobuf")
	b.ReportMetric(ms(timings["json"]), "ms/list-json")
	b.ReportMetric(ms(direct), "ms/list-store")
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
