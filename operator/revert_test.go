package operator

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/bosun-gitops/bosun/internal/resource"
	"github.com/bosun-gitops/bosun/operator/controllers/deployment"
	bosunv1 "github.com/bosun-gitops/bosun/repo-layout/v1alpha1"
	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestGitRevertRollsBack pushes image v1, then v2, then `git revert HEAD` made with the git CLI:
// the Deployment goes forward to v1's template and, as in Kubernetes, reuses v1's ReplicaSet
// (same name and pod-template-hash, revision 1 → 3) instead of creating a third one, and the
// pods end on v1.
func TestGitRevertRollsBack(t *testing.T) {
	c := newTestCluster(t)
	c.simulate(nodes(3, "node")...)
	const replicas = 3
	const v1, v2 = "busybox:1.36", "busybox:1.37"
	ctx := context.Background()

	c.push("web v1", map[string]string{"apps/web.yaml": deploymentYAML("web", replicas, v1, "")})
	c.eventually(60*time.Second, "v1 rolled out", func() error { return c.rolledOut("web", v1, replicas) })
	d1 := c.deployment("web")
	rs1 := c.replicaSetOf(d1)
	if got := rs1.Annotations[deployment.RevisionAnnotation]; got != "1" {
		t.Fatalf("v1 replica set %s has revision %q, want 1", rs1.Name, got)
	}

	c.push("web v2", map[string]string{"apps/web.yaml": deploymentYAML("web", replicas, v2, "")})
	c.eventually(90*time.Second, "v2 rolled out", func() error { return c.rolledOut("web", v2, replicas) })
	rs2 := c.replicaSetOf(c.deployment("web"))
	if rs2.UID == rs1.UID {
		t.Fatalf("v2 runs on v1's replica set %s", rs1.Name)
	}

	// The revert is an ordinary commit made by git, as a user would make it.
	c.repo.Git(c.repo.Work, "revert", "--no-edit", "HEAD")
	c.repo.Git(c.repo.Work, "push", "--quiet", "origin", "main")
	c.waitApplied(c.repo.Git(c.repo.Work, "rev-parse", "HEAD"))
	c.eventually(90*time.Second, "back on v1", func() error { return c.rolledOut("web", v1, replicas) })

	d3 := c.deployment("web")
	if !equality.Semantic.DeepEqual(d3.Spec.Template, d1.Spec.Template) {
		t.Errorf("template after the revert differs from v1's (-v1 +reverted):\n%s", cmp.Diff(d1.Spec.Template, d3.Spec.Template))
	}
	if got := d3.Annotations[deployment.RevisionAnnotation]; got != "3" {
		t.Errorf("deployment revision %q after the revert, want 3 (forward, not back to 1)", got)
	}
	rss, err := c.client.AppsV1().ReplicaSets("default").List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
	if err != nil {
		t.Fatal(err)
	}
	if len(rss.Items) != 2 {
		var names []string
		for _, rs := range rss.Items {
			names = append(names, rs.Name)
		}
		t.Fatalf("replica sets %v after the revert, want only v1's %s and v2's %s", names, rs1.Name, rs2.Name)
	}
	for _, rs := range rss.Items {
		switch rs.UID {
		case rs1.UID:
			hash := rs.Labels[appsv1.DefaultDeploymentUniqueLabelKey]
			if rs.Name != rs1.Name || hash != rs1.Labels[appsv1.DefaultDeploymentUniqueLabelKey] {
				t.Errorf("v1 replica set is now %s (hash %s), was %s", rs.Name, hash, rs1.Name)
			}
			if got := rs.Annotations[deployment.RevisionAnnotation]; got != "3" {
				t.Errorf("reused replica set %s has revision %q, want 3", rs.Name, got)
			}
			if got := rs.Annotations[deployment.RevisionHistoryAnnotation]; got != "1" {
				t.Errorf("reused replica set %s has revision history %q, want 1", rs.Name, got)
			}
			if got := *rs.Spec.Replicas; got != replicas {
				t.Errorf("reused replica set %s wants %d replicas, want %d", rs.Name, got, replicas)
			}
		case rs2.UID:
			if got := *rs.Spec.Replicas; got != 0 {
				t.Errorf("v2 replica set %s still wants %d replicas", rs.Name, got)
			}
			if got := rs.Annotations[deployment.RevisionAnnotation]; got != "2" {
				t.Errorf("v2 replica set %s has revision %q, want 2", rs.Name, got)
			}
		default:
			t.Errorf("unexpected replica set %s (revision %s)", rs.Name, rs.Annotations[deployment.RevisionAnnotation])
		}
	}
	wantHash := rs1.Labels[appsv1.DefaultDeploymentUniqueLabelKey]
	for _, p := range c.pods("default", "app=web") {
		if p.Labels[appsv1.DefaultDeploymentUniqueLabelKey] != wantHash || metav1.GetControllerOf(&p).UID != rs1.UID {
			t.Errorf("pod %s has hash %s and owner %s, want v1's %s", p.Name, p.Labels[appsv1.DefaultDeploymentUniqueLabelKey],
				metav1.GetControllerOf(&p).Name, rs1.Name)
		}
	}
}

