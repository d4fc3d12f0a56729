package webhook

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var secret = []byte("s3cret")

const pushMain = `{"ref":"refs/heads/main","after":"abc123"}`

type recorder struct {
	mu       sync.Mutex
	triggers int
	prs      []PullRequest
	done     chan struct{}
}

func (r *recorder) trigger() {
	r.mu.Lock()
	r.triggers++
	r.mu.Unlock()
}

func (r *recorder) HandlePullRequest(_ context.Context, pr PullRequest) {
	r.mu.Lock()
	r.prs = append(r.prs, pr)
	r.mu.Unlock()
	r.done <- struct{}{}
}

func newTestReceiver(t *testing.T) (*Receiver, *recorder) {
	t.Helper()
	rcv, err := New(Config{Secret: secret, Branch: "main", MaxBody: 4096})
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{done: make(chan struct{}, 8)}
	rcv.SetTargets(t.Context(), Targets{Trigger: rec.trigger, PullRequests: rec})
	return rcv, rec
}

func post(h http.Handler, path, body string, headers map[string]string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodPost, path, strings.NewReader(body))
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	return w
}

func TestSignatures(t *testing.T) {
	good := Sign(secret, []byte(pushMain))
	bad := Sign([]byte("other"), []byte(pushMain))
	tests := []struct {
		name     string
		path     string
		headers  map[string]string
		body     string
		wantCode int
		triggers int
	}{
		{"github good", "/hooks/github", map[string]string{"X-GitHub-Event": "push", "X-Hub-Signature-256": "sha256=" + good}, pushMain, 202, 1},
		{"github bad", "/hooks/github", map[string]string{"X-GitHub-Event": "push", "X-Hub-Signature-256": "sha256=" + bad}, pushMain, 401, 0},
		{"github missing", "/hooks/github", map[string]string{"X-GitHub-Event": "push"}, pushMain, 401, 0},
		{"github not sha256=", "/hooks/github", map[string]string{"X-GitHub-Event": "push", "X-Hub-Signature-256": good}, pushMain, 401, 0},
		{"github body changed", "/hooks/github", map[string]string{"X-GitHub-Event": "push", "X-Hub-Signature-256": "sha256=" + good}, pushMain + " ", 401, 0},
		{"gitea good", "/hooks/gitea", map[string]string{"X-Gitea-Event": "push", "X-Gitea-Signature": good}, pushMain, 202, 1},
		{"gitea bad", "/hooks/gitea", map[string]string{"X-Gitea-Event": "push", "X-Gitea-Signature": bad}, pushMain, 401, 0},
		{"gitea not hex", "/hooks/gitea", map[string]string{"X-Gitea-Event": "push", "X-Gitea-Signature": "zz"}, pushMain, 401, 0},
		{"gitea missing", "/hooks/gitea", map[string]string{"X-Gitea-Event": "push"}, pushMain, 401, 0},
		{"gitlab good", "/hooks/gitlab", map[string]string{"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": string(secret)}, pushMain, 202, 1},
		{"gitlab bad", "/hooks/gitlab", map[string]string{"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": "nope"}, pushMain, 401, 0},
		{"gitlab missing", "/hooks/gitlab", map[string]string{"X-Gitlab-Event": "Push Hook"}, pushMain, 401, 0},
		{"generic good", "/hooks/generic", map[string]string{"X-Hub-Signature-256": "sha256=" + Sign(secret, nil)}, "", 202, 1},
		{"generic bad", "/hooks/generic", map[string]string{"X-Hub-Signature-256": "sha256=" + bad}, "", 401, 0},
		{"unknown provider", "/hooks/bitbucket", map[string]string{"X-Hub-Signature-256": "sha256=" + good}, pushMain, 404, 0},
		{"unknown event", "/hooks/github", map[string]string{"X-GitHub-Event": "deployment", "X-Hub-Signature-256": "sha256=" + good}, pushMain, 400, 0},
		{"known event ignored", "/hooks/gitea", map[string]string{"X-Gitea-Event": "issue_comment", "X-Gitea-Signature": good}, pushMain, 200, 0},
		{"other branch", "/hooks/github", map[string]string{"X-GitHub-Event": "push", "X-Hub-Signature-256": "sha256=" + Sign(secret, []byte(`{"ref":"refs/heads/dev"}`))}, `{"ref":"refs/heads/dev"}`, 200, 0},
		{"oversized", "/hooks/github", map[string]string{"X-GitHub-Event": "push", "X-Hub-Signature-256": "sha256=" + good}, strings.Repeat("x", 5000), 413, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rcv, rec := newTestReceiver(t)
			w := post(rcv, tt.path, tt.body, tt.headers)
			if w.Code != tt.wantCode {
				t.Errorf("code %d, want %d (%s)", w.Code, tt.wantCode, w.Body)
			}
			if rec.triggers != tt.triggers {
				t.Errorf("%d syncs triggered, want %d", rec.triggers, tt.triggers)
			}
		})
	}
}

