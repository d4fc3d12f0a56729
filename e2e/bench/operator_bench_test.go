//go:build e2e

package bench_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bosun-gitops/bosun/e2e/e2eutil"
	"github.com/bosun-gitops/bosun/internal/resource"
	"github.com/bosun-gitops/bosun/internal/testutil"
	"github.com/bosun-gitops/bosun/operator/store"
	"github.com/bosun-gitops/bosun/operator/store/storetest"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
)

const (
	perFile        = 10 // objects per manifest file
	namespaceCount = 10
	// benchSelector selects the benchmark's objects (and nothing the controllers create).
	benchLabel    = "bosun-bench"
	benchSelector = benchLabel + "=push"
)

// The object mix, per group of ten consecutive objects: four ConfigMaps, three Services and three
// Deployments of one replica (BOSUN_BENCH_REPLICAS), each Service selecting one Deployment's
// pods, spread over ten namespaces. The Deployments fan out into a ReplicaSet and a Pod each
// (Pending: there are no nodes, so each also gets a FailedScheduling Event), the Services into
// Endpoints; the store's contents are printed once the controllers are quiet.
const (
	mixConfigMaps = 4
	mixServices   = 3
)

// watched are the kinds the benchmark writes and watches, with their apiVersion and kind for the
// raw ceiling's JSON.
var watched = []struct {
	resource string
	gvk      schema.GroupVersionKind
}{
	{"configmaps", corev1.SchemeGroupVersion.WithKind("ConfigMap")},
	{"services", corev1.SchemeGroupVersion.WithKind("Service")},
	{"deployments", schema.GroupVersionKind{Group: "apps", Version: "v1", Kind: "Deployment"}},
}

