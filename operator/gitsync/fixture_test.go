package gitsync

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/bosun-gitops/bosun/internal/resource"
	"github.com/bosun-gitops/bosun/operator/store"
	bosunv1 "github.com/bosun-gitops/bosun/repo-layout/v1alpha1"
)

// gitFixture is a bare repository and a work clone that tests commit to and push from with the
// git CLI, like a user would.
type gitFixture struct {
	t    testing.TB
	bare string
	work string
}

func newGitFixture(t testing.TB) *gitFixture {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git CLI not installed")
	}
	dir := t.TempDir()
	f := &gitFixture{t: t, bare: filepath.Join(dir, "repo.git"), work: filepath.Join(dir, "work")}
	f.run(dir, "init", "--quiet", "--bare", "--initial-branch=main", f.bare)
	f.run(dir, "init", "--quiet", "--initial-branch=main", f.work)
	f.git("remote", "add", "origin", f.bare)
	f.git("config", "user.name", "Test Author")
	f.git("config", "user.email", "author@example.com")
	f.git("config", "commit.gpgsign", "false")
	return f
}

func (f *gitFixture) run(dir string, args ...string) string {
	f.t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		f.t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

func (f *gitFixture) git(args ...string) string {
	f.t.Helper()
	return f.run(f.work, args...)
}

func (f *gitFixture) write(name, content string) {
	f.t.Helper()
	p := filepath.Join(f.work, filepath.FromSlash(name))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		f.t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		f.t.Fatal(err)
	}
}

func (f *gitFixture) remove(name string) {
	f.t.Helper()
	if err := os.Remove(filepath.Join(f.work, filepath.FromSlash(name))); err != nil {
		f.t.Fatal(err)
	}
}

// commitPush commits everything and pushes it to branch; it returns the commit SHA.
func (f *gitFixture) commitPush(msg, branch string) string {
	f.t.Helper()
	f.git("add", "-A")
	f.git("commit", "--quiet", "--allow-empty", "-m", msg)
	f.git("push", "--quiet", "--force", "origin", "HEAD:refs/heads/"+branch)
	return f.git("rev-parse", "HEAD")
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func namespace(name string) string {
	return fmt.Sprintf("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: %s\n", name)
}

func configMap(ns, name, value string) string {
	return fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: %s\n  namespace: %s\ndata:\n  key: %q\n", name, ns, value)
}

// deployment is a Deployment-sized manifest (about 1 KiB of YAML).
func deployment(ns, name string, replicas int) string {
	return fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata:
  name: %[2]s
  namespace: %[1]s
  labels:
    app: %[2]s
    tier: backend
spec:
  replicas: %[3]d
  selector:
    matchLabels:
      app: %[2]s
  template:
    metadata:
      labels:
        app: %[2]s
        tier: backend
    spec:
      containers:
      - name: app
        image: registry.example.com/team/%[2]s:1.2.3
        args: ["--listen=:8080", "--log-level=info", "--cache-size=128"]
        env:
        - name: MODE
          value: production
        - name: SERVICE_NAME
          value: %[2]s
        ports:
        - containerPort: 8080
          name: http
        resources:
          requests:
            cpu: 100m
            memory: 64Mi
          limits:
            cpu: 500m
            memory: 256Mi
`, ns, name, replicas)
}

func service(ns, name string, labels string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Service
metadata:
  name: %[2]s
  namespace: %[1]s
  labels: {%[3]s}
spec:
  selector:
    app: %[2]s
  ports:
  - name: http
    port: 80
    targetPort: 8080
`, ns, name, labels)
}

// names lists "namespace/name" of every stored object of res.
func names(t *testing.T, st *store.Store, res *resource.Resource) map[string]resource.Object {
	t.Helper()
	l, err := st.List(context.Background(), res, "", store.ListOptions{})
	if err != nil {
		t.Fatalf("listing %s: %v", res, err)
	}
	out := make(map[string]resource.Object, len(l.Items))
	for _, o := range l.Items {
		out[o.GetNamespace()+"/"+o.GetName()] = o
	}
	return out
}

func keys(m map[string]resource.Object) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func gitSyncStatus(t *testing.T, st *store.Store, name string) bosunv1.GitSyncStatus {
	t.Helper()
	obj, err := st.Get(context.Background(), resource.GitSyncs, "", name)
	if err != nil {
		t.Fatalf("reading GitSync: %v", err)
	}
	return obj.(*bosunv1.GitSync).Status
}

// waitFor polls cond until it holds; the deadline only bounds a hung test.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func readWorkFile(f *gitFixture, name string) (string, error) {
	data, err := os.ReadFile(filepath.Join(f.work, filepath.FromSlash(name)))
	return string(data), err
}
