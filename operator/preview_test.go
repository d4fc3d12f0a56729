package operator

import (
	"context"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/bosun-gitops/bosun/internal/resource"
	"github.com/bosun-gitops/bosun/internal/testutil"
	"github.com/bosun-gitops/bosun/operator/forge"
	"github.com/bosun-gitops/bosun/operator/preview"
	"github.com/bosun-gitops/bosun/operator/simnodes"
	"github.com/bosun-gitops/bosun/operator/store"
	"github.com/bosun-gitops/bosun/operator/webhook"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// previewWeb is a Deployment whose pods take host port 8080: on one node, only one of them can
// run unless the preview drops the host port.
func previewWeb(replicas int, image string) string {
	return fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop}
spec:
  replicas: %d
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
        - name: web
          image: %s
          ports: [{containerPort: 8080, hostPort: 8080}]
`, replicas, image)
}

const previewBase = `apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  type: NodePort
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080, nodePort: 30080}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: settings, namespace: shop}
data: {greeting: hello}
`

// pushPullRequest commits files on the pull request's branch (made from main on first use) and
// pushes it to refs/pull/<number>/head, as forges publish pull-request heads; the work tree is
// left on main.
func pushPullRequest(repo *testutil.GitRepo, number int, first bool, msg string, files map[string]string, remove ...string) string {
	branch := fmt.Sprintf("pull-%d", number)
	if first {
		repo.Git(repo.Work, "checkout", "--quiet", "-b", branch, "main")
	} else {
		repo.Git(repo.Work, "checkout", "--quiet", branch)
	}
	repo.Write(files)
	repo.Remove(remove...)
	repo.Git(repo.Work, "add", "-A")
	repo.Git(repo.Work, "commit", "--quiet", "-m", msg)
	repo.Git(repo.Work, "push", "--quiet", "--force", "origin", fmt.Sprintf("HEAD:refs/pull/%d/head", number))
	sha := repo.Git(repo.Work, "rev-parse", "HEAD")
	repo.Git(repo.Work, "checkout", "--quiet", "main")
	return sha
}

func (f *statusForge) contextStates(sha, context string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, st := range f.statuses[sha] {
		if st.Context == context {
			out = append(out, string(st.State)+": "+st.Description)
		}
	}
	return out
}

// TestPreviewEnvironment drives the leader's preview manager with pull-request events against a
// real repository, etcd and simulated nodes: a labelled pull request is deployed into pr-7
// (rewritten so that nothing clashes with main), follows new heads, is left alone by main's
// sync, survives a crash and goes away when the pull request closes.
func TestPreviewEnvironment(t *testing.T) {
	if testing.Short() {
		t.Skip("starts an operator")
	}
	repo := testutil.NewGitRepo(t)
	repo.Write(map[string]string{"apps/base.yaml": previewBase, "apps/web.yaml": previewWeb(1, "registry.local/web:1")})
	repo.CommitAndPush("initial")
	ff := &statusForge{statuses: map[string][]forge.StatusBody{}}
	srv := httptest.NewServer(ff)
	defer srv.Close()
	dataDir := t.TempDir()
	opts := func(cfg *Config) {
		cfg.PreviewLabel = "preview"
		cfg.Forge, cfg.ForgeURL, cfg.ForgeToken, cfg.ForgeRepo = "gitea", srv.URL, "tok", "o/fleet"
	}
	c := startCluster(t, repo, dataDir, opts)
	c.simulate(simnodes.NodeSpec{Name: "node-0", CPU: "4", Memory: "8Gi"})
	ctx := context.Background()
	c.eventually(60*time.Second, "main's web running", func() error { return c.runningPods("shop", "app=web", 1) })
	st := c.op.Store()

	var previews *preview.Manager
	c.eventually(30*time.Second, "the leader's preview manager", func() error {
		if previews = c.op.currentPreviews(); previews == nil {
			return fmt.Errorf("not leading yet")
		}
		return nil
	})
	event := func(m *preview.Manager, action, head string, labels ...string) {
		m.HandlePullRequest(ctx, webhook.PullRequest{Provider: webhook.Gitea, Repo: "o/fleet", Number: 7, Action: action,
			HeadSHA: head, Base: "main", Closed: action == webhook.ActionClosed, Labels: labels})
	}

	// Opened with the label: everything namespaced lands in pr-7, rewritten.
	head1 := pushPullRequest(repo, 7, true, "web 2 replicas, an extra config map", map[string]string{
		"apps/web.yaml":   previewWeb(2, "registry.local/web:2"),
		"apps/extra.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: extra, namespace: shop}\n",
	})
	event(previews, webhook.ActionOpened, head1, "preview")
	c.eventually(60*time.Second, "the preview's two web pods running beside main's (host port dropped)", func() error {
		return c.runningPods("pr-7", "app=web", 2)
	})
	c.eventually(30*time.Second, "bosun/preview success on the head", func() error {
		got := ff.contextStates(head1, preview.StatusContext)
		if len(got) < 2 || !strings.HasPrefix(got[0], "pending") || !strings.HasPrefix(got[len(got)-1], "success: deployed to namespace pr-7") {
			return fmt.Errorf("statuses %q", got)
		}
		return nil
	})
	for _, name := range []string{"settings", "extra"} {
		cm, err := c.client.CoreV1().ConfigMaps("pr-7").Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatalf("config map %s in pr-7: %v", name, err)
		}
		if cm.Labels[resource.LabelPreview] != "7" || cm.Annotations[resource.AnnotationCommit] != head1 || cm.Annotations[resource.AnnotationSource] != "apps/"+map[string]string{"settings": "base", "extra": "extra"}[name]+".yaml" {
			t.Errorf("config map pr-7/%s: labels %v annotations %v", name, cm.Labels, cm.Annotations)
		}
	}
	svc, err := c.client.CoreV1().Services("pr-7").Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if svc.Spec.Type != corev1.ServiceTypeClusterIP || svc.Spec.Ports[0].NodePort != 0 {
		t.Errorf("preview service: type %s nodePort %d, want ClusterIP without a node port", svc.Spec.Type, svc.Spec.Ports[0].NodePort)
	}
	mainSvc, err := c.client.CoreV1().Services("shop").Get(ctx, "web", metav1.GetOptions{})
	if err != nil || mainSvc.Spec.Ports[0].NodePort != 30080 {
		t.Errorf("main's service: %v, %v; want node port 30080 kept", mainSvc, err)
	}
	for _, p := range c.pods("pr-7", "app=web") {
		if p.Labels[resource.LabelPreview] != "7" {
			t.Errorf("preview pod %s without the preview label: %v", p.Name, p.Labels)
		}
	}
	if _, err := c.client.CoreV1().Namespaces().Get(ctx, "shop", metav1.GetOptions{}); err != nil {
		t.Errorf("main's namespace: %v", err)
	}

	// Users cannot write the preview's objects through the API; the refusal names the pull request.
	d, err := c.client.AppsV1().Deployments("pr-7").Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	d.Spec.Replicas = ptrTo(int32(5))
	if _, err := c.client.AppsV1().Deployments("pr-7").Update(ctx, d, metav1.UpdateOptions{}); err == nil || !strings.Contains(err.Error(), "pull request #7") {
		t.Errorf("updating the preview's deployment through the API: %v, want a refusal naming pull request #7", err)
	}
	if err := c.client.CoreV1().Namespaces().Delete(ctx, "pr-7", metav1.DeleteOptions{}); err == nil || !strings.Contains(err.Error(), "pull request #7") {
		t.Errorf("deleting the preview's namespace through the API: %v, want a refusal naming pull request #7", err)
	}

	// A new head: updated and pruned.
	head2 := pushPullRequest(repo, 7, false, "back to one replica, no extra", map[string]string{"apps/web.yaml": previewWeb(1, "registry.local/web:3")}, "apps/extra.yaml")
	event(previews, webhook.ActionUpdated, head2, "preview")
	c.eventually(60*time.Second, "the new head applied and the extra config map pruned", func() error {
		d, err := c.client.AppsV1().Deployments("pr-7").Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if d.Annotations[resource.AnnotationCommit] != head2 || d.Spec.Template.Spec.Containers[0].Image != "registry.local/web:3" {
			return fmt.Errorf("deployment at commit %s image %s", d.Annotations[resource.AnnotationCommit], d.Spec.Template.Spec.Containers[0].Image)
		}
		if _, err := c.client.CoreV1().ConfigMaps("pr-7").Get(ctx, "extra", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			return fmt.Errorf("config map extra: %v", err)
		}
		return c.runningPods("pr-7", "app=web", 1)
	})

	// Main's sync of an unrelated commit neither prunes nor touches the preview.
	before, err := c.client.CoreV1().ConfigMaps("pr-7").Get(ctx, "settings", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c.push("unrelated", map[string]string{"apps/other.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: other, namespace: shop}\n"})
	after, err := c.client.CoreV1().ConfigMaps("pr-7").Get(ctx, "settings", metav1.GetOptions{})
	if err != nil || after.ResourceVersion != before.ResourceVersion {
		t.Errorf("pr-7/settings after main's sync: %v (resourceVersion %s → %v)", err, before.ResourceVersion, after)
	}
	for _, kind := range []string{"deployments", "services"} {
		var err error
		if kind == "deployments" {
			_, err = c.client.AppsV1().Deployments("pr-7").Get(ctx, "web", metav1.GetOptions{})
		} else {
			_, err = c.client.CoreV1().Services("pr-7").Get(ctx, "web", metav1.GetOptions{})
		}
		if err != nil {
			t.Errorf("pr-7 %s web after main's sync: %v", kind, err)
		}
	}

	// A crash that lost part of the preview: the next leader resumes it from its record.
	if _, err := st.Delete(ctx, resource.ConfigMaps, "pr-7", "settings", store.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	c.stop()
	c = startCluster(t, repo, dataDir, opts)
	c.simulate(simnodes.NodeSpec{Name: "node-0", CPU: "4", Memory: "8Gi"})
	c.eventually(60*time.Second, "the restarted leader put the preview back", func() error {
		_, err := c.client.CoreV1().ConfigMaps("pr-7").Get(ctx, "settings", metav1.GetOptions{})
		return err
	})
	c.eventually(30*time.Second, "the restarted leader's preview manager", func() error {
		if previews = c.op.currentPreviews(); previews == nil {
			return fmt.Errorf("not leading yet")
		}
		return nil
	})

	// Closed: the namespace goes, and everything in it; main stays.
	event(previews, webhook.ActionClosed, head2, "preview")
	c.eventually(60*time.Second, "namespace pr-7 gone", func() error {
		if _, err := c.client.CoreV1().Namespaces().Get(ctx, "pr-7", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			return fmt.Errorf("namespace pr-7: %v", err)
		}
		if pods := c.pods("pr-7", ""); len(pods) > 0 {
			return fmt.Errorf("%d pods left in pr-7", len(pods))
		}
		if _, err := c.client.CoreV1().ConfigMaps(metav1.NamespaceSystem).Get(ctx, "bosun-preview-7", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			return fmt.Errorf("preview record: %v", err)
		}
		return nil
	})
	if err := c.runningPods("shop", "app=web", 1); err != nil {
		t.Errorf("main's web after the preview went: %v", err)
	}
	if got := ff.contextStates(head2, preview.StatusContext); len(got) == 0 || !strings.HasPrefix(got[len(got)-1], "success: namespace pr-7 removed") {
		t.Errorf("bosun/preview statuses of the last head: %q, want the removal last", got)
	}
}

func ptrTo[T any](v T) *T { return &v }