// manifest is object i of the mix as YAML; rev goes into the ConfigMaps' data.
func manifest(i, rev, replicas int) string {
	ns := fmt.Sprintf("ns-%d", i%namespaceCount)
	group, slot := i/10*10, i%10
	switch {
	case slot < mixConfigMaps:
		return fmt.Sprintf(`apiVersion: v1
kind: ConfigMap
metadata:
  name: cfg-%[2]d
  namespace: %[1]s
  labels:
    %[4]s: push
data:
  revision: "%[3]d"
  settings.yaml: |
    log-level: info
    cache-size: 128
    upstream: http://upstream-%[2]d.internal:8080
`, ns, i, rev, benchLabel)
	case slot < mixConfigMaps+mixServices:
		app := group + mixConfigMaps + mixServices + (slot - mixConfigMaps)
		return fmt.Sprintf(`apiVersion: v1
kind: Service
metadata:
  name: web-%[2]d
  namespace: %[1]s
  labels:
    %[3]s: push
spec:
  selector:
    app: web-%[2]d
  ports:
  - name: http
    port: 80
    targetPort: 8080
`, fmt.Sprintf("ns-%d", app%namespaceCount), app, benchLabel)
	default:
		return fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata:
  name: web-%[2]d
  namespace: %[1]s
  labels:
    app: web-%[2]d
    %[3]s: push
spec:
  replicas: %[4]d
  selector:
    matchLabels:
      app: web-%[2]d
  template:
    metadata:
      labels:
        app: web-%[2]d
        tier: backend
    spec:
      containers:
      - name: app
        image: registry.example.com/team/web-%[2]d:1.2.3
        args: ["--listen=:8080", "--log-level=info", "--cache-size=128"]
        env:
        - name: MODE
          value: production
        - name: SERVICE_NAME
          value: web-%[2]d
        ports:
        - containerPort: 8080
          name: http
        resources:
          requests:
            cpu: 100m
            memory: 64Mi
          limits:
            memory: 128Mi
        readinessProbe:
          httpGet:
            path: /healthz
            port: 8080
          periodSeconds: 5
`, ns, i, benchLabel, replicas)
	}
}

// manifestFile is the file of objects first.. (perFile of them, fewer at the end); object 0, a
// ConfigMap, carries revision rev0.
func manifestFile(first, n, rev0, replicas int) string {
	var b strings.Builder
	for i := first; i < first+perFile && i < n; i++ {
		rev := 0
		if i == 0 {
			rev = rev0
		}
		b.WriteString("---\n")
		b.WriteString(manifest(i, rev, replicas))
	}
	return b.String()
}

// BenchmarkOperator runs the real operator (BOSUN_BIN) against a Git repository for 1 000 and
// 10 000 objects; see the package documentation for the figures it prints. Run with
//
//	make bench-e2e
//	BOSUN_BIN=$PWD/bin/bosun go test -tags e2e -run '^$' -bench Operator -benchtime 1x ./e2e/bench/
func BenchmarkOperator(b *testing.B) {
	bin := e2eutil.BosunBin(b, "run `make bench-e2e`")
	replicas := 1
	if v := os.Getenv("BOSUN_BENCH_REPLICAS"); v != "" {
		var err error
		if replicas, err = strconv.Atoi(v); err != nil || replicas < 0 {
			b.Fatalf("BOSUN_BENCH_REPLICAS=%q: want a replica count (0, 1, ...)", v)
		}
	}
	for _, n := range []int{1000, 10000} {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			for range b.N {
				benchOperator(b, bin, n, replicas)
			}
		})
	}
}

// env is one operator on a fresh data dir and repository.
type env struct {
	b          *testing.B
	bin        string
	repo       *testutil.GitRepo
	dataDir    string
	kubeconfig string
	op         *e2eutil.Operator
	clients    e2eutil.Clients
	replicas   int
	debugURL   string // the operator's --debug-listen, when a heap profile is asked for
}

func benchOperator(b *testing.B, bin string, n, replicas int) {
	b.StopTimer()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	e := startEnv(b, ctx, bin)
	e.replicas = replicas

	// The commit under test: n objects, perFile per file; committed before the clock starts.
	files := map[string]string{}
	for first := 0; first < n; first += perFile {
		files[fmt.Sprintf("apps/%04d.yaml", first/perFile)] = manifestFile(first, n, 0, replicas)
	}
	e.repo.Write(files)
	e.repo.Git(e.repo.Work, "add", "-A")
	e.repo.Git(e.repo.Work, "commit", "--quiet", "-m", fmt.Sprintf("%d objects", n))
	sha := e.repo.Git(e.repo.Work, "rev-parse", "HEAD")

	wctx, stopWatches := context.WithCancel(ctx)
	defer stopWatches()
	tr := newTracker(n)
	tr.watchAll(b, wctx, e.clients.Kube)

	profiled := e.profileCPU(fmt.Sprintf("%d", n))
	b.StartTimer()
	start := time.Now()
	e.repo.Git(e.repo.Work, "push", "--quiet", "origin", "main")
	pushed := time.Since(start)
	if out, err := e.cli(ctx, "sync", "--wait=false"); err != nil {
		b.Fatalf("bosun sync --wait=false: %v\n%s", err, out)
	}
	requested := time.Since(start)
	var visible time.Duration
	select {
	case at := <-tr.allAdded:
		visible = at.Sub(start)
	case <-e.op.Done():
		b.Fatalf("the operator exited; the watches had seen %d of %d objects ADDED", tr.addedCount(), n)
	case <-time.After(2 * time.Minute):
		out, _ := e.cli(ctx, "status")
		b.Fatalf("after 2 min the watches saw %d of %d objects ADDED; bosun status:\n%s", tr.addedCount(), n, out)
	}
	b.StopTimer()
	<-profiled
	fmt.Printf("bench: operator-git-push-%d %.3f s (git push alone; `bosun sync --wait=false` returned at %.3f s)\n",
		n, pushed.Seconds(), requested.Seconds())
	e.printSyncPhases(ctx, n, sha, start, visible)

	settled, quiet := e.settle(ctx, 90*time.Second)
	if n == 10000 {
		// Before the benchmark's own lists of every object through the API (printStore), whose
		// responses the operator builds in memory.
		e.printRSS(n, "", "the controllers quiet")
		time.Sleep(idleWait)
		e.printRSS(n, "-idle", fmt.Sprintf("%.0f s later, idle", idleWait.Seconds()))
	}
	e.printStore(ctx, n, settled, quiet)

	if n == 1000 {
		e.planTime(ctx, n)
	}
	if n == 10000 {
		e.oneObjectLatency(ctx, tr, n)
	}
	if r := tr.restarts(); r > 0 {
		fmt.Printf("bench-note: the benchmark's watches were restarted %d times\n", r)
	}

	// The ceiling: the same objects' JSON (as the watches received them) written straight to a
	// fresh etcd in batches, with the operator stopped so that it competes with nothing.
	kvs := tr.payloads(b)
	stopWatches()
	e.op.Stop()
	etcd := storetest.NewEtcd(b)
	rawStart := time.Now()
	if err := storetest.RawPutBatches(ctx, etcd.Client(), kvs, store.DefaultMaxTxnOps, store.DefaultBatchConcurrency); err != nil {
		b.Fatal(err)
	}
	raw := time.Since(rawStart)
	size := 0
	for _, v := range kvs {
		size += len(v)
	}
	fmt.Printf("bench: operator-push-to-visible-%d %.3f s limit=%.3f ratio=%.2f (raw: %d objects, %.1f MB of values as stored, %d per txn, %d txns in flight)\n",
		n, visible.Seconds(), raw.Seconds(), visible.Seconds()/raw.Seconds(), len(kvs), float64(size)/(1<<20),
		store.DefaultMaxTxnOps, store.DefaultBatchConcurrency)
}

// planTime pushes a branch that changes one of the n objects and prints how long `bosun plan
// --ref` (the CLI, through the operator's API: fetch, load and validate the whole tree, read what
// is live, diff) takes for it, median of three runs.
func (e *env) planTime(ctx context.Context, n int) {
	e.repo.Git(e.repo.Work, "checkout", "--quiet", "-b", "plan-bench")
	e.repo.Write(map[string]string{"apps/0000.yaml": manifestFile(0, n, 7, e.replicas)})
	e.repo.Git(e.repo.Work, "commit", "--quiet", "-am", "plan bench")
	e.repo.Git(e.repo.Work, "push", "--quiet", "origin", "plan-bench")
	e.repo.Git(e.repo.Work, "checkout", "--quiet", "main")
	var runs []time.Duration
	for range 3 {
		start := time.Now()
		out, err := e.cli(ctx, "plan", "--ref", "plan-bench")
		took := time.Since(start)
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 1 || !strings.Contains(out, "update") {
			e.b.Fatalf("bosun plan --ref plan-bench: want exit 1 (changes) with one update, got %v:\n%s", err, out)
		}
		runs = append(runs, took)
	}
	fmt.Printf("bench: operator-plan-%d %.0f ms (bosun plan --ref through the API, one object changed; runs %s)\n",
		n, ms(median(runs)), msList(runs))
}

// startEnv creates the repository with the namespaces, starts the operator with embedded etcd
// and a 1 h poll interval (only `bosun sync` triggers a sync), and waits for its first sync.
func startEnv(b *testing.B, ctx context.Context, bin string) *env {
	repo := testutil.NewGitRepo(b)
	files := map[string]string{"README.md": "benchmark fleet\n"}
	for i := range namespaceCount {
		files[fmt.Sprintf("namespaces/ns-%d.yaml", i)] = fmt.Sprintf("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: ns-%d\n", i)
	}
	repo.Write(files)
	first := repo.CommitAndPush("namespaces")

	dataDir := filepath.Join(b.TempDir(), "data")
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		b.Fatal(err)
	}
	listen := fmt.Sprintf("127.0.0.1:%d", e2eutil.FreePort(b, "127.0.0.1"))
	// The Go runtime's GC trace in the operator's log tells its live heap apart from its RSS.
	godebug := "gctrace=1"
	if v := os.Getenv("GODEBUG"); v != "" {
		godebug = v + "," + godebug
	}
	b.Setenv("GODEBUG", godebug)
	args := []string{"--repo", repo.Bare, "--listen", listen, "--interval", "1h"}
	var debugURL string
	if os.Getenv("BOSUN_BENCH_HEAP_PROFILE") != "" || os.Getenv("BOSUN_BENCH_CPU_PROFILE") != "" {
		// printRSS saves a heap profile there: what the live heap is made of.
		debug := fmt.Sprintf("127.0.0.1:%d", e2eutil.FreePort(b, "127.0.0.1"))
		args = append(args, "--debug-listen", debug)
		debugURL = "http://" + debug
	}
	if os.Getenv("BOSUN_BENCH_ETCD") == "external" {
		// To tell the operator's own memory from its embedded etcd's: etcd in this process.
		args = append(args, "--etcd-endpoints", strings.Join(storetest.NewEtcd(b).Endpoints(), ","))
	}
	op := e2eutil.StartOperator(b, bin, dataDir, args...)
	e := &env{b: b, bin: bin, repo: repo, dataDir: dataDir, kubeconfig: filepath.Join(dataDir, "admin.kubeconfig"), op: op, debugURL: debugURL}
	wctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	e.clients = e2eutil.NewClients(b, wctx, dataDir)
	gvr := schema.GroupVersionResource{Group: "bosun.dev", Version: "v1alpha1", Resource: "gitsyncs"}
	e2eutil.WaitFor(b, wctx, "the first sync", 100*time.Millisecond, func() (bool, string) {
		u, err := e.clients.Dyn.Resource(gvr).Get(wctx, "default", metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		applied, _, _ := unstructured.NestedString(u.Object, "status", "applied", "sha")
		return applied == first, "applied " + applied
	})
	return e
}

// cli runs the bosun CLI with the admin kubeconfig; safe from any goroutine.
func (e *env) cli(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, e.bin, append(args, "--kubeconfig", e.kubeconfig)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

var syncedLine = regexp.MustCompile(`^time=(\S+) .*msg=synced .*\bcommit=(\S+) .*\bduration=(\S+) phases="([^"]*)"`)

// syncLog is the operator log's "synced" line of one commit.
type syncLog struct {
	ended    time.Time
	duration time.Duration
	phases   string
}

// syncedLog waits up to 30 s for the operator log's "synced" line of commit sha.
func (e *env) syncedLog(ctx context.Context, sha string) (syncLog, bool) {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		data, err := os.ReadFile(e.op.LogPath)
		if err != nil {
			e.b.Fatal(err)
		}
		for _, line := range strings.Split(string(data), "\n") {
			if m := syncedLine.FindStringSubmatch(line); m != nil && strings.HasPrefix(sha, m[2]) {
				var l syncLog
				l.ended, _ = time.Parse(time.RFC3339Nano, m[1])
				l.duration, _ = time.ParseDuration(m[3])
				l.phases = m[4]
				return l, true
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	e.b.Errorf("the operator's log has no \"synced\" line for commit %s", sha)
	return syncLog{}, false
}

// printSyncPhases prints the sync of commit sha from the operator's log: its duration and phases,
// and when it ended next to when the watches saw the last object (both from start, the push).
func (e *env) printSyncPhases(ctx context.Context, n int, sha string, start time.Time, visible time.Duration) {
	l, ok := e.syncedLog(ctx, sha)
	if !ok {
		return
	}
	fmt.Printf("bench: operator-sync-%d %.3f s phases=%q (the operator's log; after the push started: sync ended %.3f s, the watches saw the last object %.3f s)\n",
		n, l.duration.Seconds(), l.phases, l.ended.Sub(start).Seconds(), visible.Seconds())
}

// settle waits until the store's revision stops moving for three seconds (the controllers are
// done with the fan-out), at most max; it returns how long that took and whether it got quiet.
func (e *env) settle(ctx context.Context, max time.Duration) (time.Duration, bool) {
	start := time.Now()
	last, still := int64(-1), 0
	for time.Since(start) < max && ctx.Err() == nil {
		l, err := e.clients.Kube.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
		if err != nil {
			e.b.Fatalf("listing namespaces: %v", err)
		}
		rev, _ := strconv.ParseInt(l.ResourceVersion, 10, 64)
		if rev == last {
			still++
			if still == 3 {
				return time.Since(start), true
			}
		} else {
			last, still = rev, 0
		}
		time.Sleep(time.Second)
	}
	return time.Since(start), false
}

// printStore prints what the store holds, counted through the API.
func (e *env) printStore(ctx context.Context, n int, settled time.Duration, quiet bool) {
	core := func(r string) schema.GroupVersionResource { return corev1.SchemeGroupVersion.WithResource(r) }
	apps := func(r string) schema.GroupVersionResource {
		return schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: r}
	}
	total := 0
	var parts []string
	for _, gvr := range []schema.GroupVersionResource{
		core("namespaces"), core("configmaps"), core("services"), core("endpoints"),
		apps("deployments"), apps("replicasets"), core("pods"), core("events"),
	} {
		l, err := e.clients.Dyn.Resource(gvr).List(ctx, metav1.ListOptions{})
		if err != nil {
			e.b.Fatalf("listing %s: %v", gvr.Resource, err)
		}
		total += len(l.Items)
		parts = append(parts, fmt.Sprintf("%s=%d", gvr.Resource, len(l.Items)))
	}
	state := fmt.Sprintf("quiet after %.0f s", settled.Seconds())
	if !quiet {
		state = fmt.Sprintf("still writing after %.0f s", settled.Seconds())
	}
	fmt.Printf("bench: operator-store-objects-%d %d objects (%s; controllers %s)\n", n, total, strings.Join(parts, " "), state)
}

// idleWait is how long the benchmark leaves the operator idle before its second RSS reading:
// long enough for the operator's idle memory release (two of its 10 s checks).
const idleWait = 25 * time.Second

// printRSS prints the operator process's resident memory from /proc as operator-rss-N<suffix>;
// when says at what point.
func (e *env) printRSS(n int, suffix, when string) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", e.op.Pid()))
	if err != nil {
		e.b.Fatalf("reading the operator's memory: %v", err)
	}
	kb := map[string]int{}
	for _, line := range strings.Split(string(data), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		if f := strings.Fields(v); len(f) == 2 && f[1] == "kB" {
			kb[k], _ = strconv.Atoi(f[0])
		}
	}
	heap := "no GC trace in the log"
	if log, err := os.ReadFile(e.op.LogPath); err == nil {
		if m := gcTrace.FindAllStringSubmatch(string(log), -1); m != nil {
			last := m[len(m)-1]
			heap = fmt.Sprintf("Go heap live after the last GC %s MB, goal %s MB", last[1], last[2])
		}
	}
	db := "etcd db size unknown"
	if files, _ := filepath.Glob(filepath.Join(e.dataDir, "*", "member", "snap", "db")); len(files) == 1 {
		if fi, err := os.Stat(files[0]); err == nil {
			db = fmt.Sprintf("etcd db file %.0f MB", float64(fi.Size())/(1<<20))
		}
	}
	name := fmt.Sprintf("operator-rss-%d%s", n, suffix)
	goMem := e.goMemory()
	if path := os.Getenv("BOSUN_BENCH_HEAP_PROFILE"); path != "" && e.debugURL != "" {
		e.saveHeapProfile(fmt.Sprintf("%s-%d%s", path, n, suffix))
	}
	fmt.Printf("bench: %s %.0f MB (%s; RssAnon %.0f MB, RssFile %.0f MB of which %s, VmHWM %.0f MB; %s; %s; %s; goal < 150 MB)\n",
		name, mb(kb["VmRSS"]), when, mb(kb["RssAnon"]), mb(kb["RssFile"]), e.fileRSS(), mb(kb["VmHWM"]), heap, goMem, db)
}

// fileRSS splits the operator's file-backed resident memory between the bosun executable and
// etcd's database file (which bbolt maps), from /proc/PID/smaps.
func (e *env) fileRSS() string {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps", e.op.Pid()))
	if err != nil {
		return "unknown (" + err.Error() + ")"
	}
	exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", e.op.Pid()))
	var exeKB, dbKB int
	var path string
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) >= 5 && strings.Contains(f[0], "-") && !strings.HasSuffix(f[0], ":"):
			path = "" // a mapping's header: address range, perms, offset, device, inode[, path]
			if len(f) >= 6 {
				path = f[5]
			}
		case len(f) == 3 && f[0] == "Rss:":
			n, _ := strconv.Atoi(f[1])
			switch {
			case path == exe:
				exeKB += n
			case strings.HasSuffix(path, "/member/snap/db"):
				dbKB += n
			}
		}
	}
	return fmt.Sprintf("executable %.0f MB, etcd db %.0f MB", mb(exeKB), mb(dbKB))
}

