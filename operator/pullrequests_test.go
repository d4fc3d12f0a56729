package operator

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bosun-gitops/bosun/internal/resource"
	"github.com/bosun-gitops/bosun/internal/testutil"
	"github.com/bosun-gitops/bosun/operator/forge"
	"github.com/bosun-gitops/bosun/operator/webhook"
	bosunv1 "github.com/bosun-gitops/bosun/repo-layout/v1alpha1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// statusForge is the commit-status half of a Gitea API: it records what the operator posts.
type statusForge struct {
	mu       sync.Mutex
	statuses map[string][]forge.StatusBody
}

func (f *statusForge) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	sha, ok := strings.CutPrefix(r.URL.Path, "/api/v1/repos/o/fleet/statuses/")
	if !ok || r.Method != http.MethodPost || r.Header.Get("Authorization") != "token tok" {
		http.Error(w, "not found", http.StatusNotFound)
		return
	}
	var st forge.StatusBody
	json.NewDecoder(r.Body).Decode(&st)
	f.statuses[sha] = append(f.statuses[sha], st)
	w.WriteHeader(http.StatusCreated)
}

func (f *statusForge) deploy(sha string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, st := range f.statuses[sha] {
		if st.Context == forge.ContextDeploy {
			out = append(out, string(st.State))
		}
	}
	return out
}

// logBuffer keeps the operator's log lines for the test to wait on, and passes them to t.Log.
type logBuffer struct {
	t  testing.TB
	mu sync.Mutex
	b  strings.Builder
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	l.b.Write(p)
	l.mu.Unlock()
	l.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func (l *logBuffer) contains(s string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Contains(l.b.String(), s)
}

const stuckDeployment = `apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: stuck, namespace: shop}
spec:
  replicas: 1
  progressDeadlineSeconds: 1
  selector: {matchLabels: {app: stuck}}
  template:
    metadata: {labels: {app: stuck}}
    spec:
      nodeSelector: {disk: none}
      containers: [{name: stuck, image: registry.local/stuck:1}]
`

func (c *testCluster) health() (*bosunv1.CommitHealth, error) {
	obj, err := c.op.Store().Get(context.Background(), resource.GitSyncs, "", "default")
	if err != nil {
		return nil, err
	}
	return obj.(*bosunv1.GitSync).Status.Health, nil
}

// TestPullRequestDeployStatusAfterRestart checks that a restarted operator, whose first sync of
// the already applied commit writes nothing, keeps the commit's Degraded health and its
// bosun/deploy failure instead of declaring it healthy.
func TestPullRequestDeployStatusAfterRestart(t *testing.T) {
	repo := testutil.NewGitRepo(t)
	repo.Write(map[string]string{"apps/stuck.yaml": stuckDeployment})
	commit := repo.CommitAndPush("a deployment that cannot roll out")
	ff := &statusForge{statuses: map[string][]forge.StatusBody{}}
	srv := httptest.NewServer(ff)
	defer srv.Close()
	logs := &logBuffer{t: t}
	withForge := func(cfg *Config) {
		cfg.Forge, cfg.ForgeURL, cfg.ForgeToken, cfg.ForgeRepo = "gitea", srv.URL, "tok", "o/fleet"
		cfg.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	dataDir := t.TempDir()
	c := startCluster(t, repo, dataDir, withForge)
	c.eventually(60*time.Second, "bosun/deploy failure", func() error {
		h, err := c.health()
		if err != nil {
			return err
		}
		if got := ff.deploy(commit); h == nil || h.Commit != commit || h.Status != bosunv1.HealthDegraded || strings.Join(got, " ") != "pending failure" {
			return fmt.Errorf("health %+v, deploy statuses %v", h, got)
		}
		return nil
	})
	c.stop()

	c = startCluster(t, repo, dataDir, withForge)
	c.eventually(60*time.Second, "the restarted operator's sync of the applied commit", func() error {
		if !logs.contains("commit health already settled; kept") {
			return fmt.Errorf("not yet")
		}
		return nil
	})
	if h, err := c.health(); err != nil || h == nil || h.Commit != commit || h.Status != bosunv1.HealthDegraded {
		t.Errorf("health after the restart: %+v (%v), want Degraded", h, err)
	}
	if got := ff.deploy(commit); strings.Join(got, " ") != "pending failure" {
		t.Errorf("bosun/deploy statuses after the restart: %v, want pending failure", got)
	}
}

// TestPullRequestWebhookSecretFromGit checks bosun.yaml's spec.webhook.secretRef: once the commit
// that sets it is applied, deliveries signed with the Secret's value are accepted and those
// signed with the data dir's secret are rejected.
func TestPullRequestWebhookSecretFromGit(t *testing.T) {
	repo := testutil.NewGitRepo(t)
	repo.Write(map[string]string{"apps/ns.yaml": "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n"})
	repo.CommitAndPush("initial")
	fileSecret, gitSecret := []byte("from-the-data-dir"), []byte("from-git")
	c := startCluster(t, repo, t.TempDir(), func(cfg *Config) { cfg.WebhookSecret = fileSecret })
	rc, err := clientcmd.BuildConfigFromFlags("", c.op.Server().AdminKubeconfigPath())
	if err != nil {
		t.Fatal(err)
	}
	hc, err := rest.HTTPClientFor(rc)
	if err != nil {
		t.Fatal(err)
	}
	deliver := func(secret []byte) int {
		t.Helper()
		body := []byte(`{"branch":"main"}`)
		req, _ := http.NewRequest(http.MethodPost, c.op.Server().URL()+"/hooks/generic", bytes.NewReader(body))
		req.Header.Set("X-Hub-Signature-256", "sha256="+webhook.Sign(secret, body))
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	c.eventually(60*time.Second, "the leader accepts webhooks", func() error {
		if code := deliver(fileSecret); code != http.StatusAccepted {
			return fmt.Errorf("code %d", code)
		}
		return nil
	})
	if code := deliver(gitSecret); code != http.StatusUnauthorized {
		t.Errorf("before bosun.yaml names a Secret, the Secret's value: code %d, want 401", code)
	}

	c.push("webhook secret from Git", map[string]string{
		"bosun.yaml": "apiVersion: bosun.dev/v1alpha1\nkind: Cluster\nmetadata: {name: test}\nspec:\n" +
			"  webhook: {secretRef: {namespace: kube-system, name: webhook, key: secret}}\n",
		"apps/webhook-secret.yaml": "apiVersion: v1\nkind: Secret\nmetadata: {name: webhook, namespace: kube-system}\n" +
			"stringData: {secret: " + string(gitSecret) + "}\n",
	})
	if code := deliver(gitSecret); code != http.StatusAccepted {
		t.Errorf("the Secret's value: code %d, want 202", code)
	}
	if code := deliver(fileSecret); code != http.StatusUnauthorized {
		t.Errorf("the data dir's secret once Git names one: code %d, want 401", code)
	}
}
