package forge_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/bosun-gitops/bosun/internal/resource"
	"github.com/bosun-gitops/bosun/operator/forge"
	"github.com/bosun-gitops/bosun/operator/forge/gitea"
	"github.com/bosun-gitops/bosun/operator/forge/github"
	"github.com/bosun-gitops/bosun/operator/gitsync"
	"github.com/bosun-gitops/bosun/operator/plan"
	"github.com/bosun-gitops/bosun/operator/webhook"
	repolayout "github.com/bosun-gitops/bosun/repo-layout"
	bosunv1 "github.com/bosun-gitops/bosun/repo-layout/v1alpha1"
	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// fakeForge implements the part of the Gitea/GitHub REST API that the providers use.
type fakeForge struct {
	mu       sync.Mutex
	prefix   string
	auth     string
	statuses map[string][]forge.StatusBody // by sha
	comments map[int][]forge.Comment
	nextID   int64
	authErrs int
}

func newFakeForge(prefix, auth string) *fakeForge {
	return &fakeForge{prefix: prefix, auth: auth, statuses: map[string][]forge.StatusBody{}, comments: map[int][]forge.Comment{}}
}

func (f *fakeForge) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if r.Header.Get("Authorization") != f.auth {
		f.authErrs++
		http.Error(w, "unauthorized", 401)
		return
	}
	p := strings.Split(strings.Trim(strings.TrimPrefix(r.URL.Path, f.prefix), "/"), "/")
	// repos/{o}/{r}/statuses/{sha} | repos/{o}/{r}/issues/{n}/comments | repos/{o}/{r}/issues/comments/{id}
	switch {
	case len(p) == 5 && p[3] == "statuses" && r.Method == http.MethodPost:
		var st forge.StatusBody
		json.NewDecoder(r.Body).Decode(&st)
		f.statuses[p[4]] = append(f.statuses[p[4]], st)
		w.WriteHeader(201)
	case len(p) == 6 && p[3] == "issues" && p[5] == "comments":
		n, _ := strconv.Atoi(p[4])
		if r.Method == http.MethodGet {
			if r.URL.Query().Get("page") != "1" {
				json.NewEncoder(w).Encode([]forge.Comment{})
				return
			}
			json.NewEncoder(w).Encode(f.comments[n])
			return
		}
		var c forge.Comment
		json.NewDecoder(r.Body).Decode(&c)
		f.nextID++
		c.ID = f.nextID
		f.comments[n] = append(f.comments[n], c)
		w.WriteHeader(201)
	case len(p) == 6 && p[3] == "issues" && p[4] == "comments" && r.Method == http.MethodPatch:
		id, _ := strconv.ParseInt(p[5], 10, 64)
		var c forge.Comment
		json.NewDecoder(r.Body).Decode(&c)
		for n, list := range f.comments {
			for i := range list {
				if list[i].ID == id {
					f.comments[n][i].Body = c.Body
				}
			}
		}
	default:
		http.Error(w, "not found: "+r.URL.Path, 404)
	}
}

func (f *fakeForge) lastStatus(sha, context string) forge.StatusBody {
	f.mu.Lock()
	defer f.mu.Unlock()
	var last forge.StatusBody
	for _, s := range f.statuses[sha] {
		if s.Context == context {
			last = s
		}
	}
	return last
}

// fakePlanner returns canned plans by ref.
type fakePlanner map[string]*gitsync.Plan

func (p fakePlanner) PlanRef(_ context.Context, ref, sha string) (*gitsync.Plan, error) {
	return p[ref], nil
}

func scalePlan(replicas int32) *gitsync.Plan {
	cm := func(v string) *corev1.ConfigMap {
		return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "c", Namespace: "ns"}, Data: map[string]string{"k": v}}
	}
	return &gitsync.Plan{Commit: "h", Changes: []gitsync.Change{{Action: gitsync.ActionUpdate, Resource: resource.ConfigMaps,
		Namespace: "ns", Name: "c", File: "c.yaml", Line: 1, Live: cm("old"), Desired: cm(strconv.Itoa(int(replicas)))}}}
}