func TestReplayIgnored(t *testing.T) {
	rcv, rec := newTestReceiver(t)
	h := map[string]string{"X-GitHub-Event": "push", "X-GitHub-Delivery": "d-1", "X-Hub-Signature-256": "sha256=" + Sign(secret, []byte(pushMain))}
	for i := range 3 {
		if w := post(rcv, "/hooks/github", pushMain, h); w.Code/100 != 2 {
			t.Fatalf("delivery %d: code %d", i, w.Code)
		}
	}
	if rec.triggers != 1 {
		t.Errorf("replayed delivery triggered %d syncs, want 1", rec.triggers)
	}
	h["X-GitHub-Delivery"] = "d-2"
	post(rcv, "/hooks/github", pushMain, h)
	if rec.triggers != 2 {
		t.Errorf("a new delivery ID triggered %d syncs in total, want 2", rec.triggers)
	}
}

func TestNotLeader(t *testing.T) {
	rcv, err := New(Config{Secret: secret})
	if err != nil {
		t.Fatal(err)
	}
	w := post(rcv, "/hooks/github", pushMain, map[string]string{"X-GitHub-Event": "push", "X-Hub-Signature-256": "sha256=" + Sign(secret, []byte(pushMain))})
	if w.Code != http.StatusServiceUnavailable {
		t.Errorf("code %d, want 503 before SetTargets", w.Code)
	}
	if _, err := New(Config{}); err == nil {
		t.Error("New without a secret succeeded")
	}
}

