package plan

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bosun-gitops/bosun/internal/testutil"
	"github.com/bosun-gitops/bosun/operator/gitsync"
	"github.com/bosun-gitops/bosun/operator/store/storetest"
	"github.com/google/go-cmp/cmp"
)

type cannedPlanner struct{ ref, sha string }

func (c *cannedPlanner) PlanRef(_ context.Context, ref, sha string) (*gitsync.Plan, error) {
	c.ref, c.sha = ref, sha
	return samplePlan(), nil
}

func TestHandler(t *testing.T) {
	h := NewHandler(memReader{}, ".", nil)
	serve := func(body []byte, contentType string) (*httptest.ResponseRecorder, *Report) {
		req := httptest.NewRequest(http.MethodPost, "/apis/bosun.dev/v1alpha1/plans", bytes.NewReader(body))
		req.Header.Set("Content-Type", contentType)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		var rep Report
		if w.Code == http.StatusOK {
			if err := json.Unmarshal(w.Body.Bytes(), &rep); err != nil {
				t.Fatal(err)
			}
		}
		return w, &rep
	}

	// A ref needs the leader's planner.
	if w, _ := serve([]byte(`{"ref":"main"}`), "application/json"); w.Code != http.StatusServiceUnavailable {
		t.Errorf("ref without a planner: code %d, want 503", w.Code)
	}
	p := &cannedPlanner{}
	h.SetPlanner(p)
	w, rep := serve([]byte(`{"ref":"refs/pull/3/head","sha":"abc"}`), "application/json")
	if w.Code != http.StatusOK || p.ref != "refs/pull/3/head" || p.sha != "abc" || rep.Summary.Changes() != 4 {
		t.Errorf("ref plan: code %d, planner got %q %q, summary %+v", w.Code, p.ref, p.sha, rep.Summary)
	}

	// A directory, uploaded as a gzipped tar: valid, then invalid.
	dir := t.TempDir()
	writeRepo(t, dir, 20, 1)
	var tarball bytes.Buffer
	if err := Tar(&tarball, dir); err != nil {
		t.Fatal(err)
	}
	w, rep = serve(tarball.Bytes(), ContentTypeTarball)
	if w.Code != http.StatusOK || rep.Summary.Create != 22 || rep.ExitCode() != ExitChanges {
		t.Errorf("directory plan: code %d %s, summary %+v", w.Code, w.Body, rep.Summary)
	}
	os.WriteFile(filepath.Join(dir, "apps", "bad.yaml"), []byte("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x, namespace: shop}\ndata: {\"bad key!\": x}\n"), 0o644)
	tarball.Reset()
	Tar(&tarball, dir)
	w, rep = serve(tarball.Bytes(), ContentTypeTarball)
	if w.Code != http.StatusOK || rep.ExitCode() != ExitInvalid || len(rep.Errors) != 1 || rep.Errors[0].String()[:16] != "apps/bad.yaml:4:" {
		t.Errorf("invalid directory plan: code %d, errors %+v", w.Code, rep.Errors)
	}
	if w, _ := serve([]byte("not a tarball"), ContentTypeTarball); w.Code != http.StatusBadRequest {
		t.Errorf("garbage upload: code %d, want 400", w.Code)
	}
	get := httptest.NewRecorder()
	h.ServeHTTP(get, httptest.NewRequest(http.MethodGet, "/", nil))
	if get.Code != http.StatusMethodNotAllowed || !strings.Contains(get.Body.String(), "POST") {
		t.Errorf("GET: code %d", get.Code)
	}
}

