package operator

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bosun-gitops/bosun/internal/resource"
	"github.com/bosun-gitops/bosun/internal/testutil"
	"github.com/bosun-gitops/bosun/operator/store"
	"github.com/bosun-gitops/bosun/operator/store/storetest"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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
	log *bytes.Buffer
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
	c := &childOperator{cmd: cmd, log: &bytes.Buffer{}}
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

// TestLeaderFailover runs two operators against one etcd, kills the leader with SIGKILL and
// checks that the other takes over, keeps reconciling, and duplicates nothing.
func TestLeaderFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("starts operator processes")
	}
	etcd := storetest.NewEtcd(t)
	st := store.New(etcd.Client(), store.Options{})
	ctx := context.Background()
	repo := testutil.NewGitRepo(t)
	repo.Write(map[string]string{"apps/web.yaml": deploymentManifest(3)})
	repo.CommitAndPush("web with 3 replicas")
	endpoints := strings.Join(etcd.Endpoints(), ",")

	a := startChildOperator(t, "op-a", endpoints, repo.Bare)
	waitFor(t, 60*time.Second, "op-a to lead and create 3 pods", func() error {
		if h := leaderHolder(ctx, st); h != "op-a" {
			return fmt.Errorf("lease holder %q", h)
		}
		return podCount(ctx, st, 3)
	})
	startChildOperator(t, "op-b", endpoints, repo.Bare)
	time.Sleep(2 * time.Second) // let op-b start campaigning
	if h := leaderHolder(ctx, st); h != "op-a" {
		t.Fatalf("op-b took the lead while op-a was alive (holder %q)", h)
	}

	a.kill()
	killed := time.Now()
	waitFor(t, 60*time.Second, "op-b to take over", func() error {
		if h := leaderHolder(ctx, st); h != "op-b" {
			return fmt.Errorf("lease holder %q", h)
		}
		return nil
	})
	t.Logf("op-b led %.1fs after op-a was killed (etcd session TTL %ds)", time.Since(killed).Seconds(), leaseTTLSeconds)

	repo.Write(map[string]string{"apps/web.yaml": deploymentManifest(5)})
	repo.CommitAndPush("scale web to 5")
	waitFor(t, 60*time.Second, "op-b to scale to 5 pods", func() error { return podCount(ctx, st, 5) })
	time.Sleep(2 * time.Second) // any duplicate creation would show by now
	if err := podCount(ctx, st, 5); err != nil {
		t.Fatal(err)
	}
	rsets, err := st.List(ctx, resource.ReplicaSets, "default", store.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(rsets.Items) != 1 {
		t.Fatalf("%d ReplicaSets after failover, want 1 (the template did not change)", len(rsets.Items))
	}
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