func TestPullRequestEvents(t *testing.T) {
	tests := []struct {
		name    string
		path    string
		headers map[string]string
		body    string
		want    PullRequest
	}{
		{
			name:    "gitea synchronized",
			path:    "/hooks/gitea",
			headers: map[string]string{"X-Gitea-Event": "pull_request", "X-Gitea-Delivery": "x"},
			body: `{"action":"synchronized","number":7,"pull_request":{"head":{"sha":"h1","ref":"scale"},"base":{"ref":"main"},
				"labels":[{"name":"preview"}]},"repository":{"full_name":"o/fleet"}}`,
			want: PullRequest{Provider: Gitea, Repo: "o/fleet", Number: 7, Action: ActionUpdated, HeadSHA: "h1", HeadRef: "scale", Base: "main", Labels: []string{"preview"}},
		},
		{
			name:    "github merged",
			path:    "/hooks/github",
			headers: map[string]string{"X-GitHub-Event": "pull_request"},
			body: `{"action":"closed","number":3,"pull_request":{"merged":true,"merge_commit_sha":"m1","head":{"sha":"h2","ref":"f"},
				"base":{"ref":"main"}},"repository":{"full_name":"o/r"}}`,
			want: PullRequest{Provider: GitHub, Repo: "o/r", Number: 3, Action: ActionClosed, HeadSHA: "h2", HeadRef: "f", Base: "main", Merged: true, Closed: true, MergeSHA: "m1"},
		},
		{
			name:    "gitea label changed on a closed pull request",
			path:    "/hooks/gitea",
			headers: map[string]string{"X-Gitea-Event": "pull_request", "X-Gitea-Event-Type": "pull_request_label"},
			body: `{"action":"label_updated","number":8,"pull_request":{"state":"closed","head":{"sha":"h4","ref":"g"},"base":{"ref":"main"},
				"labels":[{"name":"preview"}]},"repository":{"full_name":"o/fleet"}}`,
			want: PullRequest{Provider: Gitea, Repo: "o/fleet", Number: 8, Action: ActionOther, HeadSHA: "h4", HeadRef: "g", Base: "main", Closed: true, Labels: []string{"preview"}},
		},
		{
			name:    "gitlab open",
			path:    "/hooks/gitlab",
			headers: map[string]string{"X-Gitlab-Event": "Merge Request Hook", "X-Gitlab-Token": string(secret)},
			body: `{"object_attributes":{"iid":5,"action":"open","state":"opened","source_branch":"f","target_branch":"main","last_commit":{"id":"h3"}},
				"project":{"path_with_namespace":"g/p"}}`,
			want: PullRequest{Provider: GitLab, Repo: "g/p", Number: 5, Action: ActionOpened, HeadSHA: "h3", HeadRef: "f", Base: "main"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rcv, rec := newTestReceiver(t)
			if tt.headers["X-Gitlab-Token"] == "" {
				tt.headers["X-Hub-Signature-256"] = "sha256=" + Sign(secret, []byte(tt.body))
			}
			if w := post(rcv, tt.path, tt.body, tt.headers); w.Code != http.StatusAccepted {
				t.Fatalf("code %d: %s", w.Code, w.Body)
			}
			<-rec.done
			if len(rec.prs) == 1 {
				if rec.prs[0].Received.IsZero() {
					t.Error("pull request event without its arrival time")
				}
				rec.prs[0].Received = time.Time{}
			}
			if diff := cmp.Diff([]PullRequest{tt.want}, rec.prs); diff != "" {
				t.Errorf("pull request (-want +got):\n%s", diff)
			}
		})
	}
}

// TestSecretFrom checks that a secret from SecretFrom (bosun.yaml's secretRef) replaces the
// configured one, and that a configured secret that cannot be read rejects every delivery.
func TestSecretFrom(t *testing.T) {
	fromGit := []byte("from-git")
	var (
		mu      sync.Mutex
		current []byte
		readErr error
	)
	rcv, err := New(Config{Secret: secret, Branch: "main", SecretFrom: func(context.Context) ([]byte, error) {
		mu.Lock()
		defer mu.Unlock()
		return current, readErr
	}})
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{done: make(chan struct{}, 8)}
	rcv.SetTargets(t.Context(), Targets{Trigger: rec.trigger, PullRequests: rec})
	set := func(s []byte, err error) {
		mu.Lock()
		current, readErr = s, err
		mu.Unlock()
	}
	signed := func(key []byte) int {
		return post(rcv, "/hooks/gitea", pushMain, map[string]string{"X-Gitea-Event": "push", "X-Gitea-Signature": Sign(key, []byte(pushMain))}).Code
	}
	steps := []struct {
		name   string
		secret []byte
		err    error
		key    []byte
		want   int
	}{
		{"no reference: the configured secret", nil, nil, secret, 202},
		{"no reference: another key", nil, nil, fromGit, 401},
		{"reference: its secret", fromGit, nil, fromGit, 202},
		{"reference: the configured secret no longer", fromGit, nil, secret, 401},
		{"reference unreadable", nil, errors.New("secret kube-system/hook not found"), secret, 503},
		{"reference to an empty value", []byte{}, nil, nil, 503},
	}
	for _, s := range steps {
		set(s.secret, s.err)
		if got := signed(s.key); got != s.want {
			t.Errorf("%s: code %d, want %d", s.name, got, s.want)
		}
	}
}
