// Package forge posts what Bosun knows back to the Git forge: for each opened or updated pull
// request into the tracked branch a `bosun/plan` commit status and one plan comment (updated in
// place, found by its marker among the comments of the token's own account), and after a merged
// commit is synced a `bosun/deploy` status that follows the rollout. Providers (Gitea, GitHub)
// implement the small Provider interface; their REST APIs are nearly the same.
//
//	webhook PR event ─> Integration.HandlePullRequest (one at a time per PR, newest head wins,
//	     bounded by EventTimeout) ─> PlanRef(refs/pull/N/head)
//	     ─> SetStatus(head, bosun/plan pending → success | failure | error) + UpsertComment(marker)
//	gitsync OnSynced ─> health.Tracker ─> Integration.DeployProgress / DeploySettled / DeploySuperseded
//	     ─> SetStatus(commit, bosun/deploy pending → success | failure | error)
package forge

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
)

// State is a commit status state (the same words on Gitea and GitHub).
type State string

// Commit status states.
const (
	StatePending State = "pending"
	StateSuccess State = "success"
	StateFailure State = "failure"
	StateError   State = "error"
)

// Status is one commit status.
type Status struct {
	Context     string
	State       State
	Description string
	TargetURL   string
}

// Provider is what Bosun needs of a forge. repo is "owner/name".
type Provider interface {
	// SetStatus posts a commit status on sha (the latest status of a context wins).
	SetStatus(ctx context.Context, repo, sha string, st Status) error
	// UpsertComment creates the pull request's comment that contains marker, or edits it in
	// place when it exists.
	UpsertComment(ctx context.Context, repo string, number int, marker, body string) error
}

// Status contexts.
const (
	ContextPlan   = "bosun/plan"
	ContextDeploy = "bosun/deploy"
)

// maxDescription is GitHub's limit for a status description.
const maxDescription = 140

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-1] + "…"
}

// REST is a small JSON client shared by the providers.
type REST struct {
	// Base is the API root, e.g. http://127.0.0.1:3000/api/v1 or https://api.github.com.
	Base string
	// Authorization is the header value, e.g. "token abc" or "Bearer abc".
	Authorization string
	Client        *http.Client
}

// APIError is a non-2xx answer.
type APIError struct {
	Method, URL string
	Code        int
	Body        string
}

func (e *APIError) Error() string {
	return fmt.Sprintf("%s %s: %d %s", e.Method, e.URL, e.Code, truncate(strings.TrimSpace(e.Body), 300))
}

// Do sends in (JSON, when non-nil) and decodes the answer into out (when non-nil).
func (c *REST) Do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	url := strings.TrimSuffix(c.Base, "/") + path
	req, err := http.NewRequestWithContext(ctx, method, url, body)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.Authorization != "" {
		req.Header.Set("Authorization", c.Authorization)
	}
	hc := c.Client
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, url, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return fmt.Errorf("%s %s: reading answer: %w", method, url, err)
	}
	if resp.StatusCode/100 != 2 {
		return &APIError{Method: method, URL: url, Code: resp.StatusCode, Body: string(data)}
	}
	if out != nil && len(data) > 0 {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("%s %s: decoding answer: %w", method, url, err)
		}
	}
	return nil
}

// User is a forge account as both forges return it.
type User struct {
	ID    int64  `json:"id"`
	Login string `json:"login"`
}

// Comment is an issue comment as both forges return it.
type Comment struct {
	ID   int64  `json:"id"`
	Body string `json:"body"`
	User User   `json:"user"`
}

// StatusBody is the JSON of a commit status on both forges.
type StatusBody struct {
	State       State  `json:"state"`
	Context     string `json:"context"`
	Description string `json:"description,omitempty"`
	TargetURL   string `json:"target_url,omitempty"`
}

// NewStatusBody builds the request body, truncating the description to what GitHub accepts.
func NewStatusBody(st Status) StatusBody {
	return StatusBody{State: st.State, Context: st.Context, Description: truncate(st.Description, maxDescription), TargetURL: st.TargetURL}
}

// FindComment returns the first comment by author (a user ID) that contains marker. Comments
// of other users are never taken for Bosun's, whatever they contain.
func FindComment(comments []Comment, author int64, marker string) (Comment, bool) {
	for _, c := range comments {
		if c.User.ID == author && strings.Contains(c.Body, marker) {
			return c, true
		}
	}
	return Comment{}, false
}