// goMemory reads the Go runtime's view of the operator's memory from its /metrics: what the heap
// holds in use, what it keeps free without having returned it to the OS, and what the runtime
// took from the OS in all, to tell the heap's share of RssAnon from the rest.
func (e *env) goMemory() string {
	raw, err := e.clients.Kube.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(context.Background())
	if err != nil {
		return "no /metrics: " + err.Error()
	}
	v := map[string]float64{}
	for _, line := range strings.Split(string(raw), "\n") {
		if k, val, ok := strings.Cut(line, " "); ok && (strings.HasPrefix(k, "go_memstats_") || k == "process_cpu_seconds_total") {
			v[k], _ = strconv.ParseFloat(val, 64)
		}
	}
	m := func(k string) float64 { return v["go_memstats_"+k] / (1 << 20) }
	return fmt.Sprintf("Go runtime: heap in use %.0f MB, heap free not returned %.0f MB, from the OS in all %.0f MB; operator CPU so far %.1f s",
		m("heap_inuse_bytes"), m("heap_idle_bytes")-m("heap_released_bytes"), m("sys_bytes"), v["process_cpu_seconds_total"])
}

// profileCPU records the operator's CPU profile for the next 2 s (the push and its sync) into
// $BOSUN_BENCH_CPU_PROFILE-<name> when that variable is set; the channel closes when it is saved.
func (e *env) profileCPU(name string) <-chan struct{} {
	done := make(chan struct{})
	path := os.Getenv("BOSUN_BENCH_CPU_PROFILE")
	if path == "" || e.debugURL == "" {
		close(done)
		return done
	}
	go func() {
		defer close(done)
		e.saveProfile(e.debugURL+"/debug/pprof/profile?seconds=2", path+"-"+name, "CPU")
	}()
	time.Sleep(50 * time.Millisecond) // the profile has begun
	return done
}

