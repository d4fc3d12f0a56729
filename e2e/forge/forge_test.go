//go:build e2e

package forge

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/bosun-gitops/bosun/internal/testutil"
	"github.com/bosun-gitops/bosun/operator/simnodes"
	bosunv1 "github.com/bosun-gitops/bosun/repo-layout/v1alpha1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

const repoName = "bosun/fleet"

func deployment(replicas int, image string) string {
	return fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: shop
spec:
  replicas: %d
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
        - name: web
          image: %s
`, replicas, image)
}

const baseFiles = `apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: settings, namespace: shop}
data: {greeting: hello}
`

// TestGiteaPullRequestFlow runs the whole pull-request workflow against a real Gitea: push →
// sync by webhook, plans on pull requests as statuses and one comment, merge → deploy status.
func TestGiteaPullRequestFlow(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (Gitea runs as root here with I_AM_BEING_UNSAFE_RUNNING_AS_ROOT)")
	}
	bin := os.Getenv("BOSUN_BIN")
	if bin == "" {
		t.Fatal("BOSUN_BIN is not set: run `make e2e-forge`")
	}
	g := startGitea(t)
	g.api(http.MethodPost, "/api/v1/user/repos", map[string]any{"name": "fleet", "default_branch": "main", "private": true}, nil)

	work := filepath.Join(t.TempDir(), "fleet")
	git(t, filepath.Dir(work), "init", "--quiet", "--initial-branch=main", work)
	git(t, work, "remote", "add", "origin", g.cloneURL(repoName))
	writeFile(t, work, "apps/base.yaml", baseFiles)
	writeFile(t, work, "apps/web.yaml", deployment(1, "registry.local/web:1.2"))
	git(t, work, "add", "-A")
	git(t, work, "commit", "--quiet", "-m", "initial")
	git(t, work, "push", "--quiet", "origin", "main")
	first := git(t, work, "rev-parse", "HEAD")
	eventually(t, 30*time.Second, "repository non-empty", func() error {
		var br struct{ Name string }
		_, err := g.do(http.MethodGet, "/api/v1/repos/"+repoName+"/branches/main", nil, &br, false)
		return err
	})

	// The operator: webhook secret, forge token, and a polling interval far longer than the
	// test, so that every push below is synced by its webhook or not at all. It syncs apps/.
	dir := t.TempDir()
	secret := "e2e-webhook-secret"
	os.WriteFile(filepath.Join(dir, "secret"), []byte(secret), 0o600)
	os.WriteFile(filepath.Join(dir, "token"), []byte(g.Token), 0o600)
	dataDir := filepath.Join(dir, "data")
	port := freePort(t)
	const hookInterval = 10 * time.Minute
	opArgs := []string{
		"--repo", g.URL + "/" + repoName + ".git", "--git-token-file", filepath.Join(dir, "token"), "--path", "apps",
		"--interval", hookInterval.String(), "--listen", fmt.Sprintf("127.0.0.1:%d", port),
		"--webhook-secret-file", filepath.Join(dir, "secret"),
		"--forge", "gitea", "--forge-url", g.URL, "--forge-token-file", filepath.Join(dir, "token")}
	op := startOperator(t, bin, dataDir, opArgs...)
	kubeconfig := filepath.Join(dataDir, "admin.kubeconfig")
	cs := clientFor(t, kubeconfig)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	sim, err := simnodes.New(simnodes.Config{Client: cs, StartDelay: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	go sim.Run(ctx)
	eventually(t, 30*time.Second, "simulated node", func() error {
		return sim.AddNodes(ctx, simnodes.NodeSpec{Name: "sim-1"})
	})

	gitSync := func() (*bosunv1.GitSync, error) { return gitSyncOf(ctx, cs) }
	applied := func(sha string) func() error { return appliedBy(ctx, cs, sha) }
	eventually(t, 60*time.Second, "initial commit applied", applied(first))

	// The webhook, delivered by Gitea itself.
	events := []string{"push", "pull_request", "pull_request_sync", "pull_request_label"}
	g.api(http.MethodPost, "/api/v1/repos/"+repoName+"/hooks", map[string]any{
		"type":   "gitea",
		"active": true,
		"events": events,
		"config": map[string]string{"url": fmt.Sprintf("https://127.0.0.1:%d/hooks/gitea", port), "content_type": "json", "secret": secret},
	}, nil)

	// push → synced by webhook: with a 10-minute interval only the webhook can sync these in
	// time (the wait below is far shorter than the interval).
	const pushes = 9
	// push commits a change and pushes it; it returns the commit and when `git push` started
	// (the latency is measured from there: a poll may see the commit before the push returns).
	push := func(msg, key string) (string, time.Time) {
		writeFile(t, work, "apps/base.yaml", strings.Replace(baseFiles, "greeting: hello", "greeting: "+key, 1))
		git(t, work, "commit", "--quiet", "-am", msg)
		sha := git(t, work, "rev-parse", "HEAD")
		start := time.Now()
		git(t, work, "push", "--quiet", "origin", "main")
		return sha, start
	}
	var hookLat []time.Duration
	for i := range pushes {
		sha, start := push(fmt.Sprintf("webhook push %d", i), fmt.Sprintf("hook%d", i))
		hookLat = append(hookLat, syncLatency(t, ctx, cs, sha, start, 60*time.Second, "push synced by webhook (polling every "+hookInterval.String()+")"))
	}

	// push → synced by polling: a second operator with its own etcd and a 2 s interval, which
	// no webhook reaches.
	const pollInterval = 2 * time.Second
	pollDir := filepath.Join(dir, "polling")
	poller := startOperator(t, bin, pollDir, "--repo", g.URL+"/"+repoName+".git", "--git-token-file", filepath.Join(dir, "token"),
		"--path", "apps", "--interval", pollInterval.String(), "--listen", fmt.Sprintf("127.0.0.1:%d", freePort(t)))
	pollCS := clientFor(t, filepath.Join(pollDir, "admin.kubeconfig"))
	eventually(t, 60*time.Second, "polling operator synced", appliedBy(ctx, pollCS, git(t, work, "rev-parse", "HEAD")))
	var pollLat []time.Duration
	for i := range pushes {
		// Pushes arrive at any point of the polling cycle, not in step with it.
		time.Sleep(rand.N(pollInterval))
		sha, start := push(fmt.Sprintf("polled push %d", i), fmt.Sprintf("poll%d", i))
		pollLat = append(pollLat, syncLatency(t, ctx, pollCS, sha, start, 30*pollInterval, "push synced by polling"))
		eventually(t, 60*time.Second, "push synced by webhook", applied(sha))
	}
	poller.stop()
	t.Logf("push → synced by webhook: %v; by polling every %s: %v", hookLat, pollInterval, pollLat)
	fmt.Printf("bench: forge-push-to-synced-webhook %d ms (from git push to GitSync applied; median of %d pushes, max %d ms; polling every %s, so every push came by webhook)\n",
		median(hookLat).Milliseconds(), pushes, maxOf(hookLat).Milliseconds(), hookInterval)
	fmt.Printf("bench: forge-push-to-synced-polling %d ms (from git push to GitSync applied; median of %d pushes at random points of the cycle, max %d ms; polling every %s, no webhook)\n",
		median(pollLat).Milliseconds(), pushes, maxOf(pollLat).Milliseconds(), pollInterval)

	// PR 1: scale the deployment and change its image.
	git(t, work, "checkout", "--quiet", "-b", "scale")
	writeFile(t, work, "apps/web.yaml", deployment(3, "registry.local/web:1.3"))
	git(t, work, "commit", "--quiet", "-am", "scale web to 3")
	git(t, work, "push", "--quiet", "origin", "scale")
	head1 := git(t, work, "rev-parse", "HEAD")
	var pr1 struct {
		Number int `json:"number"`
	}
	g.api(http.MethodPost, "/api/v1/repos/"+repoName+"/pulls", map[string]any{"head": "scale", "base": "main", "title": "Scale web"}, &pr1)
	waitStatus(t, g, head1, "bosun/plan", "success", "valid, 1 change:")
	planComment := waitComment(t, g, pr1.Number, "deployment shop/web", "1 → 3 replicas", "image registry.local/web:1.2 → registry.local/web:1.3")
	t.Logf("plan comment on #%d:\n%s", pr1.Number, planComment)

	// A later push updates the same comment in place.
	writeFile(t, work, "apps/web.yaml", deployment(4, "registry.local/web:1.3"))
	git(t, work, "commit", "--quiet", "-am", "scale web to 4")
	git(t, work, "push", "--quiet", "origin", "scale")
	head2 := git(t, work, "rev-parse", "HEAD")
	waitStatus(t, g, head2, "bosun/plan", "success", "valid, 1 change:")
	waitComment(t, g, pr1.Number, "1 → 4 replicas")
	list, err := g.comments(repoName, pr1.Number)
	if err != nil {
		t.Fatal(err)
	}
	if n := countMarked(list); n != 1 {
		t.Errorf("pull request #%d has %d plan comments, want 1 (updated in place)", pr1.Number, n)
	}

	// PR 2: an invalid manifest.
	git(t, work, "checkout", "--quiet", "main")
	git(t, work, "checkout", "--quiet", "-b", "broken")
	writeFile(t, work, "apps/bad.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: bad, namespace: shop}\ndata: {\"bad key!\": x}\n")
	git(t, work, "add", "-A")
	git(t, work, "commit", "--quiet", "-m", "add a bad config map")
	git(t, work, "push", "--quiet", "origin", "broken")
	head3 := git(t, work, "rev-parse", "HEAD")
	var pr2 struct {
		Number int `json:"number"`
	}
	g.api(http.MethodPost, "/api/v1/repos/"+repoName+"/pulls", map[string]any{"head": "broken", "base": "main", "title": "Broken"}, &pr2)
	waitStatus(t, g, head3, "bosun/plan", "failure", "invalid")
	waitComment(t, g, pr2.Number, "apps/bad.yaml:", "❌")

	// Label PR 1 `preview`: its head is deployed into pr-<number>, with bosun/preview success.
	var label struct {
		ID int64 `json:"id"`
	}
	g.api(http.MethodPost, "/api/v1/repos/"+repoName+"/labels", map[string]any{"name": "preview", "color": "#00aabb"}, &label)
	g.api(http.MethodPost, fmt.Sprintf("/api/v1/repos/%s/issues/%d/labels", repoName, pr1.Number), map[string]any{"labels": []int64{label.ID}}, nil)
	previewNS := fmt.Sprintf("pr-%d", pr1.Number)
	waitStatus(t, g, head2, "bosun/preview", "success", "deployed to namespace "+previewNS)
	eventually(t, 30*time.Second, "the preview's deployment available", func() error {
		d, err := cs.AppsV1().Deployments(previewNS).Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if d.Status.AvailableReplicas != 4 || d.Spec.Template.Spec.Containers[0].Image != "registry.local/web:1.3" {
			return fmt.Errorf("%d available, image %s", d.Status.AvailableReplicas, d.Spec.Template.Spec.Containers[0].Image)
		}
		return nil
	})

	// Merge PR 1: the merge commit is synced and gets bosun/deploy success once web is available;
	// the merge closes the pull request, which removes its preview.
	eventually(t, 60*time.Second, "merge", func() error {
		code, err := g.do(http.MethodPost, fmt.Sprintf("/api/v1/repos/%s/pulls/%d/merge", repoName, pr1.Number), map[string]any{"Do": "merge"}, nil, false)
		if code == http.StatusMethodNotAllowed {
			return err // "try again later"
		}
		if err != nil {
			t.Fatal(err)
		}
		return nil
	})
	var merged struct {
		MergeSHA string `json:"merge_commit_sha"`
	}
	g.api(http.MethodGet, fmt.Sprintf("/api/v1/repos/%s/pulls/%d", repoName, pr1.Number), nil, &merged)
	eventually(t, 30*time.Second, "merge commit applied", applied(merged.MergeSHA))
	waitStatus(t, g, merged.MergeSHA, "bosun/deploy", "success", "available")
	eventually(t, 30*time.Second, "the merged pull request's preview removed", func() error {
		if _, err := cs.CoreV1().Namespaces().Get(ctx, previewNS, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			return fmt.Errorf("namespace %s: %v", previewNS, err)
		}
		return nil
	})
	waitStatus(t, g, head2, "bosun/preview", "success", "removed: the pull request was merged")
	gs, err := gitSync()
	if err != nil {
		t.Fatal(err)
	}
	if gs.Status.Sync != bosunv1.SyncStatusSynced || gs.Status.Health == nil || gs.Status.Health.Status != bosunv1.HealthHealthy {
		t.Errorf("GitSync status: sync %q health %+v, want Synced and Healthy", gs.Status.Sync, gs.Status.Health)
	}
	out, errOut, code := cliRun(t, bin, kubeconfig, "status")
	if code != 0 || !strings.Contains(out, "Healthy") || !strings.Contains(out, "History:") || !strings.Contains(out, shortSHA(merged.MergeSHA)) {
		t.Errorf("bosun status: exit %d, want Healthy and the merge commit in its history in:\n%s%s", code, out, errOut)
	}
	// `bosun plan --ref` of the merged branch: nothing left to change.
	out, errOut, code = cliRun(t, bin, kubeconfig, "plan", "--ref", "main")
	if code != 0 {
		t.Errorf("bosun plan --ref main: exit %d, want 0\n%s%s", code, out, errOut)
	}
	// `bosun plan DIR` of a working tree: the merged state plans clean, an edit shows up.
	git(t, work, "checkout", "--quiet", "main")
	git(t, work, "pull", "--quiet", "origin", "main")
	// The operator syncs apps/ (--path apps): the work tree's root and its apps directory
	// both plan as that path.
	for _, d := range []string{work, filepath.Join(work, "apps")} {
		if out, errOut, code = cliRun(t, bin, kubeconfig, "plan", d); code != 0 {
			t.Errorf("bosun plan %s of the merged tree: exit %d, want 0\n%s%s", d, code, out, errOut)
		}
	}
	writeFile(t, work, "apps/web.yaml", deployment(7, "registry.local/web:1.3"))
	out, errOut, code = cliRun(t, bin, kubeconfig, "plan", work)
	if code != 1 || !strings.Contains(out, "deployment shop/web: 4 → 7 replicas") {
		t.Errorf("bosun plan DIR with an edit: exit %d, want 1 and the replica change\n%s%s", code, out, errOut)
	}
	t.Logf("bosun plan DIR:\n%s", out)
	writeFile(t, work, "apps/bad.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: bad, namespace: shop}\ndata: {\"bad key!\": x}\n")
	if out, errOut, code = cliRun(t, bin, kubeconfig, "plan", work); code != 2 || !strings.Contains(errOut, "apps/bad.yaml:4:") {
		t.Errorf("bosun plan DIR of an invalid tree: exit %d, want 2 and the error on stderr\n%s%s", code, out, errOut)
	}
	os.Remove(filepath.Join(work, "apps/bad.yaml"))

	// A rollout that cannot finish (no node matches): bosun/deploy failure with the reason the
	// Deployment controller gives when the progress deadline passes.
	git(t, work, "checkout", "--quiet", "apps/web.yaml")
	writeFile(t, work, "apps/stuck.yaml", `apiVersion: apps/v1
