package gitsync

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bosun-gitops/bosun/internal/resource"
	"github.com/bosun-gitops/bosun/operator/store"
	"github.com/bosun-gitops/bosun/operator/store/storetest"
	bosunv1 "github.com/bosun-gitops/bosun/repo-layout/v1alpha1"
	clientv3 "go.etcd.io/etcd/client/v3"
)

const benchPerFile, benchNamespaces = 10, 10

// writeBenchRepo writes n Deployment-sized manifests, benchPerFile per file, plus namespaces.
func writeBenchRepo(f *gitFixture, n int) {
	for i := 0; i < benchNamespaces; i++ {
		f.write(fmt.Sprintf("namespaces/ns-%d.yaml", i), namespace(fmt.Sprintf("ns-%d", i)))
	}
	for file := 0; file < n; file += benchPerFile {
		var b strings.Builder
		for i := file; i < file+benchPerFile && i < n; i++ {
			b.WriteString("---\n")
			b.WriteString(deployment(fmt.Sprintf("ns-%d", i%benchNamespaces), fmt.Sprintf("app-%d", i), 2))
		}
		f.write(fmt.Sprintf("apps/%04d.yaml", file/benchPerFile), b.String())
	}
}

// storedPayloads returns the stored values of every Deployment, under a separate prefix: the
// raw etcd ceiling writes exactly the bytes that the sync wrote (defaults and Bosun's
// annotations included).
func storedPayloads(b *testing.B, c *clientv3.Client) map[string][]byte {
	prefix := store.DefaultPrefix + "/apps/deployments/"
	resp, err := c.Get(context.Background(), prefix, clientv3.WithPrefix())
	if err != nil {
		b.Fatal(err)
	}
	kvs := make(map[string][]byte, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		kvs["/raw-ceiling/apps/deployments/"+strings.TrimPrefix(string(kv.Key), prefix)] = kv.Value
	}
	return kvs
}

// processCPU returns the CPU time (user and system) this process has used, embedded etcd
// included: on a shared machine it varies less than wall time.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func waitApplied(b *testing.B, st *store.Store, sha string) {
	for {
		obj, err := st.Get(context.Background(), resource.GitSyncs, "", "default")
		if err == nil {
			s := obj.(*bosunv1.GitSync).Status
			if s.Applied.SHA == sha {
				return
			}
			if s.State == bosunv1.SyncStateFailed && s.Commit.SHA == sha {
				b.Fatalf("sync failed: %s %v", s.Message, s.Errors)
			}
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func countDeployments(b *testing.B, st *store.Store) int {
	l, err := st.List(context.Background(), resource.Deployments, "", store.ListOptions{})
	if err != nil {
		b.Fatal(err)
	}
	return len(l.Items)
}

// BenchmarkPushToVisible measures git push → every object visible in the store, against raw
// etcd batches of the same payloads in the same run. Run with
//
//	go test ./operator/gitsync -run '^$' -bench PushToVisible -benchtime 1x
func BenchmarkPushToVisible(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			for iter := 0; iter < b.N; iter++ {
				benchPushToVisible(b, n)
			}
		})
	}
}

func benchPushToVisible(b *testing.B, n int) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	etcd := storetest.NewEtcd(b)
	st := store.New(etcd.Client(), store.Options{Logger: storetest.Logger(b)})
	f := newGitFixture(b)
	f.write("README.md", "bench\n")
	f.commitPush("empty", "main")
	s, err := New(Config{Repo: f.bare, WorkDir: b.TempDir(), Interval: time.Hour}, st, testLogger(b))
	if err != nil {
		b.Fatal(err)
	}
	go func() { _ = s.Run(ctx) }()
	waitApplied(b, st, f.git("rev-parse", "HEAD"))

	writeBenchRepo(f, n)
	f.git("add", "-A")
	f.git("commit", "--quiet", "-m", "bench")
	sha := f.git("rev-parse", "HEAD")
	b.ResetTimer()
	start, cpu := time.Now(), processCPU(b)
	f.git("push", "--quiet", "origin", "HEAD:main")
	s.Trigger() // what a push webhook does
	waitApplied(b, st, sha)
	elapsed, elapsedCPU := time.Since(start), processCPU(b)-cpu
	b.StopTimer()
	if got := countDeployments(b, st); got != n {
		b.Fatalf("%d deployments visible, want %d", got, n)
	}

	kvs := storedPayloads(b, etcd.Client())
	rawStart, cpu := time.Now(), processCPU(b)
	if err := storetest.RawPutBatches(ctx, etcd.Client(), kvs, store.DefaultMaxTxnOps, store.DefaultBatchConcurrency); err != nil {
		b.Fatal(err)
	}
	raw, rawCPU := time.Since(rawStart), processCPU(b)-cpu
	fmt.Printf("bench: gitsync-push-to-visible-%d %.3f s limit=%.3f ratio=%.2f\n",
		n, elapsed.Seconds(), raw.Seconds(), elapsed.Seconds()/raw.Seconds())
	fmt.Printf("bench: gitsync-push-to-visible-cpu-%d %.3f s limit=%.3f ratio=%.2f (CPU time of the process: sync and embedded etcd)\n",
		n, elapsedCPU.Seconds(), rawCPU.Seconds(), elapsedCPU.Seconds()/rawCPU.Seconds())

	if n != 10000 {
		return
	}
	// One changed object: push, Trigger, visible.
	f.write("apps/0000.yaml", strings.Replace(readFile(b, f, "apps/0000.yaml"), "replicas: 2", "replicas: 3", 1))
	f.git("commit", "--quiet", "-am", "one")
	one := f.git("rev-parse", "HEAD")
	start = time.Now()
	f.git("push", "--quiet", "origin", "HEAD:main")
	s.Trigger()
	for {
		obj, err := st.Get(ctx, resource.Deployments, "ns-0", "app-0")
		if err == nil && obj.GetAnnotations()[resource.AnnotationCommit] == one {
			break
		}
		time.Sleep(time.Millisecond)
	}
	fmt.Printf("bench: gitsync-one-object-latency %.0f ms\n", float64(time.Since(start).Microseconds())/1000)
	cancel()

	// RSS of an operator process that syncs the 10 000 objects into a fresh etcd.
	etcd2 := storetest.NewEtcd(b)
	h := startHelper(b, envEndpoints+"="+strings.Join(etcd2.Endpoints(), ","), envRepo+"="+f.bare,
		envWorkDir+"="+b.TempDir(), envMode+"=once")
	if err := h.cmd.Wait(); err != nil {
		b.Fatalf("helper: %v\n%s", err, h.output())
	}
	for _, line := range strings.Split(h.output(), "\n") {
		for _, m := range []struct{ prefix, name string }{
			{"rss-kb=", "gitsync-rss-10000"},
			{"heap-live-kb=", "gitsync-heap-live-10000"},
			{"rss-freed-kb=", "gitsync-rss-after-free-10000"},
		} {
			if rest, ok := strings.CutPrefix(line, m.prefix); ok {
				kb, _ := strconv.Atoi(rest)
				fmt.Printf("bench: %s %.0f MB\n", m.name, float64(kb)/1024)
			}
		}
	}
}

func readFile(b *testing.B, f *gitFixture, name string) string {
	data, err := readWorkFile(f, name)
	if err != nil {
		b.Fatal(err)
	}
	return data
}
