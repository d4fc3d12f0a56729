package webhook

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// Kind is the kind of a verified event.
type Kind string

// Event kinds.
const (
	KindPing        Kind = "ping"
	KindPush        Kind = "push"
	KindPullRequest Kind = "pull_request"
	// KindIgnored is a known event that Bosun does not act on (comments, reviews ...).
	KindIgnored Kind = "ignored"
)

// Event is a verified delivery.
type Event struct {
	Kind Kind
	// Delivery is the sender's delivery ID (X-GitHub-Delivery, X-Gitea-Delivery,
	// X-Gitlab-Event-UUID, X-Delivery-ID); a repeated ID is a replay.
	Delivery    string
	Push        *Push
	PullRequest *PullRequest
}

// Push is a push to a branch.
type Push struct {
	Branch string
	After  string
}

// PR actions, normalised across providers.
const (
	ActionOpened  = "opened"
	ActionUpdated = "synchronize"
	ActionClosed  = "closed"
	ActionOther   = "other"
)

// PullRequest is a pull-request (merge-request) event.
type PullRequest struct {
	Provider Provider
	// Repo is "owner/name" of the base repository.
	Repo   string
	Number int
	// Action is ActionOpened (also reopened), ActionUpdated (new commits), ActionClosed (also
	// merged) or ActionOther (label, edit ...).
	Action  string
	HeadSHA string
	HeadRef string
	Base    string
	Merged  bool
	// Closed is true when the pull request is closed (or merged) as of this event, whatever
	// the action: a label changed on a closed pull request is ActionOther and Closed.
	Closed bool
	// MergeSHA is the merge commit when Merged.
	MergeSHA string
	Labels   []string
	// Received is when the receiver accepted the event: it orders the events of a pull
	// request, which are handled concurrently.
	Received time.Time
}

// ErrUnknownEvent is an event kind the receiver does not handle; it is rejected.
var ErrUnknownEvent = errors.New("unknown event")

// Parse decodes a verified delivery.
func Parse(p Provider, h http.Header, body []byte) (*Event, error) {
	switch p {
	case GitHub:
		return parseGitHubStyle(p, h.Get("X-GitHub-Event"), h.Get("X-GitHub-Delivery"), body)
	case Gitea:
		name := h.Get("X-Gitea-Event")
		if name == "" {
			name = h.Get("X-GitHub-Event")
		}
		return parseGitHubStyle(p, name, firstOf(h.Get("X-Gitea-Delivery"), h.Get("X-GitHub-Delivery")), body)
	case GitLab:
		return parseGitLab(h.Get("X-Gitlab-Event"), firstOf(h.Get("X-Gitlab-Event-UUID"), h.Get("X-Gitlab-Webhook-UUID")), body)
	case Generic:
		return parseGeneric(h.Get("X-Delivery-ID"), body)
	}
	return nil, fmt.Errorf("%w: provider %q", ErrUnknownEvent, p)
}

func firstOf(ss ...string) string {
	for _, s := range ss {
		if s != "" {
			return s
		}
	}
	return ""
}

type ghPayload struct {
	Ref         string `json:"ref"`
	After       string `json:"after"`
	Action      string `json:"action"`
	Number      int    `json:"number"`
	PullRequest *struct {
		Number         int    `json:"number"`
		State          string `json:"state"`
		Merged         bool   `json:"merged"`
		MergeCommitSHA string `json:"merge_commit_sha"`
		Head           struct {
			SHA string `json:"sha"`
			Ref string `json:"ref"`
		} `json:"head"`
		Base struct {
			Ref string `json:"ref"`
		} `json:"base"`
		Labels []struct {
			Name string `json:"name"`
		} `json:"labels"`
	} `json:"pull_request"`
	Repository struct {
		FullName string `json:"full_name"`
	} `json:"repository"`
}