// TestDirectoryPlanWithSyncPath checks that a directory plan on an operator that syncs a
// sub-path (--path apps) is the plan of a ref with the same content: sources and applied
// hashes relative to the repository root, whichever directory of the work tree is uploaded.
func TestDirectoryPlanWithSyncPath(t *testing.T) {
	ctx := t.Context()
	repo := testutil.NewGitRepo(t)
	web := func(replicas int) string {
		return fmt.Sprintf("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: shop}\nspec:\n  replicas: %d\n"+
			"  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n"+
			"    spec: {containers: [{name: web, image: registry.local/web:1}]}\n", replicas)
	}
	repo.Write(map[string]string{
		"README.md":     "the fleet\n",
		"apps/ns.yaml":  "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n",
		"apps/web.yaml": web(2),
		"other/x.yaml":  "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n",
	})
	repo.CommitAndPush("initial")
	st := storetest.NewStore(t)
	syncer, err := gitsync.New(gitsync.Config{Repo: repo.Bare, Path: "apps", WorkDir: t.TempDir()}, st, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := syncer.SyncOnce(ctx); err != nil {
		t.Fatal(err)
	}
	h := NewHandler(st, "apps", nil)
	upload := func(dir, path string) (int, *Report, string) {
		t.Helper()
		var tarball bytes.Buffer
		if err := Tar(&tarball, dir); err != nil {
			t.Fatal(err)
		}
		target := "/apis/bosun.dev/v1alpha1/plans"
		if path != "" {
			target += "?" + PathParam + "=" + path
		}
		req := httptest.NewRequest(http.MethodPost, target, &tarball)
		req.Header.Set("Content-Type", ContentTypeTarball)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		var rep Report
		if w.Code == http.StatusOK {
			if err := json.Unmarshal(w.Body.Bytes(), &rep); err != nil {
				t.Fatal(err)
			}
		}
		return w.Code, &rep, w.Body.String()
	}
	apps := filepath.Join(repo.Work, "apps")
	uploads := []struct {
		name, dir, path string
	}{
		{"the work tree", repo.Work, "."},
		{"the synced directory", apps, "apps"},
		{"the work tree, path unknown", repo.Work, ""},
		{"the synced directory, path unknown", apps, ""},
	}
	for _, u := range uploads {
		if code, rep, body := upload(u.dir, u.path); code != http.StatusOK || rep.ExitCode() != ExitNoChanges {
			t.Errorf("%s of the synced commit: code %d, exit %d, want no changes: %s", u.name, code, rep.ExitCode(), body)
		}
	}
	if code, _, body := upload(filepath.Join(repo.Work, "other"), "other"); code != http.StatusBadRequest || !strings.Contains(body, "the operator syncs apps") {
		t.Errorf("a directory beside the synced path: code %d %s, want 400 naming the synced path", code, body)
	}

	// An edit: the directory's plan is the plan of the same content pushed to a branch.
	repo.Write(map[string]string{"apps/web.yaml": web(5)})
	repo.Git(repo.Work, "add", "-A")
	repo.Git(repo.Work, "commit", "--quiet", "-m", "scale")
	repo.Git(repo.Work, "push", "--quiet", "origin", "HEAD:refs/heads/scale")
	ref, err := PlanRef(ctx, syncer, "scale", "")
	if err != nil {
		t.Fatal(err)
	}
	if ref.Summary.Update != 1 || ref.Items[0].File != "apps/web.yaml" {
		t.Fatalf("plan of the branch: %+v", ref)
	}
	for _, u := range uploads {
		_, rep, _ := upload(u.dir, u.path)
		if diff := cmp.Diff(ref.Items, rep.Items); diff != "" {
			t.Errorf("%s: directory plan differs from the branch's (-ref +dir):\n%s", u.name, diff)
		}
	}
	os.WriteFile(filepath.Join(apps, "bad.yaml"), []byte("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x, namespace: shop}\ndata: {\"bad key!\": x}\n"), 0o644)
	if _, rep, _ := upload(repo.Work, "."); rep.ExitCode() != ExitInvalid || len(rep.Errors) != 1 || !strings.HasPrefix(rep.Errors[0].String(), "apps/bad.yaml:4:") {
		t.Errorf("invalid directory: errors %+v, want apps/bad.yaml:4", rep.Errors)
	}
}
