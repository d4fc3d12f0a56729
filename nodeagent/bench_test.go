package nodeagent_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bosun-gitops/bosun/internal/testutil/images"
	"github.com/bosun-gitops/bosun/nodeagent/agenttest"
	"github.com/bosun-gitops/bosun/nodeagent/runtime/runtimetest"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/utils/ptr"
)

// BenchmarkPodStart measures pod start latency on one node — from a pod created bound to the
// node (spec.nodeName set, image present) to its Running status as a watch sees it — next to
// containerd's raw create+start of the same image in the same run, and the agent's RSS (its own
// process) idle and with 50 pods.
func BenchmarkPodStart(b *testing.B) {
	runtimetest.SkipUnlessRoot(b)
	tarPath, ref := images.Busybox(b, b.TempDir(), "busybox")
	c := agenttest.Start(b, agenttest.Options{
		Files:  map[string]string{"bosun.yaml": clusterYAML, "t/namespace.yaml": namespaceYAML},
		Images: []string{tarPath}, AgentBinary: agenttest.BuildBosun(b),
	})
	c.StartAgent()
	ctx := context.Background()
	time.Sleep(3 * time.Second) // let the informers and the first syncs settle
	idle, err := c.AgentRSS()
	if err != nil {
		b.Fatal(err)
	}

	idleAnon, err := c.AgentMemory("RssAnon")
	if err != nil {
		b.Fatal(err)
	}
	const seq, burst = 20, 50
	rawBurst, err := runtimetest.RawStartLatency(ctx, c.Socket, ref, burst, burst)
	if err != nil {
		b.Fatalf("raw containerd start: %v", err)
	}

	// The agent's first pod start reads the code it runs from disk (its start-up pages were
	// released; see package memtrim): it is printed on its own, and the figures below are warm.
	first := startPods(b, c, ref, "first", 1)[0]
	deletePods(b, c)

	b.ResetTimer()
	// Sequential starts alternate with raw ones, so that both see the same load on the machine.
	var one, rawSeq []time.Duration
	before := agentTimings(b, c) // the raw starts do not go through the agent
	for i := range seq {
		raw, err := runtimetest.RawStartLatency(ctx, c.Socket, ref, 1, 1)
		if err != nil {
			b.Fatalf("raw containerd start: %v", err)
		}
		rawSeq = append(rawSeq, raw...)
		one = append(one, startPods(b, c, ref, fmt.Sprintf("seq-%d", i), 1)...)
	}
	afterSeq := agentTimings(b, c)
	deletePods(b, c)
	beforeBurst := agentTimings(b, c)
	many := startPods(b, c, ref, "burst", burst)
	burstEnd := time.Now()
	releases := agentCounter(b, c, "bosun_idle_memory_releases_total")
	b.StopTimer()
	printTimings("sequential", before, afterSeq)
	printTimings("50-burst", beforeBurst, agentTimings(b, c))
	time.Sleep(3 * time.Second)
	busy, err := c.AgentRSS()
	if err != nil {
		b.Fatal(err)
	}
	// At rest with its 50 pods: once the agent has gone idle after the burst and handed its
	// heap's garbage back (bosun_idle_memory_releases_total counts that).
	rest := "at rest"
	if !waitForIdleRelease(b, c, releases, time.Minute) {
		rest = "NOT at rest: the agent did not go idle"
	}
	restWait := time.Since(burstEnd)
	with50, err := c.AgentRSS()
	if err != nil {
		b.Fatal(err)
	}
	with50Anon, err := c.AgentMemory("RssAnon")
	if err != nil {
		b.Fatal(err)
	}
	if n := strings.Count(c.AgentLog(100000), "client-side throttling"); n > 0 {
		b.Logf("the agent's API client throttled %d requests", n)
	}
	deletePods(b, c)

	slices.Sort(one)
	slices.Sort(many)
	p50, raw50 := runtimetest.Percentile(one, 50), runtimetest.Percentile(rawSeq, 50)
	p99, raw99 := runtimetest.Percentile(many, 99), runtimetest.Percentile(rawBurst, 99)
	fmt.Printf("bench: pod-start-first-after-agent-start %.1f ms\n", ms(first))
	fmt.Printf("bench: pod-start-p50 %.1f ms limit=%.1f ratio=%.2f\n", ms(p50), ms(raw50), ms(p50)/ms(raw50))
	fmt.Printf("bench: pod-start-p99-50-burst %.1f ms limit=%.1f ratio=%.2f\n", ms(p99), ms(raw99), ms(p99)/ms(raw99))
	fmt.Printf("bench: agent-rss-idle %.1f MB\n", float64(idle)/1e6)
	fmt.Printf("bench: agent-rss-50-pods-3s-after-burst %.1f MB\n", float64(busy)/1e6)
	fmt.Printf("bench: agent-rss-50-pods %.1f MB (%s, %s after the burst)\n", float64(with50)/1e6, rest, restWait.Round(time.Second))
	// The rest of the RSS is file-backed: the pages of the bosun binary the agent runs (its
	// start-up pages were released once it was ready; see package memtrim).
	fmt.Printf("bench: agent-rss-anon-idle %.1f MB\n", float64(idleAnon)/1e6)
	fmt.Printf("bench: agent-rss-anon-50-pods %.1f MB\n", float64(with50Anon)/1e6)
	b.ReportMetric(ms(p50), "ms-p50")
	b.ReportMetric(ms(p99), "ms-p99-burst")
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// agentMetrics scrapes the agent's /metrics.
func agentMetrics(b *testing.B, c *agenttest.Cluster) map[string]*dto.MetricFamily {
	b.Helper()
	text, err := c.AgentMetrics()
	if err != nil {
		b.Fatalf("reading the agent's metrics: %v", err)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		b.Fatalf("parsing the agent's metrics: %v", err)
	}
	return families
}

// agentCounter reads one unlabelled counter from the agent's /metrics.
func agentCounter(b *testing.B, c *agenttest.Cluster, name string) float64 {
	b.Helper()
	f, ok := agentMetrics(b, c)[name]
	if !ok || len(f.GetMetric()) != 1 {
		b.Fatalf("the agent's metrics have no single %s", name)
	}
	return f.GetMetric()[0].GetCounter().GetValue()
}

// waitForIdleRelease waits, at most limit, until the agent has released memory since the
// counter read `since`, and reports whether it did.
func waitForIdleRelease(b *testing.B, c *agenttest.Cluster, since float64, limit time.Duration) bool {
	b.Helper()
	for start := time.Now(); time.Since(start) < limit; time.Sleep(time.Second) {
		if agentCounter(b, c, "bosun_idle_memory_releases_total") > since {
			return true
		}
	}
	b.Logf("the agent did not go idle within %s", limit)
	return false
}

// timing is a histogram's sum (seconds) and count.
type timing struct{ sum, count float64 }

// agentTimings reads the agent's pod start and runtime operation histograms from its /metrics,
// keyed by operation ("pod_start" for the whole start).
func agentTimings(b *testing.B, c *agenttest.Cluster) map[string]timing {
	b.Helper()
	families := agentMetrics(b, c)
	out := map[string]timing{}
	for _, name := range []string{"bosun_agent_pod_start_duration_seconds", "bosun_agent_runtime_operations_duration_seconds"} {
		for _, m := range families[name].GetMetric() {
			key := "pod_start"
			for _, l := range m.GetLabel() {
				if l.GetName() == "operation" {
					key = l.GetValue()
				}
			}
			h := m.GetHistogram()
			out[key] = timing{sum: h.GetSampleSum(), count: float64(h.GetSampleCount())}
		}
	}
	if len(out) == 0 {
		b.Fatal("the agent's metrics have no pod timings")
	}
	return out
}

// printTimings prints the mean of each agent timing between two scrapes: where a pod start's
// time goes inside the agent.
func printTimings(phase string, before, after map[string]timing) {
	var parts []string
	for _, op := range []string{"pod_start", "network_setup", "image", "create_container", "start_container", "status_update"} {
		n := after[op].count - before[op].count
		if n == 0 {
			continue
		}
		parts = append(parts, fmt.Sprintf("%s %.1f ms ×%.0f", op, (after[op].sum-before[op].sum)*1000/n, n))
	}
	fmt.Printf("bench: agent-timings-%s mean: %s\n", phase, strings.Join(parts, ", "))
}

// startPods creates n pods bound to the node at once and returns, per pod, the time from its
// creation to the first Running status the watch delivers.
func startPods(b *testing.B, c *agenttest.Cluster, image, prefix string, n int) []time.Duration {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	w, err := c.Admin.CoreV1().Pods("t").Watch(ctx, metav1.ListOptions{LabelSelector: "bench=" + prefix})
	if err != nil {
		b.Fatal(err)
	}
	defer w.Stop()
	created := map[string]time.Time{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := range n {
		name := fmt.Sprintf("%s-%d", prefix, i)
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "t", Labels: map[string]string{"bench": prefix}},
			Spec: corev1.PodSpec{
				NodeName:                      c.NodeName,
				TerminationGracePeriodSeconds: ptr.To[int64](0),
				Containers: []corev1.Container{{Name: "c", Image: image,
					ImagePullPolicy: corev1.PullIfNotPresent, Command: []string{"sleep", "3600"}}},
			},
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			mu.Lock()
			created[name] = time.Now()
			mu.Unlock()
			if _, err := c.Admin.CoreV1().Pods("t").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
				b.Errorf("creating pod: %v", err)
			}
		}()
	}
	var out []time.Duration
	done := map[string]bool{}
	for len(done) < n {
		select {
		case ev, ok := <-w.ResultChan():
			if !ok {
				b.Fatalf("watch ended with %d of %d pods Running", len(done), n)
			}
			p, isPod := ev.Object.(*corev1.Pod)
			if !isPod || ev.Type == watch.Deleted || done[p.Name] || p.Status.Phase != corev1.PodRunning {
				continue
			}
			now := time.Now()
			mu.Lock()
			t0 := created[p.Name]
			mu.Unlock()
			done[p.Name] = true
			out = append(out, now.Sub(t0))
		case <-ctx.Done():
			b.Fatalf("%d of %d pods Running after 3m:\n%s", len(done), n, c.AgentLog(20))
		}
	}
	wg.Wait()
	return out
}

// deletePods deletes the benchmark's pods and waits until the agent removed their containers.
func deletePods(b *testing.B, c *agenttest.Cluster) {
	b.Helper()
	ctx := context.Background()
	l, err := c.Admin.CoreV1().Pods("t").List(ctx, metav1.ListOptions{LabelSelector: "bench"})
	if err != nil {
		b.Fatalf("listing pods: %v", err)
	}
	for _, p := range l.Items {
		if err := c.Admin.CoreV1().Pods("t").Delete(ctx, p.Name, metav1.DeleteOptions{}); err != nil {
			b.Fatalf("deleting pod %s: %v", p.Name, err)
		}
	}
	deadline := time.Now().Add(3 * time.Minute)
	for len(containersOf(b, c.Socket, "")) > 0 {
		if time.Now().After(deadline) {
			b.Fatalf("containers left 3m after deleting the pods:\n%s", c.AgentLog(20))
		}
		time.Sleep(200 * time.Millisecond)
	}
}
