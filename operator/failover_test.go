package operator

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/bosun-gitops/bosun/internal/resource"
	"github.com/bosun-gitops/bosun/internal/testutil"
	"github.com/bosun-gitops/bosun/operator/store"
	"github.com/bosun-gitops/bosun/operator/store/storetest"
	"github.com/google/go-cmp/cmp"
	clientv3 "go.etcd.io/etcd/client/v3"
	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
)

// TestHelperOperator is not a test: TestLeaderFailover runs the test binary again with
// BOSUN_TEST_OPERATOR set, and this function then runs an operator until it is killed.
func TestHelperOperator(t *testing.T) {
	if os.Getenv("BOSUN_TEST_OPERATOR") == "" {
		t.Skip("helper process for TestLeaderFailover")
	}
	cfg := Config{
		DataDir:  os.Getenv("BOSUN_TEST_DATA_DIR"),
		Repo:     os.Getenv("BOSUN_TEST_REPO"),
		Interval: time.Second,
		Listen:   "127.0.0.1:0",
		Etcd:     store.ClientConfig{Endpoints: strings.Split(os.Getenv("BOSUN_TEST_ETCD"), ",")},
		Identity: os.Getenv("BOSUN_TEST_IDENTITY"),
		Logger:   slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})),
	}
	if err := Run(context.Background(), cfg); err != nil {
		fmt.Fprintln(os.Stderr, "operator:", err)
		os.Exit(1)
	}
}

type childOperator struct {
	cmd *exec.Cmd
	log *testutil.SyncBuffer
}

func startChildOperator(t *testing.T, identity, etcd, repo string) *childOperator {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperOperator$", "-test.v")
	cmd.Env = append(os.Environ(),
		"BOSUN_TEST_OPERATOR=1",
		"BOSUN_TEST_DATA_DIR="+filepath.Join(t.TempDir(), identity),
		"BOSUN_TEST_REPO="+repo,
		"BOSUN_TEST_ETCD="+etcd,
		"BOSUN_TEST_IDENTITY="+identity,
	)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	c := &childOperator{cmd: cmd, log: &testutil.SyncBuffer{}}
	cmd.Stdout, cmd.Stderr = c.log, c.log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.kill()
		if t.Failed() {
			t.Logf("operator %s log:\n%s", identity, c.log.String())
		}
	})
	return c
}

func (c *childOperator) kill() {
	if c.cmd.ProcessState == nil {
		syscall.Kill(-c.cmd.Process.Pid, syscall.SIGKILL)
		c.cmd.Wait()
	}
}

func (c *childOperator) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if err := syscall.Kill(-c.cmd.Process.Pid, sig); err != nil {
		t.Fatalf("sending %v to the operator's process group: %v", sig, err)
	}
}

func deploymentManifest(replicas int) string {
	return fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: default}
