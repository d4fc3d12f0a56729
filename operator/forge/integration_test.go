package forge_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

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

// fakeForge implements the part of the Gitea/GitHub REST API that the providers use, with the
// forges' own behaviour where it matters: GitHub pages comments, Gitea (1.26's
// ListIssueComments) ignores page and limit and returns them all.
type fakeForge struct {
	mu       sync.Mutex
	prefix   string
	auth     string
	paged    bool
	self     forge.User
	statuses map[string][]forge.StatusBody // by sha
	comments map[int][]forge.Comment
	nextID   int64
	authErrs int
	lists    int  // comment listings served
	stuck    bool // comment listings hang until the client gives up
	// abandoned counts stuck listings whose client gave up; the others end after a while
	// with 504.
	abandoned int
}

// maxListings ends a client that lists comments without end (a listing loop) with errors.
const maxListings = 200

func newFakeForge(prefix, auth string, paged bool) *fakeForge {
	return &fakeForge{prefix: prefix, auth: auth, paged: paged, self: forge.User{ID: 99, Login: "bosun-bot"},
		statuses: map[string][]forge.StatusBody{}, comments: map[int][]forge.Comment{}}
}

// seed adds n comments by user to pull request number; the one at index marked (if any)
// carries Bosun's marker.
func (f *fakeForge) seed(number, n int, user forge.User, marked int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := range n {
		f.nextID++
		body := fmt.Sprintf("comment %d", i)
		if i == marked {
			body = plan.CommentMarker + "\nnot Bosun's plan"
		}
		f.comments[number] = append(f.comments[number], forge.Comment{ID: f.nextID, Body: body, User: user})
	}
}

func (f *fakeForge) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := strings.Split(strings.Trim(strings.TrimPrefix(r.URL.Path, f.prefix), "/"), "/")
	isList := len(p) == 6 && p[3] == "issues" && p[5] == "comments" && r.Method == http.MethodGet
	f.mu.Lock()
	stuck := f.stuck && isList
	f.mu.Unlock()
	if stuck {
		select {
		case <-r.Context().Done():
			f.mu.Lock()
			f.abandoned++
			f.mu.Unlock()
		case <-time.After(20 * time.Second):
			http.Error(w, "gateway timeout", http.StatusGatewayTimeout)
		}
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if r.Header.Get("Authorization") != f.auth {
		f.authErrs++
		http.Error(w, "unauthorized", 401)
		return
	}
	// user | repos/{o}/{r}/statuses/{sha} | repos/{o}/{r}/issues/{n}/comments | repos/{o}/{r}/issues/comments/{id}
	switch {
	case len(p) == 1 && p[0] == "user" && r.Method == http.MethodGet:
		json.NewEncoder(w).Encode(f.self)
	case len(p) == 5 && p[3] == "statuses" && r.Method == http.MethodPost:
		var st forge.StatusBody
		json.NewDecoder(r.Body).Decode(&st)
		f.statuses[p[4]] = append(f.statuses[p[4]], st)
		w.WriteHeader(201)
	case isList:
		n, _ := strconv.Atoi(p[4])
		f.lists++
		if f.lists > maxListings {
			http.Error(w, "too many listings", 500)
			return
		}
		list := f.comments[n]
		if f.paged {
			page, _ := strconv.Atoi(r.URL.Query().Get("page"))
			size, _ := strconv.Atoi(r.URL.Query().Get("per_page"))
			if page < 1 || size < 1 {
				http.Error(w, "page and per_page expected", 400)
				return
			}
			list = list[min((page-1)*size, len(list)):min(page*size, len(list))]
		}
		json.NewEncoder(w).Encode(list)
	case len(p) == 6 && p[3] == "issues" && p[5] == "comments" && r.Method == http.MethodPost:
		n, _ := strconv.Atoi(p[4])
		var c forge.Comment
		json.NewDecoder(r.Body).Decode(&c)
		f.nextID++
		c.ID, c.User = f.nextID, f.self
		f.comments[n] = append(f.comments[n], c)
		w.WriteHeader(201)
	case len(p) == 6 && p[3] == "issues" && p[4] == "comments" && r.Method == http.MethodPatch:
		id, _ := strconv.ParseInt(p[5], 10, 64)
		var c forge.Comment
		json.NewDecoder(r.Body).Decode(&c)
		for n, list := range f.comments {
			for i := range list {
				if list[i].ID != id {
					continue
				}
				if list[i].User.ID != f.self.ID {
					http.Error(w, "only the author may edit a comment", 403)
					return
				}
				f.comments[n][i].Body = c.Body
			}
		}
	default:
		http.Error(w, "not found: "+r.URL.Path, 404)
	}
}