kind: Deployment
metadata: {name: stuck, namespace: shop}
spec:
  replicas: 1
  progressDeadlineSeconds: 2
  selector: {matchLabels: {app: stuck}}
  template:
    metadata: {labels: {app: stuck}}
    spec:
      nodeSelector: {disk: none}
      containers: [{name: stuck, image: registry.local/stuck:1}]
`)
	git(t, work, "add", "-A")
	git(t, work, "commit", "--quiet", "-m", "a deployment that cannot roll out")
	git(t, work, "push", "--quiet", "origin", "main")
	stuck := git(t, work, "rev-parse", "HEAD")
	waitStatus(t, g, stuck, "bosun/deploy", "failure", "exceeded its progress deadline")
	gs, err = gitSync()
	if err != nil {
		t.Fatal(err)
	}
	if h := gs.Status.Health; h == nil || h.Commit != stuck || h.Status != bosunv1.HealthDegraded {
		t.Errorf("GitSync health after a stuck rollout: %+v, want Degraded for %.12s", h, stuck)
	}

	// The operator crashes and restarts: its first sync of the applied commit writes nothing,
	// and the commit stays Degraded (not "no workload changed") here and on Gitea.
	op.stop()
	op = startOperator(t, bin, dataDir, opArgs...)
	eventually(t, 90*time.Second, "the restarted operator's first sync", func() error {
		if !op.logContains("commit health already settled; kept") {
			return fmt.Errorf("not yet")
		}
		return nil
	})
	if gs, err = gitSync(); err != nil {
		t.Fatal(err)
	}
	if h := gs.Status.Health; h == nil || h.Commit != stuck || h.Status != bosunv1.HealthDegraded {
		t.Errorf("GitSync health after a restart: %+v, want Degraded for %.12s", h, stuck)
	}
	waitStatus(t, g, stuck, "bosun/deploy", "failure", "exceeded its progress deadline")
}

func clientFor(t *testing.T, kubeconfig string) *kubernetes.Clientset {
	t.Helper()
	eventually(t, 60*time.Second, "operator kubeconfig", func() error { _, err := os.Stat(kubeconfig); return err })
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

func gitSyncOf(ctx context.Context, cs *kubernetes.Clientset) (*bosunv1.GitSync, error) {
	raw, err := cs.RESTClient().Get().AbsPath("/apis/bosun.dev/v1alpha1/gitsyncs/default").DoRaw(ctx)
	if err != nil {
		return nil, err
	}
	var gs bosunv1.GitSync
	return &gs, json.Unmarshal(raw, &gs)
}

// appliedBy is a condition: the operator behind cs has applied sha.
func appliedBy(ctx context.Context, cs *kubernetes.Clientset, sha string) func() error {
	return func() error {
		gs, err := gitSyncOf(ctx, cs)
		if err != nil {
			return err
		}
		if gs.Status.Applied.SHA != sha {
			return fmt.Errorf("applied %q, want %s (state %s: %s)", gs.Status.Applied.SHA, sha, gs.Status.State, gs.Status.Message)
		}
		return nil
	}
}

// syncLatency returns how long after start (the push) the operator behind cs reports sha
// applied, watching its GitSync status every 10 ms; it fails the test after timeout.
func syncLatency(t *testing.T, ctx context.Context, cs *kubernetes.Clientset, sha string, start time.Time, timeout time.Duration, what string) time.Duration {
	t.Helper()
	cond := appliedBy(ctx, cs, sha)
	var err error
	for time.Since(start) < timeout {
		if err = cond(); err == nil {
			return time.Since(start)
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%s: %.12s not applied within %s: %v", what, sha, timeout, err)
	return 0
}

func maxOf(ds []time.Duration) time.Duration {
	var m time.Duration
	for _, d := range ds {
		m = max(m, d)
	}
	return m
}

func median(ds []time.Duration) time.Duration {
	s := append([]time.Duration(nil), ds...)
	for i := range s {
		for j := i + 1; j < len(s); j++ {
			if s[j] < s[i] {
				s[i], s[j] = s[j], s[i]
			}
		}
	}
	return s[len(s)/2]
}

func countMarked(list []comment) int {
	n := 0
	for _, c := range list {
		if strings.Contains(c.Body, "<!-- bosun-plan -->") {
			n++
		}
	}
	return n
}

func waitStatus(t *testing.T, g *giteaServer, sha, context, state, descContains string) {
	t.Helper()
	eventually(t, 60*time.Second, fmt.Sprintf("%s %s on %.12s", context, state, sha), func() error {
		sts, err := g.statuses(repoName, sha)
		if err != nil {
			return err
		}
		st, ok := sts[context]
		if !ok || st.State != state || !strings.Contains(st.Description, descContains) {
			return fmt.Errorf("statuses: %+v", sts)
		}
		return nil
	})
}

func waitComment(t *testing.T, g *giteaServer, number int, want ...string) string {
	t.Helper()
	var body string
	eventually(t, 60*time.Second, fmt.Sprintf("plan comment on #%d", number), func() error {
		list, err := g.comments(repoName, number)
		if err != nil {
			return err
		}
		for _, c := range list {
			if !strings.Contains(c.Body, "<!-- bosun-plan -->") {
				continue
			}
			body = c.Body
			for _, w := range want {
				if !strings.Contains(c.Body, w) {
					return fmt.Errorf("comment lacks %q:\n%s", w, c.Body)
				}
			}
			return nil
		}
		return fmt.Errorf("no plan comment among %d", len(list))
	})
	return body
}

// operatorProc is a `bosun operator` in its own process group.
type operatorProc struct {
	cmd *exec.Cmd
	log *testutil.SyncBuffer
}

// operatorsStarted numbers the operators' log files.
var operatorsStarted atomic.Int32

func startOperator(t *testing.T, bin, dataDir string, args ...string) *operatorProc {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"operator", "--data-dir", dataDir}, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	log := &testutil.SyncBuffer{}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &operatorProc{cmd: cmd, log: log}
	n := operatorsStarted.Add(1)
	t.Cleanup(func() {
		p.stop()
		f := filepath.Join(os.TempDir(), fmt.Sprintf("bosun-e2e-forge-operator-%d-%s.log", n, filepath.Base(dataDir)))
		os.WriteFile(f, []byte(log.String()), 0o644) // kept for timing analysis, overwritten by the next run
		if t.Failed() {
			var lines []string
			for _, l := range strings.Split(log.String(), "\n") {
				if !strings.Contains(l, "msg=request") { // the access log drowns the rest
					lines = append(lines, l)
				}
			}
			t.Logf("operator %s log without requests (full log in %s):\n%s", dataDir, f, tail(strings.Join(lines, "\n"), 120))
		}
	})
	return p
}

// stop kills the operator as a crash would (no resignation: a successor waits out the lease).
func (p *operatorProc) stop() {
	if p.cmd.ProcessState == nil {
		syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		p.cmd.Wait()
	}
}

func (p *operatorProc) logContains(s string) bool { return strings.Contains(p.log.String(), s) }

func cliRun(t *testing.T, bin, kubeconfig string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"--kubeconfig", kubeconfig}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return stdout.String(), stderr.String(), code
}

func shortSHA(sha string) string {
	if len(sha) > 7 {
		return sha[:7]
	}
	return sha
}