spec:
  replicas: %d
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: busybox:1.36}]
`, replicas)
}

// TestLeaderFailover runs two operators against one etcd and checks, from the outside:
//   - the leader keeps the kube-system/bosun-operator Lease current (renewTime advances by less
//     than leaseDurationSeconds at a time);
//   - the standby writes nothing to etcd while the leader lives;
//   - after the leader is SIGKILLed the standby takes over before the etcd session TTL plus
//     three keepalive periods (the time is printed), and keeps reconciling;
//   - nothing was created twice over the whole run: every creation and deletion of pods,
//     ReplicaSets and Deployments is counted from a watch started before the first operator,
//     so a duplicate that was created and deleted again is caught too.
func TestLeaderFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("starts operator processes")
	}
	etcd := storetest.NewEtcd(t)
	client := etcd.Client()
	st := store.New(client, store.Options{})
	ctx := context.Background()
	repo := testutil.NewGitRepo(t)
	repo.Write(map[string]string{"apps/web.yaml": deploymentManifest(3)})
	repo.CommitAndPush("web with 3 replicas")
	endpoints := strings.Join(etcd.Endpoints(), ",")
	changes := watchChanges(t, st, resource.Pods, resource.ReplicaSets, resource.Deployments)

	a := startChildOperator(t, "op-a", endpoints, repo.Bare)
	waitFor(t, 60*time.Second, "op-a to lead and create 3 pods", func() error {
		if h := leaderHolder(ctx, st); h != "op-a" {
			return fmt.Errorf("lease holder %q", h)
		}
		return podCount(ctx, st, 3)
	})
	checkLeaseRenewed(t, st, "op-a")

	startChildOperator(t, "op-b", endpoints, repo.Bare)
	waitFor(t, 60*time.Second, "op-b to campaign", func() error {
		resp, err := client.Get(ctx, electionPrefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
		if err != nil {
			return err
		}
		if resp.Count != 2 {
			return fmt.Errorf("%d candidates under %s, want 2", resp.Count, electionPrefix)
		}
		return nil
	})
	checkStandbyWritesNothing(t, client, a)
	if h := leaderHolder(ctx, st); h != "op-a" {
		t.Fatalf("op-b took the lead while op-a was alive (holder %q)", h)
	}

	a.kill()
	killed := time.Now()
	var lease *coordinationv1.Lease
	waitFor(t, 120*time.Second, "op-b to take over", func() error {
		lease = leaderLease(ctx, st)
		if lease == nil || lease.Spec.HolderIdentity == nil || *lease.Spec.HolderIdentity != "op-b" {
			return fmt.Errorf("lease %+v", lease)
		}
		return nil
	})
	if lease.Spec.AcquireTime == nil {
		t.Fatalf("op-b's lease has no acquireTime: %+v", lease.Spec)
	}
	// op-b's clock stamped acquireTime; the machine has one clock.
	takeover := lease.Spec.AcquireTime.Sub(killed)
	// op-a's session lease was renewed at most one keepalive period (TTL/3) before the kill and
	// expires TTL after its last renewal; three more periods cover op-b noticing and writing.
	bound := (leaseTTLSeconds + 3*leaseTTLSeconds/3) * time.Second
	fmt.Printf("bench: leader-takeover %.2f s limit=%.0f ratio=%.2f\n", takeover.Seconds(), bound.Seconds(), takeover.Seconds()/bound.Seconds())
	t.Logf("op-b led %.2fs after op-a was killed (etcd session TTL %ds, bound %s)", takeover.Seconds(), leaseTTLSeconds, bound)
	if takeover > bound {
		t.Errorf("takeover took %s, more than the session TTL plus three keepalive periods (%s)", takeover, bound)
	}
	if got := ptrValue(lease.Spec.LeaseTransitions); got != 1 {
		t.Errorf("leaseTransitions = %d after one failover, want 1", got)
	}
	checkLeaseRenewed(t, st, "op-b")

	repo.Write(map[string]string{"apps/web.yaml": deploymentManifest(5)})
	repo.CommitAndPush("scale web to 5")
	waitFor(t, 60*time.Second, "op-b to scale to 5 pods", func() error { return podCount(ctx, st, 5) })
	waitFor(t, 60*time.Second, "the ReplicaSet status to show 5 replicas", func() error {
		list, err := st.List(ctx, resource.ReplicaSets, "default", store.ListOptions{})
		if err != nil {
			return err
		}
		for _, o := range list.Items {
			rs := o.(*appsv1.ReplicaSet)
			if rs.Status.Replicas != 5 || rs.Status.ObservedGeneration != rs.Generation {
				return fmt.Errorf("replica set %s status %+v at generation %d", rs.Name, rs.Status, rs.Generation)
			}
		}
		return nil
	})
	time.Sleep(2 * time.Second) // room for a stray duplicate to show in the watch

	// 3 pods, then 2 more; one ReplicaSet (the template never changed); one Deployment.
	want := map[string]int{"created pods": 5, "created replicasets.apps": 1, "created deployments.apps": 1}
	if diff := cmp.Diff(want, changes.counts()); diff != "" {
		t.Errorf("creations and deletions seen by the watch (-want +got):\n%s\n%s", diff, changes.String())
	}
}

// electionPrefix holds one key per campaigning operator.
const electionPrefix = electionName + "/"

// checkStandbyWritesNothing pauses the leader (SIGSTOP) for a few seconds, well within its
// session TTL, and checks that etcd's revision does not move meanwhile: with the leader frozen
// any write would be the standby's.
func checkStandbyWritesNothing(t *testing.T, client *clientv3.Client, leader *childOperator) {
	t.Helper()
	ctx := context.Background()
	leader.signal(t, syscall.SIGSTOP)
	defer leader.signal(t, syscall.SIGCONT)
	time.Sleep(300 * time.Millisecond) // requests the leader sent before it stopped land
	before, err := client.Get(ctx, electionPrefix, clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	rev := before.Header.Revision
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	writes := client.Watch(wctx, "", clientv3.WithPrefix(), clientv3.WithRev(rev+1))
	time.Sleep(3 * time.Second)
	after, err := client.Get(ctx, electionPrefix, clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	if after.Header.Revision == rev {
		return
	}
	var keys []string
	timeout := time.After(10 * time.Second)
	for len(keys) == 0 {
		select {
		case resp := <-writes:
			for _, ev := range resp.Events {
				keys = append(keys, fmt.Sprintf("%s %s", ev.Type, ev.Kv.Key))
			}
		case <-timeout:
			keys = append(keys, "(the watch showed nothing)")
		}
	}
	t.Errorf("etcd revision moved from %d to %d while only the standby ran: %v", rev, after.Header.Revision, keys)
}

// checkLeaseRenewed waits until the leader Lease's renewTime advances under holder and checks
// that it advanced by less than leaseDurationSeconds: the Lease never looked expired.
func checkLeaseRenewed(t *testing.T, st *store.Store, holder string) {
	t.Helper()
	ctx := context.Background()
	first := leaderLease(ctx, st)
	if first == nil || first.Spec.RenewTime == nil || ptrValue(first.Spec.LeaseDurationSeconds) != leaseTTLSeconds {
		t.Fatalf("leader lease %+v: want renewTime and leaseDurationSeconds %d", first, leaseTTLSeconds)
	}
	var next *coordinationv1.Lease
	waitFor(t, 60*time.Second, "the leader lease's renewTime to advance", func() error {
		next = leaderLease(ctx, st)
		if next == nil || next.Spec.RenewTime == nil || !next.Spec.RenewTime.After(first.Spec.RenewTime.Time) {
			return fmt.Errorf("renewTime still %v", first.Spec.RenewTime)
		}
		return nil
	})
	if h := ptrValue(next.Spec.HolderIdentity); h != holder {
		t.Errorf("renewed lease names %q, want %q", h, holder)
	}
	gap := next.Spec.RenewTime.Sub(first.Spec.RenewTime.Time)
	t.Logf("%s renewed the leader lease %.2fs after the previous renewal", holder, gap.Seconds())
	if gap >= leaseTTLSeconds*time.Second {
		t.Errorf("renewTime advanced by %s, not within leaseDurationSeconds (%ds): the Lease looked expired meanwhile", gap, leaseTTLSeconds)
	}
}

// changeLog counts the creations and deletions a store watch reports.
type changeLog struct {
	mu    sync.Mutex
	count map[string]int
	names []string
}

func watchChanges(t *testing.T, st *store.Store, kinds ...*resource.Resource) *changeLog {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	rev, err := st.CurrentRevision(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c := &changeLog{count: map[string]int{}}
	for _, res := range kinds {
		ch, err := st.Watch(ctx, res, "", store.WatchOptions{ResourceVersion: rev})
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			for ev := range ch {
				var what string
				switch ev.Type {
				case watch.Added:
					what = "created " + res.String()
				case watch.Deleted:
					what = "deleted " + res.String()
				case watch.Error:
					what = fmt.Sprintf("watch of %s failed: %v", res, ev.Err)
				default:
					continue
				}
				c.mu.Lock()
				c.count[what]++
				if ev.Object != nil {
					c.names = append(c.names, what+" "+ev.Object.GetNamespace()+"/"+ev.Object.GetName())
				}
				c.mu.Unlock()
			}
		}()
	}
	return c
}

func (c *changeLog) counts() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.count)
}

func (c *changeLog) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return strings.Join(c.names, "\n")
}

func ptrValue[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

func leaderLease(ctx context.Context, st *store.Store) *coordinationv1.Lease {
	obj, err := st.Get(ctx, resource.Leases, metav1.NamespaceSystem, leaderLeaseName)
	if err != nil {
		return nil
	}
	return obj.(*coordinationv1.Lease)
}

func leaderHolder(ctx context.Context, st *store.Store) string {
	obj, err := st.Get(ctx, resource.Leases, metav1.NamespaceSystem, leaderLeaseName)
	if err != nil {
		return ""
	}
	l := obj.(*coordinationv1.Lease)
	if l.Spec.HolderIdentity == nil {
		return ""
	}
	return *l.Spec.HolderIdentity
}

// podCount checks that exactly n live pods exist in default.
func podCount(ctx context.Context, st *store.Store, n int) error {
	list, err := st.List(ctx, resource.Pods, "default", store.ListOptions{})
	if err != nil {
		return err
	}
	live := 0
	for _, o := range list.Items {
		if o.(*corev1.Pod).DeletionTimestamp == nil {
			live++
		}
	}
	if live != n {
		return fmt.Errorf("%d pods, want %d", live, n)
	}
	return nil
}

func waitFor(t *testing.T, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for time.Now().Before(deadline) {
		if err = cond(); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s: not within %s: %v", what, timeout, err)
}