// waitApplied waits until the operator reports commit sha applied.
func (c *testCluster) waitApplied(sha string) {
	c.t.Helper()
	c.eventually(60*time.Second, "commit "+sha[:7]+" applied", func() error {
		obj, err := c.op.Store().Get(context.Background(), resource.GitSyncs, "", "default")
		if err != nil {
			return err
		}
		if gs := obj.(*bosunv1.GitSync); gs.Status.Applied.SHA != sha {
			return fmt.Errorf("applied %q, state %s: %s", gs.Status.Applied.SHA, gs.Status.State, gs.Status.Message)
		}
		return nil
	})
}

func (c *testCluster) deployment(name string) *appsv1.Deployment {
	c.t.Helper()
	d, err := c.client.AppsV1().Deployments("default").Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		c.t.Fatal(err)
	}
	return d
}

// replicaSetOf returns the ReplicaSet whose pod-template-hash the Deployment's pods carry now.
func (c *testCluster) replicaSetOf(d *appsv1.Deployment) *appsv1.ReplicaSet {
	c.t.Helper()
	rss, err := c.client.AppsV1().ReplicaSets(d.Namespace).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		c.t.Fatal(err)
	}
	for i, rs := range rss.Items {
		if deployment.EqualIgnoreHash(&rs.Spec.Template, &d.Spec.Template) {
			return &rss.Items[i]
		}
	}
	c.t.Fatalf("no replica set with the template of deployment %s", d.Name)
	return nil
}

// rolledOut checks that the Deployment's rollout is complete: its status is up to date with the
// spec and exactly n ready pods run image, and no other pod is left.
func (c *testCluster) rolledOut(name, image string, n int) error {
	d, err := c.client.AppsV1().Deployments("default").Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	if got := d.Spec.Template.Spec.Containers[0].Image; got != image {
		return fmt.Errorf("deployment template has image %s", got)
	}
	s := d.Status
	if s.ObservedGeneration < d.Generation || s.UpdatedReplicas != int32(n) || s.Replicas != int32(n) || s.AvailableReplicas != int32(n) {
		return fmt.Errorf("deployment status: generation %d/%d, %d updated, %d total, %d available",
			s.ObservedGeneration, d.Generation, s.UpdatedReplicas, s.Replicas, s.AvailableReplicas)
	}
	pods := c.pods("default", "app="+name)
	if len(pods) != n {
		return fmt.Errorf("%d pods, want %d", len(pods), n)
	}
	for _, p := range pods {
		if p.Spec.Containers[0].Image != image || p.Status.Phase != corev1.PodRunning || !isReady(&p) {
			return fmt.Errorf("pod %s: image %s, phase %s, ready %v", p.Name, p.Spec.Containers[0].Image, p.Status.Phase, isReady(&p))
		}
	}
	return nil
}