// saveHeapProfile writes the operator's heap profile (after a GC) to path.
func (e *env) saveHeapProfile(path string) {
	e.saveProfile(e.debugURL+"/debug/pprof/heap?gc=1", path, "heap")
}

// saveProfile saves the pprof profile served at url as path.
func (e *env) saveProfile(url, path, kind string) {
	resp, err := http.Get(url)
	if err != nil {
		e.b.Errorf("reading the operator's %s profile: %v", kind, err)
		return
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("%s: %s", resp.Status, data)
	}
	if err == nil {
		err = os.WriteFile(path, data, 0o644)
	}
	if err != nil {
		e.b.Errorf("saving the operator's %s profile: %v", kind, err)
		return
	}
	fmt.Printf("bench-note: %s profile in %s (go tool pprof %s)\n", kind, path, path)
}

// gcTrace matches a GODEBUG=gctrace=1 line's heap figures: before->after->live MB, goal.
var gcTrace = regexp.MustCompile(`(?m)^gc \d+ @.* \d+->\d+->(\d+) MB, (\d+) MB goal`)

func mb(kb int) float64 { return float64(kb) / 1024 }

// oneObjectLatency changes one ConfigMap (ns-0/cfg-0), pushes, runs `bosun sync` and measures
// push start → the watch sees the change, five times; it prints the median.
func (e *env) oneObjectLatency(ctx context.Context, tr *tracker, n int) {
	const runs = 5
	var seen, cli []time.Duration
	var phases []string
	for k := 1; k <= runs; k++ {
		e.repo.Write(map[string]string{"apps/0000.yaml": manifestFile(0, n, k, e.replicas)})
		e.repo.Git(e.repo.Work, "commit", "--quiet", "-am", fmt.Sprintf("cfg-0 revision %d", k))
		sha := e.repo.Git(e.repo.Work, "rev-parse", "HEAD")
		want := strconv.Itoa(k)
		matched := tr.expect(func(resource string, typ watch.EventType, obj runtime.Object) bool {
			cm, ok := obj.(*corev1.ConfigMap)
			return ok && typ == watch.Modified && cm.Namespace == "ns-0" && cm.Name == "cfg-0" && cm.Data["revision"] == want
		})
		start := time.Now()
		e.repo.Git(e.repo.Work, "push", "--quiet", "origin", "main")
		type result struct {
			out  string
			err  error
			took time.Duration
		}
		done := make(chan result, 1)
		go func() {
			out, err := e.cli(ctx, "sync", "--timeout", "60s")
			done <- result{out, err, time.Since(start)}
		}()
		select {
		case at := <-matched:
			seen = append(seen, at.Sub(start))
		case <-time.After(60 * time.Second):
			e.b.Fatalf("the watch did not see cfg-0 at revision %d within 60 s", k)
		}
		r := <-done
		if r.err != nil {
			e.b.Fatalf("bosun sync: %v\n%s", r.err, r.out)
		}
		cli = append(cli, r.took)
		if l, ok := e.syncedLog(ctx, sha); ok {
			phases = append(phases, fmt.Sprintf("%s: %s", l.duration.Round(time.Millisecond), l.phases))
		}
	}
	fmt.Printf("bench: operator-one-object-latency %.0f ms (push start → watch sees the change, median of %d: %s; with %d objects)\n",
		ms(median(seen)), runs, msList(seen), n)
	fmt.Printf("bench: operator-one-object-sync-cli %.0f ms (push start → `bosun sync` exits, median of %d: %s)\n",
		ms(median(cli)), runs, msList(cli))
	fmt.Printf("bench-note: operator syncs of the one-object commits (the operator's log): %s\n", strings.Join(phases, "; "))
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func msList(d []time.Duration) string {
	parts := make([]string, len(d))
	for i, x := range d {
		parts[i] = fmt.Sprintf("%.0f", ms(x))
	}
	return strings.Join(parts, " ") + " ms"
}

// tracker follows the benchmark's objects through client-go watches on the API.
type tracker struct {
	mu       sync.Mutex
	want     int
	added    map[string]runtime.Object // resource/namespace/name → object as first seen
	allAdded chan time.Time            // receives when want objects have been ADDED
	match    func(resource string, typ watch.EventType, obj runtime.Object) bool
	matched  chan time.Time
	restart  int
}

func newTracker(want int) *tracker {
	return &tracker{want: want, added: make(map[string]runtime.Object, want), allAdded: make(chan time.Time, 1)}
}

// watchAll lists each watched kind (by the benchmark's label) for a resourceVersion and watches
// from there until ctx ends; a watch that ends early resumes from the last version it saw.
func (t *tracker) watchAll(b *testing.B, ctx context.Context, kube *kubernetes.Clientset) {
	for _, w := range watched {
		var list func(context.Context, metav1.ListOptions) (string, error)
		var watchFn func(context.Context, metav1.ListOptions) (watch.Interface, error)
		switch w.resource {
		case "configmaps":
			list = func(ctx context.Context, o metav1.ListOptions) (string, error) {
				l, err := kube.CoreV1().ConfigMaps("").List(ctx, o)
				return rvOf(l, err)
			}
			watchFn = kube.CoreV1().ConfigMaps("").Watch
		case "services":
			list = func(ctx context.Context, o metav1.ListOptions) (string, error) {
				l, err := kube.CoreV1().Services("").List(ctx, o)
				return rvOf(l, err)
			}
			watchFn = kube.CoreV1().Services("").Watch
		case "deployments":
			list = func(ctx context.Context, o metav1.ListOptions) (string, error) {
				l, err := kube.AppsV1().Deployments("").List(ctx, o)
				return rvOf(l, err)
			}
			watchFn = kube.AppsV1().Deployments("").Watch
		}
		rv, err := list(ctx, metav1.ListOptions{LabelSelector: benchSelector})
		if err != nil {
			b.Fatalf("listing %s: %v", w.resource, err)
		}
		wi, err := watchFn(ctx, metav1.ListOptions{LabelSelector: benchSelector, ResourceVersion: rv})
		if err != nil {
			b.Fatalf("watching %s: %v", w.resource, err)
		}
		go func() {
			for {
				for ev := range wi.ResultChan() {
					at := time.Now()
					if ev.Type == watch.Error && ctx.Err() != nil {
						break // client-go's report of the cancelled stream
					}
					if ev.Type == watch.Error {
						b.Errorf("watch of %s from resourceVersion %s: %v", w.resource, rv, ev.Object)
						wi.Stop()
						return
					}
					if m, err := metaOf(ev.Object); err == nil {
						rv = m.GetResourceVersion()
						ev.Object.GetObjectKind().SetGroupVersionKind(w.gvk)
						t.observe(w.resource, m, ev, at)
					}
				}
				wi.Stop()
				for ctx.Err() == nil {
					t.mu.Lock()
					t.restart++
					t.mu.Unlock()
					if wi, err = watchFn(ctx, metav1.ListOptions{LabelSelector: benchSelector, ResourceVersion: rv}); err == nil {
						break
					}
					time.Sleep(100 * time.Millisecond)
				}
				if ctx.Err() != nil {
					return
				}
			}
		}()
	}
}

func rvOf[L interface{ GetResourceVersion() string }](l L, err error) (string, error) {
	if err != nil {
		return "", err
	}
	return l.GetResourceVersion(), nil
}

func metaOf(obj runtime.Object) (metav1.Object, error) {
	m, ok := obj.(metav1.Object)
	if !ok {
		return nil, fmt.Errorf("%T has no object metadata", obj)
	}
	return m, nil
}

func (t *tracker) observe(resource string, m metav1.Object, ev watch.Event, at time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if ev.Type == watch.Added && len(t.added) < t.want {
		key := resource + "/" + m.GetNamespace() + "/" + m.GetName()
		if _, dup := t.added[key]; !dup {
			t.added[key] = ev.Object
			if len(t.added) == t.want {
				t.allAdded <- at
			}
		}
	}
	if t.match != nil && t.match(resource, ev.Type, ev.Object) {
		t.matched <- at
		t.match = nil
	}
}

// expect arms a one-shot match: the returned channel receives when an event satisfies f.
func (t *tracker) expect(f func(resource string, typ watch.EventType, obj runtime.Object) bool) <-chan time.Time {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.match, t.matched = f, make(chan time.Time, 1)
	return t.matched
}

func (t *tracker) addedCount() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.added)
}

func (t *tracker) restarts() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.restart
}

// payloads is every object as first ADDED, encoded as the store stores it, keyed under a
// prefix of its own.
func (t *tracker) payloads(b *testing.B) map[string][]byte {
	t.mu.Lock()
	defer t.mu.Unlock()
	kvs := make(map[string][]byte, len(t.added))
	for key, obj := range t.added {
		gvk := obj.GetObjectKind().GroupVersionKind()
		res, ok := resource.ForKind(gvk.GroupVersion().String(), gvk.Kind)
		if !ok {
			b.Fatalf("%s: no resource for %v", key, gvk)
		}
		data, err := store.Encode(res, obj.(resource.Object))
		if err != nil {
			b.Fatal(err)
		}
		kvs["/raw-ceiling/"+key] = data
	}
	return kvs
}