func TestIntegrationProviders(t *testing.T) {
	tests := []struct {
		name     string
		prefix   string
		auth     string
		provider func(url string) forge.Provider
	}{
		{"gitea", "/api/v1", "token tok", func(u string) forge.Provider { return gitea.New(u, "tok", nil) }},
		{"github", "", "Bearer tok", func(u string) forge.Provider { return github.New(u, "tok", nil) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ff := newFakeForge(tt.prefix, tt.auth)
			srv := httptest.NewServer(ff)
			defer srv.Close()
			planner := fakePlanner{
				"refs/pull/7/head": scalePlan(3),
				"refs/pull/8/head": {Commit: "bad", Errors: repolayout.ErrorList{{File: "apps/bad.yaml", Line: 4, Field: "data", Reason: "bad key"}}},
			}
			in := forge.NewIntegration(forge.IntegrationConfig{Provider: tt.provider(srv.URL), Planner: planner, Repo: "o/fleet"})
			ctx := context.Background()
			in.HandlePullRequest(ctx, webhook.PullRequest{Repo: "o/fleet", Number: 7, Action: webhook.ActionOpened, HeadSHA: "h1"})
			planner["refs/pull/7/head"] = scalePlan(4)
			in.HandlePullRequest(ctx, webhook.PullRequest{Repo: "o/fleet", Number: 7, Action: webhook.ActionUpdated, HeadSHA: "h2"})
			in.HandlePullRequest(ctx, webhook.PullRequest{Repo: "o/fleet", Number: 8, Action: webhook.ActionOpened, HeadSHA: "b1"})
			in.HandlePullRequest(ctx, webhook.PullRequest{Repo: "o/fleet", Number: 8, Action: webhook.ActionClosed, HeadSHA: "b1"})

			if got := ff.lastStatus("h2", forge.ContextPlan); got.State != forge.StateSuccess || got.Description != "valid, 1 change: 0 to create, 1 to update, 0 to delete" {
				t.Errorf("status on h2: %+v", got)
			}
			if got := ff.lastStatus("b1", forge.ContextPlan); got.State != forge.StateFailure || got.Description != "invalid: 1 error" {
				t.Errorf("status on b1: %+v", got)
			}
			if n := len(ff.comments[7]); n != 1 {
				t.Fatalf("PR 7 has %d comments, want 1 updated in place", n)
			}
			if body := ff.comments[7][0].Body; !strings.Contains(body, plan.CommentMarker) || !strings.Contains(body, "+ data.k: 4") {
				t.Errorf("PR 7 comment not updated to the latest plan:\n%s", body)
			}
			if body := ff.comments[8][0].Body; !strings.Contains(body, "apps/bad.yaml:4: data: bad key") {
				t.Errorf("PR 8 comment lacks the error:\n%s", body)
			}

			in.DeployProgress(ctx, "m1", bosunv1.CommitHealth{Status: bosunv1.HealthProgressing, Message: "rolling out 1 workloads"})
			if got := ff.lastStatus("m1", forge.ContextDeploy); got.State != forge.StatePending {
				t.Errorf("deploy status while rolling out: %+v", got)
			}
			in.DeploySettled(ctx, "m1", bosunv1.CommitHealth{Status: bosunv1.HealthDegraded, Message: `Deployment web: deployment "web" exceeded its progress deadline`})
			want := forge.StatusBody{State: forge.StateFailure, Context: forge.ContextDeploy, Description: `Degraded: Deployment web: deployment "web" exceeded its progress deadline`}
			if diff := cmp.Diff(want, ff.lastStatus("m1", forge.ContextDeploy)); diff != "" {
				t.Errorf("deploy status (-want +got):\n%s", diff)
			}
			if ff.authErrs != 0 {
				t.Errorf("%d requests without the right Authorization", ff.authErrs)
			}
		})
	}
}

func TestRepoFromURL(t *testing.T) {
	for in, want := range map[string]string{
		"http://127.0.0.1:3000/bosun/fleet.git": "bosun/fleet",
		"https://github.com/o/r":                "o/r",
		"git@github.com:o/r.git":                "o/r",
		"ssh://git@host:22/o/r.git":             "o/r",
		"/srv/repo.git":                         "srv/repo",
	} {
		if got := forge.RepoFromURL(in); got != want {
			t.Errorf("RepoFromURL(%q) = %q, want %q", in, got, want)
		}
	}
}
