package forge

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/bosun-gitops/bosun/operator/plan"
	"github.com/bosun-gitops/bosun/operator/webhook"
	bosunv1 "github.com/bosun-gitops/bosun/repo-layout/v1alpha1"
)

// DefaultMaxComment keeps a plan comment well under GitHub's 65 536-character limit.
const DefaultMaxComment = 60000

// DefaultEventTimeout bounds the handling of one pull-request event (fetch, plan, forge calls):
// a forge that hangs cannot hold the pull request's turn for ever.
const DefaultEventTimeout = 5 * time.Minute

// finalPostTimeout bounds the status posted when an event's own time is up.
const finalPostTimeout = 30 * time.Second

// IntegrationConfig configures an Integration.
type IntegrationConfig struct {
	Provider Provider
	// Planner plans pull-request heads (the leader's gitsync.Syncer).
	Planner plan.RefPlanner
	// Repo is "owner/name" of the synced repository, for the deploy statuses.
	Repo string
	// Branch is the tracked branch (default main): pull requests into other branches are
	// ignored, their plans would compare with a state they do not deploy to.
	Branch string
	// MaxComment bounds the plan comment (default DefaultMaxComment).
	MaxComment int
	// EventTimeout bounds the handling of one event (default DefaultEventTimeout).
	EventTimeout time.Duration
	Logger       *slog.Logger
}

// Integration connects pull-request events and sync results to a forge.
type Integration struct {
	cfg IntegrationConfig
	log *slog.Logger

	mu      sync.Mutex
	planner plan.RefPlanner
	prs     map[int]*pullRequest
}

// pullRequest serialises the handling of one pull request's events and remembers the latest.
type pullRequest struct {
	busy sync.Mutex // one plan at a time per pull request
	// latest is when the newest event arrived (and its head): the plan of an older head is
	// not posted over it, whatever order the events are handled in.
	latest time.Time
	head   string
}

// SetPlanner replaces the planner (the leader's syncer once it leads).
func (in *Integration) SetPlanner(p plan.RefPlanner) {
	in.mu.Lock()
	in.planner = p
	in.mu.Unlock()
}

func (in *Integration) currentPlanner() plan.RefPlanner {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.planner
}

var _ webhook.PullRequestHandler = (*Integration)(nil)

