package gitsync

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/bosun-gitops/bosun/internal/resource"
	"github.com/bosun-gitops/bosun/operator/store"
	"github.com/bosun-gitops/bosun/operator/store/storetest"
	bosunv1 "github.com/bosun-gitops/bosun/repo-layout/v1alpha1"
	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/watch"
)

// Environment of the helper process that runs a Syncer against the parent's etcd.
const (
	envHelper    = "BOSUN_GITSYNC_HELPER"
	envEndpoints = "BOSUN_GITSYNC_ENDPOINTS"
	envRepo      = "BOSUN_GITSYNC_REPO"
	envWorkDir   = "BOSUN_GITSYNC_WORKDIR"
	envTxnOps    = "BOSUN_GITSYNC_TXN_OPS" // small transactions stretch an apply so it can be killed half-way
	envMode      = "BOSUN_GITSYNC_MODE"    // "run" (Run until killed) or "once" (SyncOnce, then print VmRSS)
)

// TestHelperProcess is not a test: it is the operator process that the crash test kills and
// restarts, and that the benchmark measures the RSS of.
func TestHelperProcess(t *testing.T) {
	if os.Getenv(envHelper) != "1" {
		t.Skip("helper process for TestKillMidApplyConverges and the RSS benchmark")
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	client, err := store.Connect(ctx, store.ClientConfig{Endpoints: strings.Split(os.Getenv(envEndpoints), ",")})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	opts := store.Options{}
	if n, _ := strconv.Atoi(os.Getenv(envTxnOps)); n > 0 {
		opts.MaxTxnOps, opts.BatchConcurrency = n, 1
	}
	st := store.New(client, opts)
	s, err := New(Config{Repo: os.Getenv(envRepo), WorkDir: os.Getenv(envWorkDir), Interval: time.Second}, st, testLogger(t))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	if os.Getenv(envMode) == "once" {
		if _, err := s.SyncOnce(ctx); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		fmt.Printf("rss-kb=%d\n", vmRSSKB())
		// What of it is live, and what is left once the freed heap is returned to the OS.
		var ms runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&ms)
		fmt.Printf("heap-live-kb=%d\n", ms.HeapAlloc/1024)
		debug.FreeOSMemory()
		fmt.Printf("rss-freed-kb=%d\n", vmRSSKB())
		os.Exit(0)
	}
	if err := s.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(0)
}

// vmRSSKB reads this process's resident set size from /proc/self/status.
func vmRSSKB() int {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			n, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(rest), " kB"))
			return n
		}
	}
	return -1
}

// helperProcess is a running TestHelperProcess with its output captured.
type helperProcess struct {
	cmd *exec.Cmd
	out *bytes.Buffer
}

func startHelper(t testing.TB, env ...string) *helperProcess {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.v")
	cmd.Env = append(os.Environ(), append([]string{envHelper + "=1"}, env...)...)
	out := &bytes.Buffer{}
	cmd.Stdout, cmd.Stderr = syncWriter(out), syncWriter(out)
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting helper process: %v", err)
	}
	h := &helperProcess{cmd: cmd, out: out}
	t.Cleanup(func() {
		if h.cmd.ProcessState == nil {
			_ = h.cmd.Process.Kill()
			_ = h.cmd.Wait()
		}
		if t.Failed() {
			t.Logf("helper process output:\n%s", h.output())
		}
	})
	return h
}

var outputMu sync.Mutex

type lockedWriter struct{ b *bytes.Buffer }

func syncWriter(b *bytes.Buffer) lockedWriter { return lockedWriter{b} }

func (w lockedWriter) Write(p []byte) (int, error) {
	outputMu.Lock()
	defer outputMu.Unlock()
	return w.b.Write(p)
}

func (h *helperProcess) output() string {
	outputMu.Lock()
	defer outputMu.Unlock()
	return h.out.String()
}

