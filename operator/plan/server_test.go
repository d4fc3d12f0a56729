package plan

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bosun-gitops/bosun/operator/gitsync"
)

type cannedPlanner struct{ ref, sha string }

func (c *cannedPlanner) PlanRef(_ context.Context, ref, sha string) (*gitsync.Plan, error) {
	c.ref, c.sha = ref, sha
	return samplePlan(), nil
}

func TestHandler(t *testing.T) {
	h := NewHandler(memReader{}, nil)
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