// NewIntegration returns an Integration.
func NewIntegration(cfg IntegrationConfig) *Integration {
	if cfg.MaxComment == 0 {
		cfg.MaxComment = DefaultMaxComment
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.EventTimeout == 0 {
		cfg.EventTimeout = DefaultEventTimeout
	}
	if cfg.Branch == "" {
		cfg.Branch = "main"
	}
	return &Integration{cfg: cfg, log: log.With("component", "forge"), planner: cfg.Planner, prs: map[int]*pullRequest{}}
}

// arrived records ev as the pull request's newest event if it is, and returns the pull
// request's state.
func (in *Integration) arrived(ev webhook.PullRequest) *pullRequest {
	in.mu.Lock()
	defer in.mu.Unlock()
	pr := in.prs[ev.Number]
	if pr == nil {
		pr = &pullRequest{}
		in.prs[ev.Number] = pr
	}
	if ev.Received.After(pr.latest) {
		pr.latest, pr.head = ev.Received, ev.HeadSHA
	}
	return pr
}

// newer returns the head of an event that arrived after ev, if any.
func (in *Integration) newer(pr *pullRequest, ev webhook.PullRequest) (string, bool) {
	in.mu.Lock()
	defer in.mu.Unlock()
	return pr.head, pr.latest.After(ev.Received)
}

// HandlePullRequest plans the head of an opened or updated pull request into the tracked branch
// and posts the bosun/plan status and the plan comment. Every head it starts on ends with a
// final status (success, failure, or error with the reason); the comment shows the newest head.
func (in *Integration) HandlePullRequest(ctx context.Context, ev webhook.PullRequest) {
	if ev.Action != webhook.ActionOpened && ev.Action != webhook.ActionUpdated {
		return
	}
	repo := ev.Repo
	if repo == "" {
		repo = in.cfg.Repo
	}
	log := in.log.With("repo", repo, "pr", ev.Number, "head", short(ev.HeadSHA))
	if ev.Base != in.cfg.Branch {
		log.Debug("pull request into another branch ignored", "base", ev.Base, "branch", in.cfg.Branch)
		return
	}
	if ev.Received.IsZero() {
		ev.Received = time.Now()
	}
	pr := in.arrived(ev)
	pr.busy.Lock()
	defer pr.busy.Unlock()
	if head, ok := in.newer(pr, ev); ok {
		log.Debug("a newer push to the pull request is waiting; this head is not planned", "newer", short(head))
		return
	}
	ctx, cancel := context.WithTimeout(ctx, in.cfg.EventTimeout)
	defer cancel()
	planner := in.currentPlanner()
	if planner == nil {
		log.Warn("pull request event after this operator stopped leading; not planned")
		in.finalStatus(ctx, log, repo, ev.HeadSHA, Status{Context: ContextPlan, State: StateError,
			Description: "not planned: the operator that received the event no longer leads; push again to plan"})
		return
	}
	if err := in.cfg.Provider.SetStatus(ctx, repo, ev.HeadSHA, Status{Context: ContextPlan, State: StatePending, Description: "planning…"}); err != nil {
		log.Warn("posting pending plan status", "err", err)
	}
	rep, err := plan.PlanRef(ctx, planner, fmt.Sprintf("refs/pull/%d/head", ev.Number), ev.HeadSHA)
	if err != nil {
		log.Error("planning pull request", "err", err)
		in.finalStatus(ctx, log, repo, ev.HeadSHA, Status{Context: ContextPlan, State: StateError, Description: "plan failed: " + err.Error()})
		return
	}
	st := Status{Context: ContextPlan, State: StateSuccess, Description: rep.Headline()}
	if !rep.Valid() {
		st.State = StateFailure
	}
	// The status belongs to this head whatever came after it; the comment shows the newest.
	in.finalStatus(ctx, log, repo, ev.HeadSHA, st)
	if head, ok := in.newer(pr, ev); ok {
		log.Info("pull request planned; comment left to the newer head", "state", st.State, "newer", short(head))
		return
	}
	if err := in.cfg.Provider.UpsertComment(ctx, repo, ev.Number, plan.CommentMarker, rep.Markdown(in.cfg.MaxComment)); err != nil {
		log.Error("posting plan comment", "err", err)
	}
	log.Info("pull request planned", "state", st.State, "plan", st.Description)
}

// finalStatus posts the status that ends a head's planning; when the event's time is up it
// still gets a short while, so that nothing stays pending.
func (in *Integration) finalStatus(ctx context.Context, log *slog.Logger, repo, sha string, st Status) {
	if ctx.Err() != nil {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(context.WithoutCancel(ctx), finalPostTimeout)
		defer cancel()
	}
	if err := in.cfg.Provider.SetStatus(ctx, repo, sha, st); err != nil {
		log.Error("posting plan status", "state", st.State, "err", err)
	}
}

// DeployProgress posts bosun/deploy pending on a commit whose rollout starts (a
// health.TrackerConfig.OnProgress hook).
func (in *Integration) DeployProgress(ctx context.Context, commit string, h bosunv1.CommitHealth) {
	in.deployStatus(ctx, commit, Status{Context: ContextDeploy, State: StatePending, Description: h.Message})
}

// DeploySettled posts bosun/deploy success when everything the commit changed is available,
// failure with the reason otherwise (a health.TrackerConfig.OnSettled hook).
func (in *Integration) DeploySettled(ctx context.Context, commit string, h bosunv1.CommitHealth) {
	st := Status{Context: ContextDeploy, State: StateSuccess, Description: "deployed: " + h.Message}
	if h.Status != bosunv1.HealthHealthy {
		st.State, st.Description = StateFailure, fmt.Sprintf("%s: %s", h.Status, h.Message)
	}
	in.deployStatus(ctx, commit, st)
}

// DeploySuperseded posts bosun/deploy error on a commit whose rollout a newer commit replaced
// before it settled, so that it does not stay pending (a health.TrackerConfig.OnSuperseded
// hook).
func (in *Integration) DeploySuperseded(ctx context.Context, commit, newer string, h bosunv1.CommitHealth) {
	in.deployStatus(ctx, commit, Status{Context: ContextDeploy, State: StateError,
		Description: fmt.Sprintf("superseded by %s before its rollout settled (%s: %s)", short(newer), h.Status, h.Message)})
}

func (in *Integration) deployStatus(ctx context.Context, commit string, st Status) {
	if in.cfg.Repo == "" {
		return
	}
	if err := in.cfg.Provider.SetStatus(ctx, in.cfg.Repo, commit, st); err != nil {
		in.log.Error("posting deploy status", "commit", short(commit), "err", err)
		return
	}
	in.log.Info("deploy status posted", "commit", short(commit), "state", st.State, "description", st.Description)
}

// RepoFromURL derives "owner/name" from a repository URL such as
// http://host/owner/name.git or git@host:owner/name.git.
func RepoFromURL(repo string) string {
	p := repo
	if u, err := url.Parse(repo); err == nil && u.Scheme != "" {
		p = u.Path
	} else if i := strings.Index(repo, ":"); i > 0 {
		p = repo[i+1:]
	}
	p = strings.TrimSuffix(strings.Trim(p, "/"), ".git")
	parts := strings.Split(p, "/")
	if len(parts) < 2 {
		return ""
	}
	return parts[len(parts)-2] + "/" + parts[len(parts)-1]
}

func short(sha string) string {
	if len(sha) > 12 {
		return sha[:12]
	}
	return sha
}