// parseGitHubStyle decodes GitHub's payloads, which Gitea mirrors closely.
func parseGitHubStyle(p Provider, name, delivery string, body []byte) (*Event, error) {
	ev := &Event{Delivery: delivery}
	var pl ghPayload
	switch name {
	case "ping":
		ev.Kind = KindPing
		return ev, nil
	case "push", "pull_request":
	case "":
		return nil, fmt.Errorf("%w: no event header", ErrUnknownEvent)
	case "issue_comment", "issues", "create", "delete", "status", "pull_request_comment", "pull_request_review",
		"pull_request_review_comment", "pull_request_assign", "pull_request_label", "pull_request_milestone",
		"pull_request_review_request", "pull_request_review_approved", "pull_request_review_rejected":
		// Sent along with pull_request by forges (Bosun's own comments cause issue_comment):
		// known, verified and of no interest.
		ev.Kind = KindIgnored
		return ev, nil
	default:
		return nil, fmt.Errorf("%w %q: send push and pull_request events", ErrUnknownEvent, name)
	}
	if err := json.Unmarshal(body, &pl); err != nil {
		return nil, fmt.Errorf("decoding %s payload: %w", name, err)
	}
	if name == "push" {
		ev.Kind = KindPush
		ev.Push = &Push{Branch: strings.TrimPrefix(pl.Ref, "refs/heads/"), After: pl.After}
		if !strings.HasPrefix(pl.Ref, "refs/heads/") {
			ev.Push.Branch = "" // a tag
		}
		return ev, nil
	}
	if pl.PullRequest == nil {
		return nil, errors.New("pull_request payload without pull_request")
	}
	pr := &PullRequest{Provider: p, Repo: pl.Repository.FullName, Number: pl.Number, HeadSHA: pl.PullRequest.Head.SHA,
		HeadRef: pl.PullRequest.Head.Ref, Base: pl.PullRequest.Base.Ref, Merged: pl.PullRequest.Merged, MergeSHA: pl.PullRequest.MergeCommitSHA}
	if pr.Number == 0 {
		pr.Number = pl.PullRequest.Number
	}
	for _, l := range pl.PullRequest.Labels {
		pr.Labels = append(pr.Labels, l.Name)
	}
	switch pl.Action {
	case "opened", "reopened":
		pr.Action = ActionOpened
	case "synchronize", "synchronized": // GitHub, Gitea
		pr.Action = ActionUpdated
	case "closed":
		pr.Action = ActionClosed
	default:
		pr.Action = ActionOther
	}
	pr.Closed = pr.Action == ActionClosed || pl.PullRequest.State == "closed"
	ev.Kind, ev.PullRequest = KindPullRequest, pr
	return ev, nil
}

type glPayload struct {
	Ref              string `json:"ref"`
	After            string `json:"after"`
	ObjectAttributes *struct {
		IID            int    `json:"iid"`
		Action         string `json:"action"`
		State          string `json:"state"`
		SourceBranch   string `json:"source_branch"`
		TargetBranch   string `json:"target_branch"`
		MergeCommitSHA string `json:"merge_commit_sha"`
		LastCommit     struct {
			ID string `json:"id"`
		} `json:"last_commit"`
	} `json:"object_attributes"`
	Labels []struct {
		Title string `json:"title"`
	} `json:"labels"`
	Project struct {
		PathWithNamespace string `json:"path_with_namespace"`
	} `json:"project"`
}

func parseGitLab(name, delivery string, body []byte) (*Event, error) {
	ev := &Event{Delivery: delivery}
	switch name {
	case "Push Hook", "Merge Request Hook":
	default:
		return nil, fmt.Errorf("%w %q: send Push and Merge Request events", ErrUnknownEvent, name)
	}
	var pl glPayload
	if err := json.Unmarshal(body, &pl); err != nil {
		return nil, fmt.Errorf("decoding %s payload: %w", name, err)
	}
	if name == "Push Hook" {
		ev.Kind = KindPush
		ev.Push = &Push{Branch: strings.TrimPrefix(pl.Ref, "refs/heads/"), After: pl.After}
		return ev, nil
	}
	oa := pl.ObjectAttributes
	if oa == nil {
		return nil, errors.New("merge request payload without object_attributes")
	}
	pr := &PullRequest{Provider: GitLab, Repo: pl.Project.PathWithNamespace, Number: oa.IID, HeadSHA: oa.LastCommit.ID,
		HeadRef: oa.SourceBranch, Base: oa.TargetBranch, MergeSHA: oa.MergeCommitSHA}
	for _, l := range pl.Labels {
		pr.Labels = append(pr.Labels, l.Title)
	}
	switch oa.Action {
	case "open", "reopen":
		pr.Action = ActionOpened
	case "update":
		pr.Action = ActionUpdated
	case "merge":
		pr.Action, pr.Merged = ActionClosed, true
	case "close":
		pr.Action = ActionClosed
	default:
		pr.Action = ActionOther
	}
	pr.Closed = pr.Action == ActionClosed || oa.State == "closed" || oa.State == "merged"
	ev.Kind, ev.PullRequest = KindPullRequest, pr
	return ev, nil
}

// parseGeneric accepts {"ref": "refs/heads/main"} or {"branch": "main"}: a push. An empty
// body means the tracked branch (a bare "sync now").
func parseGeneric(delivery string, body []byte) (*Event, error) {
	ev := &Event{Kind: KindPush, Delivery: delivery, Push: &Push{}}
	if len(strings.TrimSpace(string(body))) == 0 {
		return ev, nil
	}
	var pl struct {
		Ref    string `json:"ref"`
		Branch string `json:"branch"`
		After  string `json:"after"`
	}
	if err := json.Unmarshal(body, &pl); err != nil {
		return nil, fmt.Errorf("decoding generic payload: %w", err)
	}
	ev.Push.Branch = firstOf(pl.Branch, strings.TrimPrefix(pl.Ref, "refs/heads/"))
	ev.Push.After = pl.After
	return ev, nil
}