// ours returns the comments of pull request number that the token's account wrote.
func (f *fakeForge) ours(number int) []forge.Comment {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []forge.Comment
	for _, c := range f.comments[number] {
		if c.User.ID == f.self.ID {
			out = append(out, c)
		}
	}
	return out
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

var alice = forge.User{ID: 7, Login: "alice"}

type providerCase struct {
	name     string
	prefix   string
	auth     string
	paged    bool
	pageSize int
	provider func(url string, hc *http.Client) forge.Provider
}

var providers = []providerCase{
	{"gitea", "/api/v1", "token tok", false, 50, func(u string, hc *http.Client) forge.Provider { return gitea.New(u, "tok", hc) }},
	{"github", "", "Bearer tok", true, 100, func(u string, hc *http.Client) forge.Provider { return github.New(u, "tok", hc) }},
}

func opened(number int, head string) webhook.PullRequest {
	return webhook.PullRequest{Repo: "o/fleet", Number: number, Action: webhook.ActionOpened, HeadSHA: head, Base: "main"}
}

func TestIntegrationProviders(t *testing.T) {
	for _, tt := range providers {
		t.Run(tt.name, func(t *testing.T) {
			ff := newFakeForge(tt.prefix, tt.auth, tt.paged)
			srv := httptest.NewServer(ff)
			defer srv.Close()
			planner := fakePlanner{
				"refs/pull/7/head": scalePlan(3),
				"refs/pull/8/head": {Commit: "bad", Errors: repolayout.ErrorList{{File: "apps/bad.yaml", Line: 4, Field: "data", Reason: "bad key"}}},
			}
			in := forge.NewIntegration(forge.IntegrationConfig{Provider: tt.provider(srv.URL, nil), Planner: planner, Repo: "o/fleet"})
			ctx := context.Background()
			in.HandlePullRequest(ctx, opened(7, "h1"))
			planner["refs/pull/7/head"] = scalePlan(4)
			updated := opened(7, "h2")
			updated.Action = webhook.ActionUpdated
			in.HandlePullRequest(ctx, updated)
			in.HandlePullRequest(ctx, opened(8, "b1"))
			closed := opened(8, "b1")
			closed.Action = webhook.ActionClosed
			in.HandlePullRequest(ctx, closed)

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
			// A newer commit took over before m2's rollout settled: a final word, not pending.
			in.DeployProgress(ctx, "m2", bosunv1.CommitHealth{Status: bosunv1.HealthProgressing, Message: "rolling out 1 workloads"})
			in.DeploySuperseded(ctx, "m2", "0123456789abcdef", bosunv1.CommitHealth{Status: bosunv1.HealthProgressing, Message: "Deployment web: 1 of 3 updated replicas are available"})
			want = forge.StatusBody{State: forge.StateError, Context: forge.ContextDeploy,
				Description: "superseded by 0123456789ab before its rollout settled (Progressing: Deployment web: 1 of 3 updated replicas are available)"}
			if diff := cmp.Diff(want, ff.lastStatus("m2", forge.ContextDeploy)); diff != "" {
				t.Errorf("deploy status of a superseded commit (-want +got):\n%s", diff)
			}
			if ff.authErrs != 0 {
				t.Errorf("%d requests without the right Authorization", ff.authErrs)
			}
		})
	}
}

// TestCommentAmongMany checks the plan comment on a pull request with more comments than a
// page, one of them another user's that carries Bosun's marker: the listing ends (Gitea returns
// every comment whatever page is asked for), the other user's comment is left alone, and
// Bosun's own comment is found again and edited in place.
func TestCommentAmongMany(t *testing.T) {
	for _, tt := range providers {
		t.Run(tt.name, func(t *testing.T) {
			ff := newFakeForge(tt.prefix, tt.auth, tt.paged)
			srv := httptest.NewServer(ff)
			defer srv.Close()
			ff.seed(7, tt.pageSize+tt.pageSize/2, alice, 3)
			planner := fakePlanner{"refs/pull/7/head": scalePlan(3)}
			in := forge.NewIntegration(forge.IntegrationConfig{Provider: tt.provider(srv.URL, nil), Planner: planner, Repo: "o/fleet"})
			in.HandlePullRequest(t.Context(), opened(7, "h1"))
			planner["refs/pull/7/head"] = scalePlan(4)
			in.HandlePullRequest(t.Context(), opened(7, "h2"))

			ours := ff.ours(7)
			if len(ours) != 1 || !strings.Contains(ours[0].Body, "+ data.k: 4") {
				t.Fatalf("Bosun's comments: %+v, want one with the latest plan", ours)
			}
			if got := ff.comments[7][3]; got.User != alice || !strings.HasSuffix(got.Body, "not Bosun's plan") {
				t.Errorf("alice's marked comment was changed: %+v", got)
			}
			if ff.lists >= maxListings {
				t.Errorf("%d comment listings: the listing never ended", ff.lists)
			}
			if got := ff.lastStatus("h2", forge.ContextPlan); got.State != forge.StateSuccess {
				t.Errorf("status on h2: %+v", got)
			}
		})
	}
}

// TestEventTimeout checks that a forge call that hangs holds a pull request for at most the
// event timeout: the client gives up, and the next event of the pull request is handled.
func TestEventTimeout(t *testing.T) {
	ff := newFakeForge("/api/v1", "token tok", false)
	srv := httptest.NewServer(ff)
	defer srv.Close()
	ff.stuck = true
	planner := fakePlanner{"refs/pull/7/head": scalePlan(3)}
	// No client timeout: only the event's own bounds the call.
	in := forge.NewIntegration(forge.IntegrationConfig{Provider: gitea.New(srv.URL, "tok", &http.Client{}), Planner: planner,
		Repo: "o/fleet", EventTimeout: 500 * time.Millisecond})
	in.HandlePullRequest(t.Context(), opened(7, "h1"))
	// The server notices the client leaving a moment later; a client that never leaves gets
	// a 504 after 20 s instead.
	var abandoned int
	for deadline := time.Now().Add(25 * time.Second); abandoned == 0 && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		ff.mu.Lock()
		abandoned = ff.abandoned
		ff.mu.Unlock()
	}
	ff.mu.Lock()
	ff.stuck = false
	ff.mu.Unlock()
	if abandoned != 1 {
		t.Errorf("%d hanging listings given up, want 1", abandoned)
	}
	if got := ff.lastStatus("h1", forge.ContextPlan); got.State != forge.StateSuccess {
		t.Errorf("status on h1: %+v, want success (the plan was posted before the comment hung)", got)
	}
	in.HandlePullRequest(t.Context(), opened(7, "h2"))
	if ours := ff.ours(7); len(ours) != 1 {
		t.Errorf("after the hang: %d comments, want the plan comment", len(ours))
	}
}

