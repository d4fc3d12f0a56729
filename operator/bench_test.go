package operator

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/bosun-gitops/bosun/internal/resource"
	"github.com/bosun-gitops/bosun/internal/testutil"
	"github.com/bosun-gitops/bosun/operator/store"
	corev1 "k8s.io/api/core/v1"
)

// BenchmarkDeploymentScaleUp measures the issue's figure "time from replicas: 0 → 1000 in Git to
// 1 000 pods bound": push, Git sync, Deployment and ReplicaSet controllers, scheduler, all through
// the real store, with 100 simulated nodes registered through the API.
func BenchmarkDeploymentScaleUp(b *testing.B) {
	for range b.N {
		benchScaleUp(b, 1000, 100)
	}
}

func benchScaleUp(b *testing.B, replicas, nodeCount int) {
	repo := testutil.NewGitRepo(b)
	repo.Write(map[string]string{"apps/web.yaml": deploymentYAML("web", 0, "busybox:1.36", "")})
	repo.CommitAndPush("web at 0")
	c := startCluster(b, repo, filepath.Join(b.TempDir(), "data"))
	defer c.stop()
	c.simulate(nodes(nodeCount, "node")...)
	c.eventually(60*time.Second, "nodes registered", func() error {
		l, err := c.op.Store().List(context.Background(), resource.Nodes, "", store.ListOptions{})
		if err != nil || len(l.Items) != nodeCount {
			return fmt.Errorf("%d nodes (%v)", len(l.Items), err)
		}
		return nil
	})

	b.ResetTimer()
	start := time.Now()
	repo.Write(map[string]string{"apps/web.yaml": deploymentYAML("web", replicas, "busybox:1.36", "")})
	repo.CommitAndPush(fmt.Sprintf("web at %d", replicas))
	var created time.Duration
	c.eventually(10*time.Minute, fmt.Sprintf("%d pods bound", replicas), func() error {
		l, err := c.op.Store().List(context.Background(), resource.Pods, "default", store.ListOptions{})
		if err != nil {
			return err
		}
		if created == 0 && len(l.Items) >= replicas {
			created = time.Since(start)
		}
		bound := 0
		for _, o := range l.Items {
			if o.(*corev1.Pod).Spec.NodeName != "" {
				bound++
			}
		}
		if bound < replicas {
			return fmt.Errorf("%d of %d bound", bound, replicas)
		}
		return nil
	})
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(elapsed.Seconds(), "s-to-bound")
	fmt.Printf("bench: deployment-0-to-%d-bound %.2f s (pods created after %.2f s; includes the 1 s Git poll; %d simulated nodes)\n",
		replicas, elapsed.Seconds(), created.Seconds(), nodeCount)
}
