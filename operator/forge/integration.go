package forge

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync"

	"github.com/bosun-gitops/bosun/operator/plan"
	"github.com/bosun-gitops/bosun/operator/webhook"
	bosunv1 "github.com/bosun-gitops/bosun/repo-layout/v1alpha1"
)

// DefaultMaxComment keeps a plan comment well under GitHub's 65 536-character limit.
const DefaultMaxComment = 60000

// IntegrationConfig configures an Integration.
type IntegrationConfig struct {
	Provider Provider
	// Planner plans pull-request heads (the leader's gitsync.Syncer).
	Planner plan.RefPlanner
	// Repo is "owner/name" of the synced repository, for the deploy statuses.
	Repo string
	// MaxComment bounds the plan comment (default DefaultMaxComment).
	MaxComment int
	Logger     *slog.Logger
}

// Integration connects pull-request events and sync results to a forge.
type Integration struct {
	cfg IntegrationConfig
	log *slog.Logger

	mu      sync.Mutex
	planner plan.RefPlanner
	busy    map[int]*sync.Mutex // one plan at a time per pull request, in arrival order
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
	return &Integration{cfg: cfg, log: log.With("component", "forge"), planner: cfg.Planner, busy: map[int]*sync.Mutex{}}
}

func (in *Integration) lock(number int) func() {
	in.mu.Lock()
	m := in.busy[number]
	if m == nil {
		m = &sync.Mutex{}
		in.busy[number] = m
	}
	in.mu.Unlock()
	m.Lock()
	return m.Unlock
}

// HandlePullRequest plans the head of an opened or updated pull request and posts the
// bosun/plan status and the plan comment. Errors are logged and reported as an error status.
func (in *Integration) HandlePullRequest(ctx context.Context, ev webhook.PullRequest) {
	if ev.Action != webhook.ActionOpened && ev.Action != webhook.ActionUpdated {
		return
	}
	defer in.lock(ev.Number)()
	repo := ev.Repo
	if repo == "" {
		repo = in.cfg.Repo
	}
	log := in.log.With("repo", repo, "pr", ev.Number, "head", short(ev.HeadSHA))
	if err := in.cfg.Provider.SetStatus(ctx, repo, ev.HeadSHA, Status{Context: ContextPlan, State: StatePending, Description: "planning…"}); err != nil {
		log.Warn("posting pending plan status", "err", err)
	}
	planner := in.currentPlanner()
	if planner == nil {
		log.Warn("pull request event before this operator leads; ignored")
		return
	}
	rep, err := plan.PlanRef(ctx, planner, fmt.Sprintf("refs/pull/%d/head", ev.Number), ev.HeadSHA)
	if err != nil {
		log.Error("planning pull request", "err", err)
		if serr := in.cfg.Provider.SetStatus(ctx, repo, ev.HeadSHA, Status{Context: ContextPlan, State: StateError, Description: "plan failed: " + err.Error()}); serr != nil {
			log.Warn("posting plan status", "err", serr)
		}
		return
	}
	st := Status{Context: ContextPlan, State: StateSuccess, Description: rep.Headline()}
	if !rep.Valid() {
		st.State = StateFailure
	}
	if err := in.cfg.Provider.SetStatus(ctx, repo, ev.HeadSHA, st); err != nil {
		log.Error("posting plan status", "err", err)
	}
	if err := in.cfg.Provider.UpsertComment(ctx, repo, ev.Number, plan.CommentMarker, rep.Markdown(in.cfg.MaxComment)); err != nil {
		log.Error("posting plan comment", "err", err)
	}
	log.Info("pull request planned", "state", st.State, "plan", st.Description)
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