// TestPullRequestEventFilter checks that pull requests into other branches are not planned and
// that an older head handled after a newer one posts nothing.
func TestPullRequestEventFilter(t *testing.T) {
	ff := newFakeForge("/api/v1", "token tok", false)
	srv := httptest.NewServer(ff)
	defer srv.Close()
	planner := fakePlanner{"refs/pull/7/head": scalePlan(4), "refs/pull/9/head": scalePlan(5)}
	in := forge.NewIntegration(forge.IntegrationConfig{Provider: gitea.New(srv.URL, "tok", nil), Planner: planner, Repo: "o/fleet", Branch: "prod"})
	ctx := t.Context()

	other := opened(9, "x1") // base main, tracked branch prod
	in.HandlePullRequest(ctx, other)
	if got := ff.lastStatus("x1", forge.ContextPlan); got != (forge.StatusBody{}) {
		t.Errorf("pull request into main planned against prod: %+v", got)
	}
	older, newer := opened(7, "h1"), opened(7, "h2")
	older.Base, newer.Base = "prod", "prod"
	newer.Received = time.Now()
	older.Received = newer.Received.Add(-time.Second)
	in.HandlePullRequest(ctx, newer)
	planner["refs/pull/7/head"] = scalePlan(3)
	in.HandlePullRequest(ctx, older)
	if got := ff.statuses["h1"]; len(got) != 0 {
		t.Errorf("older head handled after the newer one posted %+v", got)
	}
	if ours := ff.ours(7); len(ours) != 1 || !strings.Contains(ours[0].Body, "+ data.k: 4") {
		t.Errorf("comment: %+v, want the newer head's plan", ours)
	}
}

// TestPlannerMissing checks that an event that cannot be planned ends with an error status.
func TestPlannerMissing(t *testing.T) {
	tests := []struct {
		name    string
		planner plan.RefPlanner
		want    string
	}{
		{"no planner", nil, "not planned: the operator that received the event no longer leads; push again to plan"},
		{"planner fails", failingPlanner{}, "plan failed: fetching refs/pull/7/head: connection refused"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ff := newFakeForge("/api/v1", "token tok", false)
			srv := httptest.NewServer(ff)
			defer srv.Close()
			in := forge.NewIntegration(forge.IntegrationConfig{Provider: gitea.New(srv.URL, "tok", nil), Planner: tt.planner, Repo: "o/fleet"})
			in.HandlePullRequest(t.Context(), opened(7, "h1"))
			want := forge.StatusBody{State: forge.StateError, Context: forge.ContextPlan, Description: tt.want}
			if diff := cmp.Diff(want, ff.lastStatus("h1", forge.ContextPlan)); diff != "" {
				t.Errorf("plan status (-want +got):\n%s", diff)
			}
		})
	}
}

type failingPlanner struct{}

func (failingPlanner) PlanRef(_ context.Context, ref, _ string) (*gitsync.Plan, error) {
	return nil, fmt.Errorf("fetching %s: connection refused", ref)
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
