package operator

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/bosun-gitops/bosun/internal/resource"
	"github.com/bosun-gitops/bosun/internal/testutil"
	"github.com/bosun-gitops/bosun/operator/simnodes"
	bosunv1 "github.com/bosun-gitops/bosun/repo-layout/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// testCluster is a whole operator running in the test process against a real Git repository,
// with simulated nodes registered through its API.
type testCluster struct {
	t       testing.TB
	repo    *testutil.GitRepo
	dataDir string
	op      *Operator
	cancel  context.CancelFunc
	done    chan error
	client  kubernetes.Interface
	sim     *simnodes.Cluster
	simStop context.CancelFunc
}

func testLogger(t testing.TB) *slog.Logger {
	level := slog.LevelWarn
	if os.Getenv("BOSUN_TEST_LOG") != "" {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: level}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}

// startCluster starts an operator on dataDir syncing repo (which must have a first commit);
// opts adjust its configuration.
func startCluster(t testing.TB, repo *testutil.GitRepo, dataDir string, opts ...func(*Config)) *testCluster {
	t.Helper()
	cfg := Config{
		DataDir: dataDir, Repo: repo.Bare, Interval: time.Second, Listen: "127.0.0.1:0",
		Logger: testLogger(t),
	}
	for _, o := range opts {
		o(&cfg)
	}
	op, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &testCluster{t: t, repo: repo, dataDir: dataDir, op: op, cancel: cancel, done: make(chan error, 1)}
	go func() { c.done <- op.Run(ctx) }()
	select {
	case <-op.Ready():
	case err := <-c.done:
		t.Fatalf("operator stopped: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("operator not ready within 60s")
	}
	t.Cleanup(c.stop)
	rc, err := clientcmd.BuildConfigFromFlags("", op.Server().AdminKubeconfigPath())
	if err != nil {
		t.Fatal(err)
	}
	rc.QPS, rc.Burst = 500, 1000
	if c.client, err = kubernetes.NewForConfig(rc); err != nil {
		t.Fatal(err)
	}
	return c
}

// stop ends the operator (and the simulated nodes) and waits for it.
func (c *testCluster) stop() {
	if c.simStop != nil {
		c.simStop()
		c.simStop = nil
	}
	if c.cancel != nil {
		c.cancel()
		c.cancel = nil
		select {
		case <-c.done:
		case <-time.After(30 * time.Second):
			c.t.Error("operator did not stop within 30s")
		}
	}
}

// simulate registers simulated nodes through the API.
func (c *testCluster) simulate(nodes ...simnodes.NodeSpec) {
	c.t.Helper()
	sim, err := simnodes.New(simnodes.Config{Client: c.client, Logger: testLogger(c.t), HeartbeatInterval: time.Second, StartDelay: 100 * time.Millisecond})
	if err != nil {
		c.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	c.sim, c.simStop = sim, cancel
	go sim.Run(ctx)
	if err := sim.AddNodes(ctx, nodes...); err != nil {
		c.t.Fatal(err)
	}
}

// push commits the files and asks the operator to sync at once, waiting until it has.
func (c *testCluster) push(msg string, files map[string]string, remove ...string) {
	c.t.Helper()
	c.repo.Write(files)
	c.repo.Remove(remove...)
	sha := c.repo.CommitAndPush(msg)
	c.eventually(60*time.Second, "commit "+sha[:7]+" applied", func() error {
		obj, err := c.op.Store().Get(context.Background(), resource.GitSyncs, "", "default")
		if err != nil {
			return err
		}
		gs := obj.(*bosunv1.GitSync)
		if gs.Status.Applied.SHA != sha {
			return fmt.Errorf("applied %q, state %s: %s", gs.Status.Applied.SHA, gs.Status.State, gs.Status.Message)
		}
		return nil
	})
}

func (c *testCluster) eventually(timeout time.Duration, what string, cond func() error) {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for time.Now().Before(deadline) {
		if err = cond(); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	c.t.Fatalf("%s: not within %s: %v", what, timeout, err)
}

// pods lists the live (not terminating) pods in ns matching the label selector.
func (c *testCluster) pods(ns, selector string) []corev1.Pod {
	c.t.Helper()
	l, err := c.client.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		c.t.Fatal(err)
	}
	var out []corev1.Pod
	for _, p := range l.Items {
		if p.DeletionTimestamp == nil {
			out = append(out, p)
		}
	}
	return out
}

// runningPods checks that exactly n pods match and all are bound and Running.
func (c *testCluster) runningPods(ns, selector string, n int) error {
	pods := c.pods(ns, selector)
	if len(pods) != n {
		return fmt.Errorf("%d pods, want %d", len(pods), n)
	}
	for _, p := range pods {
		if p.Spec.NodeName == "" || p.Status.Phase != corev1.PodRunning {
			return fmt.Errorf("pod %s: node %q phase %q", p.Name, p.Spec.NodeName, p.Status.Phase)
		}
	}
	return nil
}

func isReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}