func TestKillMidApplyConverges(t *testing.T) {
	if testing.Short() {
		t.Skip("starts and kills an operator process")
	}
	ctx := context.Background()
	etcd := storetest.NewEtcd(t)
	st := store.New(etcd.Client(), store.Options{Logger: storetest.Logger(t)})
	f := newGitFixture(t)
	const namespaces, before, after = 10, 1000, 3000

	// The live state: commit A, applied by an earlier run.
	for i := 0; i < namespaces; i++ {
		f.write(fmt.Sprintf("ns/ns-%d.yaml", i), namespace(fmt.Sprintf("ns-%d", i)))
	}
	writeConfigMaps := func(prefix string, from, to int, value string) {
		for file := from; file < to; file += 10 {
			var b strings.Builder
			for i := file; i < file+10 && i < to; i++ {
				fmt.Fprintf(&b, "---\n%s", configMap(fmt.Sprintf("ns-%d", i%namespaces), fmt.Sprintf("%s-%d", prefix, i), value))
			}
			f.write(fmt.Sprintf("%s/%d.yaml", prefix, file), b.String())
		}
	}
	writeConfigMaps("a", 0, before, "v1")
	f.commitPush("A", "main")
	workDir := t.TempDir()
	first, err := New(Config{Repo: f.bare, WorkDir: workDir}, st, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	mustSync(t, first)

	// Commit B: half of A updated, half deleted, 2 500 new objects.
	for file := before / 2; file < before; file += 10 {
		f.remove(fmt.Sprintf("a/%d.yaml", file))
	}
	writeConfigMaps("a", 0, before/2, "v2")
	writeConfigMaps("b", 0, after-before/2, "v2")
	commitB := f.commitPush("B", "main")
	want := map[string]string{}
	for i := 0; i < before/2; i++ {
		want[fmt.Sprintf("ns-%d/a-%d", i%namespaces, i)] = "v2"
	}
	for i := 0; i < after-before/2; i++ {
		want[fmt.Sprintf("ns-%d/b-%d", i%namespaces, i)] = "v2"
	}

	// Watch the new objects appear and kill the operator once some but not all are visible.
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	events, err := st.Watch(wctx, resource.ConfigMaps, "", store.WatchOptions{ResourceVersion: mustRevision(t, st)})
	if err != nil {
		t.Fatal(err)
	}
	env := []string{envEndpoints + "=" + strings.Join(etcd.Endpoints(), ","), envRepo + "=" + f.bare, envWorkDir + "=" + workDir}
	h := startHelper(t, append(env, envTxnOps+"=8")...)
	writes := 0
	for writes < 300 {
		ev, ok := <-events
		if !ok || ev.Type == watch.Error {
			t.Fatalf("watch ended: %+v", ev)
		}
		writes++
	}
	if err := h.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = h.cmd.Wait()
	cancel()
	got := configMapValues(t, st)
	if cmp.Equal(want, got) {
		t.Fatal("the apply finished before the kill; the test did not exercise a crash")
	}
	t.Logf("killed after %d writes; %d config maps live, %d differ from commit B", writes, len(got), countDiff(want, got))

	// Restart: the next sync recomputes the plan from what is live and converges.
	startHelper(t, env...)
	waitFor(t, "the restarted operator to apply commit B", func() bool {
		s := gitSyncStatus(t, st, "default")
		return s.State == bosunv1.SyncStateSynced && s.Applied.SHA == commitB
	})
	if diff := cmp.Diff(want, configMapValues(t, st)); diff != "" {
		t.Errorf("config maps after restart (-want +got):\n%s", diff)
	}
	for k, obj := range names(t, st, resource.ConfigMaps) {
		if obj.GetAnnotations()[resource.AnnotationAppliedHash] == "" {
			t.Errorf("%s has no applied hash", k)
		}
	}
	status := gitSyncStatus(t, st, "default")
	if status.Commit.SHA != commitB || len(status.Errors) != 0 {
		t.Errorf("status = %+v", status)
	}
}

func mustRevision(t *testing.T, st *store.Store) int64 {
	t.Helper()
	rev, err := st.CurrentRevision(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return rev
}

func configMapValues(t *testing.T, st *store.Store) map[string]string {
	t.Helper()
	out := map[string]string{}
	for k, obj := range names(t, st, resource.ConfigMaps) {
		out[k] = obj.(*corev1.ConfigMap).Data["key"]
	}
	return out
}

func countDiff(want, got map[string]string) int {
	n := 0
	for k, v := range want {
		if got[k] != v {
			n++
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			n++
		}
	}
	return n
}
