package operator

import (
	"context"

	"fmt"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"testing"
	"time"
)

// TestManyDeploymentsInOneCommit pushes several Deployments at once and checks that every one of
// them gets its pod: no controller may leave a Deployment behind when many arrive together.
func TestManyDeploymentsInOneCommit(t *testing.T) {
	c := newTestCluster(t)
	files := map[string]string{}
	names := []string{"app", "badpull", "client", "crash", "gone", "liveness", "notready", "oom", "pull", "web"}
	for _, n := range names {
		files["t/"+n+".yaml"] = deploymentYAML(n, 1, "busybox:1.36", "")
	}
	c.push("ten deployments", files)
	c.eventually(60*time.Second, "one pod per deployment", func() error {
		var missing []string
		for _, n := range names {
			if len(c.pods("default", "app="+n)) != 1 {
				missing = append(missing, n)
			}
		}
		if len(missing) > 0 {
			rss, _ := c.client.AppsV1().ReplicaSets("default").List(context.Background(), metav1.ListOptions{})
			var have []string
			for _, rs := range rss.Items {
				have = append(have, fmt.Sprintf("%s(spec %d, status %d)", rs.Name, *rs.Spec.Replicas, rs.Status.Replicas))
			}
			deps, _ := c.client.AppsV1().Deployments("default").List(context.Background(), metav1.ListOptions{})
			return fmt.Errorf("no pod yet for %v; %d deployments; replica sets %v", missing, len(deps.Items), have)
		}
		return nil
	})
}