// maxCommentPages bounds the listing of a pull request's comments (GitHub: 100 per page).
const maxCommentPages = 100

// RESTProvider is a Provider for forges with GitHub's REST shape (GitHub and Gitea): statuses at
// /repos/{repo}/statuses/{sha}, pull-request comments as issue comments. The forges differ only in
// the API root, the authorization scheme and how comments are listed.
type RESTProvider struct {
	REST REST
	// PageSizeParam and PageSize page through comments ("per_page" 100 on GitHub). Empty: the
	// forge returns every comment at once and ignores paging parameters (Gitea 1.26's
	// ListIssueComments does), so the list is fetched once.
	PageSizeParam string
	PageSize      int

	mu   sync.Mutex
	self *User // the token's own account, once known
}

var _ Provider = (*RESTProvider)(nil)

// SetStatus implements Provider.
func (p *RESTProvider) SetStatus(ctx context.Context, repo, sha string, st Status) error {
	if err := p.REST.Do(ctx, http.MethodPost, fmt.Sprintf("/repos/%s/statuses/%s", repo, sha), NewStatusBody(st), nil); err != nil {
		return fmt.Errorf("setting %s status on %s: %w", st.Context, sha, err)
	}
	return nil
}

// Self returns the account the token belongs to (GET /user, asked once).
func (p *RESTProvider) Self(ctx context.Context) (User, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.self != nil {
		return *p.self, nil
	}
	var u User
	if err := p.REST.Do(ctx, http.MethodGet, "/user", nil, &u); err != nil {
		return User{}, fmt.Errorf("identifying the token's account (GET /user; the token needs read access to its user): %w", err)
	}
	if u.ID == 0 {
		return User{}, errors.New("identifying the token's account: GET /user returned no id")
	}
	p.self = &u
	return u, nil
}

// UpsertComment implements Provider: it edits the comment carrying marker that the token's own
// account wrote, or adds one.
func (p *RESTProvider) UpsertComment(ctx context.Context, repo string, number int, marker, body string) error {
	self, err := p.Self(ctx)
	if err != nil {
		return err
	}
	old, found, err := p.findComment(ctx, repo, number, self.ID, marker)
	if err != nil {
		return err
	}
	if found {
		if err := p.REST.Do(ctx, http.MethodPatch, fmt.Sprintf("/repos/%s/issues/comments/%d", repo, old.ID), map[string]string{"body": body}, nil); err != nil {
			return fmt.Errorf("editing comment %d of #%d: %w", old.ID, number, err)
		}
		return nil
	}
	if err := p.REST.Do(ctx, http.MethodPost, fmt.Sprintf("/repos/%s/issues/%d/comments", repo, number), map[string]string{"body": body}, nil); err != nil {
		return fmt.Errorf("commenting on #%d: %w", number, err)
	}
	return nil
}

// findComment looks through the pull request's comments for author's comment with marker. A
// page that brings no comment not seen before ends the listing, whatever the forge does with
// the paging parameters.
func (p *RESTProvider) findComment(ctx context.Context, repo string, number int, author int64, marker string) (Comment, bool, error) {
	base := fmt.Sprintf("/repos/%s/issues/%d/comments", repo, number)
	seen := map[int64]bool{}
	for page := 1; page <= maxCommentPages; page++ {
		path := base
		if p.PageSizeParam != "" {
			path = fmt.Sprintf("%s?page=%d&%s=%d", base, page, p.PageSizeParam, p.PageSize)
		}
		var comments []Comment
		if err := p.REST.Do(ctx, http.MethodGet, path, nil, &comments); err != nil {
			return Comment{}, false, fmt.Errorf("listing comments of #%d: %w", number, err)
		}
		if c, ok := FindComment(comments, author, marker); ok {
			return c, true, nil
		}
		fresh := 0
		for _, c := range comments {
			if !seen[c.ID] {
				seen[c.ID] = true
				fresh++
			}
		}
		if p.PageSizeParam == "" || len(comments) < p.PageSize || fresh == 0 {
			break
		}
	}
	return Comment{}, false, nil
}
