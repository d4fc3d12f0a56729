//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

type listJSON struct {
	Items []struct {
		Metadata struct {
			Name        string            `json:"name"`
			Namespace   string            `json:"namespace"`
			Annotations map[string]string `json:"annotations"`
		} `json:"metadata"`
		Spec struct {
			Replicas *int `json:"replicas"`
		} `json:"spec"`
	} `json:"items"`
}

func getList(t *testing.T, bin, dataDir string, args ...string) listJSON {
	t.Helper()
	out, errOut, code := cli(t, bin, dataDir, append([]string{"get"}, append(args, "-o", "json")...)...)
	if code != 0 {
		t.Fatalf("bosun get %v: exit %d: %s", args, code, errOut)
	}
	var l listJSON
	if err := json.Unmarshal([]byte(out), &l); err != nil {
		t.Fatalf("bosun get %v -o json: %v\n%s", args, err, out)
	}
	return l
}

// syncNow runs `bosun sync` and returns its output and exit code.
func syncNow(t *testing.T, bin, dataDir string) (string, int) {
	t.Helper()
	out, errOut, code := cli(t, bin, dataDir, "sync", "--timeout", "60s")
	return out + errOut, code
}

// TestGitPushToAPI walks the foundation as a user does: init a repository, start the operator,
// push changes and read them back with the CLI, push a broken commit, prune, and survive kill -9.
func TestGitPushToAPI(t *testing.T) {
	bin := bosunBin(t)
	repo := newGitRepo(t, bin)
	if out, errOut, code := run(t, repo.work, nil, bin, "validate", "."); code != 0 {
		t.Fatalf("bosun validate on the starter repository: exit %d\n%s%s", code, out, errOut)
	}

	dataDir := filepath.Join(t.TempDir(), "data")
	listen := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	startOperator(t, bin, dataDir, "--repo", repo.bare, "--listen", listen, "--interval", "1h")

	eventually(t, 90*time.Second, "first sync", func() error {
		out, errOut, code := cli(t, bin, dataDir, "status")
		if code != 0 || !strings.Contains(out, "Synced") {
			return errorf("exit %d: %s%s", code, out, errOut)
		}
		return nil
	})

	deps := getList(t, bin, dataDir, "deployments", "-A")
	if len(deps.Items) == 0 {
		t.Fatal("the starter repository's Deployment did not appear")
	}
	dep := deps.Items[0]
	src := dep.Metadata.Annotations["bosun.dev/source"]
	if src == "" {
		t.Fatalf("deployment %s/%s has no bosun.dev/source annotation", dep.Metadata.Namespace, dep.Metadata.Name)
	}

	// Scale through Git and add a ConfigMap.
	depFile := filepath.Join(repo.work, src)
	b, err := os.ReadFile(depFile)
	if err != nil {
		t.Fatal(err)
	}
	replicasRE := regexp.MustCompile(`(?m)^(\s*)replicas:\s*\d+`)
	if !replicasRE.Match(b) {
		t.Fatalf("%s has no replicas field to edit:\n%s", src, b)
	}
	repo.write(t, src, replicasRE.ReplaceAllString(string(b), "${1}replicas: 7"))
	repo.write(t, "extra/settings.yaml", fmt.Sprintf(`apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  namespace: %s
data:
  color: blue
`, dep.Metadata.Namespace))
	good := repo.commitAndPush(t, "scale and add settings")
	if out, code := syncNow(t, bin, dataDir); code != 0 {
		t.Fatalf("bosun sync after a good commit: exit %d\n%s", code, out)
	}
	got := getList(t, bin, dataDir, "deployments", "-n", dep.Metadata.Namespace)
	if r := got.Items[0].Spec.Replicas; r == nil || *r != 7 {
		t.Fatalf("replicas after the push = %v, want 7", r)
	}
	if cms := getList(t, bin, dataDir, "configmaps", "-n", dep.Metadata.Namespace); !hasName(cms, "settings") {
		t.Fatal("configmap settings did not appear")
	}

	// A broken commit changes nothing and reports every error with file:line.
	repo.write(t, "extra/broken.yaml", `apiVersion: v1
kind: ConfigMap
metadata:
  name: broken
  namespace: default
datta:
  typo: true
---
apiVersion: apps/v1
kind: Deploymant
metadata:
  name: x
`)
	repo.write(t, src, replicasRE.ReplaceAllString(string(b), "${1}replicas: 9"))
	repo.commitAndPush(t, "broken")
	out, code := syncNow(t, bin, dataDir)
	if code != 1 {
		t.Fatalf("bosun sync after a broken commit: exit %d, want 1\n%s", code, out)
	}
	for _, want := range []string{"extra/broken.yaml:6:", "extra/broken.yaml:10:", "Failed"} {
		if !strings.Contains(out, want) {
			t.Errorf("bosun sync output lacks %q:\n%s", want, out)
		}
	}
	got = getList(t, bin, dataDir, "deployments", "-n", dep.Metadata.Namespace)
	if r := got.Items[0].Spec.Replicas; r == nil || *r != 7 {
		t.Fatalf("replicas after a broken commit = %v, want 7 (nothing applied)", r)
	}
	status, _, _ := cli(t, bin, dataDir, "status")
	if !strings.Contains(status, good[:7]) {
		t.Errorf("status does not show the last good commit %s as applied:\n%s", good[:7], status)
	}

	// Fix it and delete the ConfigMap's file: it is pruned.
	os.Remove(filepath.Join(repo.work, "extra/broken.yaml"))
	os.Remove(filepath.Join(repo.work, "extra/settings.yaml"))
	repo.commitAndPush(t, "remove settings")
	if out, code := syncNow(t, bin, dataDir); code != 0 {
		t.Fatalf("bosun sync after the fix: exit %d\n%s", code, out)
	}
	if cms := getList(t, bin, dataDir, "configmaps", "-n", dep.Metadata.Namespace); hasName(cms, "settings") {
		t.Fatal("configmap settings was not pruned after its file was deleted")
	}
	if _, errOut, code := cli(t, bin, dataDir, "get", "configmap", "settings", "-n", dep.Metadata.Namespace); code == 0 || !strings.Contains(errOut, "not found") {
		t.Errorf("bosun get of a pruned object: exit %d, stderr %q; want a not-found error", code, errOut)
	}

	// A force-push (the last commit amended) applies nothing until accepted for its commit.
	repo.write(t, "extra/amended.yaml", fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: amended\n  namespace: %s\n", dep.Metadata.Namespace))
	mustRun(t, repo.work, "git", "add", "-A")
	mustRun(t, repo.work, "git", "commit", "--quiet", "--amend", "-m", "remove settings, amended")
	mustRun(t, repo.work, "git", "push", "--quiet", "--force", "origin", "main")
	amended := strings.TrimSpace(mustRun(t, repo.work, "git", "rev-parse", "HEAD"))
	out, code = syncNow(t, bin, dataDir)
	if code != 1 || !strings.Contains(out, "history rewritten") || !strings.Contains(out, "bosun sync --accept-rewrite "+amended[:7]) {
		t.Fatalf("bosun sync after a force-push: exit %d, want 1 and how to accept the rewrite\n%s", code, out)
	}
	if cms := getList(t, bin, dataDir, "configmaps", "-n", dep.Metadata.Namespace); hasName(cms, "amended") {
		t.Fatal("a refused force-push was applied")
	}
	if out, errOut, code := cli(t, bin, dataDir, "sync", "--timeout", "60s", "--accept-rewrite", amended[:7]); code != 0 {
		t.Fatalf("bosun sync --accept-rewrite: exit %d\n%s%s", code, out, errOut)
	}
	if cms := getList(t, bin, dataDir, "configmaps", "-n", dep.Metadata.Namespace); !hasName(cms, "amended") {
		t.Fatal("the accepted force-push was not applied")
	}

	// The table output names the columns kubectl does.
	table, _, _ := cli(t, bin, dataDir, "get", "deploy", "-A", "-o", "wide")
	for _, col := range []string{"NAMESPACE", "NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE", "IMAGES", "SOURCE", src} {
		if !strings.Contains(table, col) {
			t.Errorf("bosun get deploy -A -o wide lacks %q:\n%s", col, table)
		}
	}
}

// TestOperatorRestartKeepsState kills the operator with SIGKILL and checks that a restart on the
// same data dir serves the same objects and keeps syncing.
func TestOperatorRestartKeepsState(t *testing.T) {
	bin := bosunBin(t)
	repo := newGitRepo(t, bin)
	dataDir := filepath.Join(t.TempDir(), "data")
	listen := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	op := startOperator(t, bin, dataDir, "--repo", repo.bare, "--listen", listen, "--interval", "1h")
	eventually(t, 90*time.Second, "first sync", func() error {
		out, _, code := cli(t, bin, dataDir, "status")
		if code != 0 || !strings.Contains(out, "Synced") {
			return errorf("not synced: %s", out)
		}
		return nil
	})
	before := getList(t, bin, dataDir, "deployments", "-A")
	op.kill()

	startOperator(t, bin, dataDir, "--repo", repo.bare, "--listen", listen, "--interval", "1h")
	eventually(t, 90*time.Second, "restart", func() error {
		_, _, code := cli(t, bin, dataDir, "get", "deployments", "-A")
		if code != 0 {
			return errorf("API not back yet")
		}
		return nil
	})
	after := getList(t, bin, dataDir, "deployments", "-A")
	if len(after.Items) != len(before.Items) {
		t.Fatalf("deployments after restart: %d, before: %d", len(after.Items), len(before.Items))
	}
	repo.write(t, "extra/after-restart.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: after-restart\ndata: {a: b}\n")
	repo.commitAndPush(t, "after restart")
	if out, code := syncNow(t, bin, dataDir); code != 0 {
		t.Fatalf("bosun sync after restart: exit %d\n%s", code, out)
	}
	if cms := getList(t, bin, dataDir, "configmaps", "-n", "default"); !hasName(cms, "after-restart") {
		t.Fatal("a commit pushed after the restart was not applied")
	}
}

func hasName(l listJSON, name string) bool {
	for _, it := range l.Items {
		if it.Metadata.Name == name {
			return true
		}
	}
	return false
}
