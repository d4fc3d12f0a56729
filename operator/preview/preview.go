package preview

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/bosun-gitops/bosun/internal/resource"
	"github.com/bosun-gitops/bosun/operator/forge"
	"github.com/bosun-gitops/bosun/operator/gitsync"
	"github.com/bosun-gitops/bosun/operator/health"
	"github.com/bosun-gitops/bosun/operator/store"
	"github.com/bosun-gitops/bosun/operator/webhook"
	bosunv1 "github.com/bosun-gitops/bosun/repo-layout/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// StatusContext is the commit status context of previews.
const StatusContext = "bosun/preview"

// Store is the subset of the object store that previews need: what Git sync writes with, and
// Delete for the namespace and the record.
type Store interface {
	gitsync.Store
	Delete(ctx context.Context, res *resource.Resource, namespace, name string, opts store.DeleteOptions) (resource.Object, error)
}

var _ Store = (*store.Store)(nil)

// Loader loads a pull request's head (the leader's gitsync.Syncer).
type Loader interface {
	LoadRef(ctx context.Context, ref, sha string) (*gitsync.LoadedRef, error)
}

var _ Loader = (*gitsync.Syncer)(nil)

// StatusSetter posts commit statuses (a forge.Provider).
type StatusSetter interface {
	SetStatus(ctx context.Context, repo, sha string, st forge.Status) error
}

// Config configures a Manager.
type Config struct {
	Store  Store
	Loader Loader
	// Statuses, when set, receives the bosun/preview status of each head.
	Statuses StatusSetter
	// Repo is the "owner/name" statuses go to when an event names none.
	Repo string
	// Branch is the tracked branch: only pull requests into it get a preview (default main).
	Branch string
	// Label is the pull-request label that asks for a preview (default "preview").
	Label string
	// Timeout bounds one deploy, its rollout included, or one removal (default 10m): a
	// preview whose workloads are not available by then is reported failed.
	Timeout time.Duration
	// Interval between health assessments during a rollout (default 500ms).
	Interval time.Duration
	Logger   *slog.Logger
}

// DefaultLabel is the label that asks for a preview unless --preview-label says otherwise.
const DefaultLabel = "preview"

// Retries of a deploy or removal that failed for a reason that may pass (the store, the
// remote): up to maxAttempts in all, waiting retryBase, twice that, ... in between.
const (
	maxAttempts = 5
	retryBase   = time.Second
)

// postTimeout bounds the final status and record writes of a deploy whose time is up.
const postTimeout = 30 * time.Second

// Manager deploys and removes the preview environments of pull requests. Each pull request has
// one worker at a time, which brings the preview to the newest event's desired state; an
// event that changes that state cancels the work in progress.
type Manager struct {
	cfg    Config
	log    *slog.Logger
	health *health.Tracker // its Assess reads workloads from the store

	mu  sync.Mutex
	ctx context.Context // the leadership, once Start was called
	prs map[int]*pullRequest
	wg  sync.WaitGroup
}

// desired is what a pull request's preview should be.
type desired struct {
	deploy bool
	head   string
	repo   string
	// reason says why the preview is removed.
	reason string
	// resumed marks the state read from a record at start, not from an event.
	resumed bool
}

type pullRequest struct {
	want     desired
	received time.Time // when the event behind want arrived
	running  bool
	cancel   context.CancelCauseFunc
	// changed wakes a worker that waits to retry when want changes.
	changed chan struct{}
}

// supersededError cancels the work on a state that a newer event replaced.
type supersededError struct{ by desired }

func (e supersededError) Error() string { return "superseded by a newer event" }

// New returns a Manager; Start resumes the stored previews.
func New(cfg Config) *Manager {
	if cfg.Branch == "" {
		cfg.Branch = "main"
	}
	if cfg.Label == "" {
		cfg.Label = DefaultLabel
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 10 * time.Minute
	}
	if cfg.Interval == 0 {
		cfg.Interval = 500 * time.Millisecond
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Manager{cfg: cfg, log: log.With("component", "preview"), prs: map[int]*pullRequest{},
		health: health.NewTracker(health.TrackerConfig{Store: cfg.Store, Logger: log})}
}

var _ webhook.PullRequestHandler = (*Manager)(nil)

// Start resumes every stored preview in the background; workers live until ctx (the
// leadership) ends.
func (m *Manager) Start(ctx context.Context) {
	m.mu.Lock()
	m.ctx = ctx
	m.mu.Unlock()
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		m.resume(ctx)
	}()
}

// Wait blocks until every worker has returned (after the leadership ended).
func (m *Manager) Wait() { m.wg.Wait() }

// resume submits the state of every record. It comes with the zero time, so that an event that
// arrives meanwhile wins.
func (m *Manager) resume(ctx context.Context) {
	for attempt := 0; ctx.Err() == nil; attempt++ {
		recs, err := m.listRecords(ctx)
		if err != nil {
			m.log.Warn("reading the preview records; retrying", "err", err)
			sleep(ctx, backoff(attempt))
			continue
		}
		for _, r := range recs {
			want := desired{deploy: r.State != StateRemoving, head: r.Head, repo: r.Repo, resumed: true, reason: "removal resumed"}
			m.log.Info("resuming preview", "pr", r.Number, "state", r.State, "head", short(r.Head))
			m.submit(ctx, r.Number, want, time.Time{})
		}
		return
	}
}

// HandlePullRequest implements webhook.PullRequestHandler: it records the event's desired
// state for the pull request's preview and returns at once; a worker does the rest.
func (m *Manager) HandlePullRequest(ctx context.Context, ev webhook.PullRequest) {
	if ev.Received.IsZero() {
		ev.Received = time.Now()
	}
	want := m.desiredFor(ev)
	m.mu.Lock()
	if m.ctx != nil {
		ctx = m.ctx
	}
	m.mu.Unlock()
	m.submit(ctx, ev.Number, want, ev.Received)
}

// desiredFor is the state of the preview that ev asks for.
func (m *Manager) desiredFor(ev webhook.PullRequest) desired {
	want := desired{head: ev.HeadSHA, repo: ev.Repo}
	if want.repo == "" {
		want.repo = m.cfg.Repo
	}
	switch {
	case ev.Merged:
		want.reason = "the pull request was merged"
	case ev.Closed || ev.Action == webhook.ActionClosed:
		want.reason = "the pull request was closed"
	case ev.Base != m.cfg.Branch:
		want.reason = fmt.Sprintf("the pull request targets %s, not %s", ev.Base, m.cfg.Branch)
	case !slices.Contains(ev.Labels, m.cfg.Label):
		want.reason = fmt.Sprintf("the %q label was removed", m.cfg.Label)
	default:
		want.deploy = true
	}
	return want
}

// submit makes want the desired state of pull request number unless a newer event set one,
// and starts its worker or cancels the worker's outdated work.
func (m *Manager) submit(ctx context.Context, number int, want desired, at time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	pr := m.prs[number]
	if pr == nil {
		pr = &pullRequest{changed: make(chan struct{}, 1)}
		m.prs[number] = pr
	}
	if at.Before(pr.received) {
		return // an older event, handled after a newer one
	}
	changed := pr.want != want
	pr.want, pr.received = want, at
	if pr.running {
		if changed {
			if pr.cancel != nil {
				pr.cancel(supersededError{by: want})
			}
			select {
			case pr.changed <- struct{}{}:
			default:
			}
		}
		return
	}
	pr.running = true
	m.wg.Add(1)
	go m.work(ctx, number, pr)
}

// work brings pull request number's preview to its desired state until that stops changing.
func (m *Manager) work(ctx context.Context, number int, pr *pullRequest) {
	defer m.wg.Done()
	for attempt := 0; ; {
		m.mu.Lock()
		want := pr.want
		wctx, cancel := context.WithCancelCause(ctx)
		pr.cancel = cancel
		select {
		case <-pr.changed: // this round takes the change up
		default:
		}
		m.mu.Unlock()

		err := m.reconcile(wctx, number, want)
		cancel(nil)

		m.mu.Lock()
		changed := pr.want != want
		if !changed && (err == nil || attempt+1 >= maxAttempts || ctx.Err() != nil) {
			pr.running, pr.cancel = false, nil
			m.mu.Unlock()
			if err != nil && ctx.Err() == nil {
				m.log.Error("preview not brought up to date; the next event or operator start tries again", "pr", number, "err", err)
			}
			return
		}
		pr.cancel = func(error) {} // nothing in progress until the next round
		m.mu.Unlock()
		if changed {
			attempt = 0
			continue
		}
		attempt++
		m.log.Warn("preview failed; retrying", "pr", number, "attempt", attempt, "err", err)
		t := time.NewTimer(backoff(attempt - 1))
		select {
		case <-ctx.Done():
		case <-pr.changed:
		case <-t.C:
		}
		t.Stop()
	}
}

// reconcile deploys or removes one pull request's preview; an error is worth a retry.
func (m *Manager) reconcile(ctx context.Context, number int, want desired) error {
	ctx, cancel := context.WithTimeout(ctx, m.cfg.Timeout)
	defer cancel()
	rec, err := m.loadRecord(ctx, number)
	if err != nil {
		return err
	}
	log := m.log.With("pr", number, "head", short(want.head), "namespace", Namespace(number))
	if want.deploy {
		return m.deploy(ctx, log, number, want, rec)
	}
	return m.remove(ctx, log, number, want, rec)
}

// deploy applies want.head to the preview namespace and follows its rollout.
func (m *Manager) deploy(ctx context.Context, log *slog.Logger, number int, want desired, rec *record) error {
	ns := Namespace(number)
	if rec == nil {
		rec = &record{Number: number}
	}
	rec.Repo = want.repo
	// A head that was deployed (a resumed preview, an event that changed something else such as
	// another label) is re-applied quietly: only a difference (a crash mid-way, an object
	// deleted meanwhile) is reported.
	quiet := rec.State == StateDeployed && rec.Applied == want.head
	if !quiet {
		rec.Head, rec.State, rec.Message = want.head, StateDeploying, "deploying "+short(want.head)
		if err := m.saveRecord(ctx, rec); err != nil {
			return err
		}
		m.status(ctx, log, want, forge.StatePending, "deploying to namespace "+ns)
	}
	failed := func(state forge.State, msg string) {
		if rec.Applied != "" && rec.Applied != want.head {
			msg += fmt.Sprintf("; %s keeps %s", ns, short(rec.Applied))
		}
		m.finish(ctx, log, want, rec, StateFailed, state, msg)
	}

	loaded, err := m.cfg.Loader.LoadRef(ctx, pullRef(number), want.head)
	if err != nil && want.resumed && want.head != "" && ctx.Err() == nil {
		// A head that the remote no longer has (force-pushed while no operator led): the
		// pull request's current head stands in for it.
		log.Warn("the recorded head cannot be fetched; deploying the pull request's current head", "err", err)
		loaded, err = m.cfg.Loader.LoadRef(ctx, pullRef(number), "")
	}
	if err != nil {
		if superseded(ctx) {
			return nil
		}
		failed(forge.StateError, fmt.Sprintf("cannot load %s: %v", pullRef(number), err))
		return err
	}
	want.head = loaded.Commit
	if loaded.Errors != nil {
		failed(forge.StateFailure, fmt.Sprintf("invalid (%d errors), first: %s; nothing new deployed", len(loaded.Errors), loaded.Errors[0].Error()))
		return nil
	}
	env, errs := Rewrite(loaded.Set, loaded.Dir, number)
	if errs != nil {
		failed(forge.StateFailure, fmt.Sprintf("cannot be previewed (%d errors), first: %s", len(errs), errs[0].Error()))
		return nil
	}
	if err := m.ensureNamespace(ctx, number, want.head); err != nil {
		if superseded(ctx) {
			return nil
		}
		var notOurs errNotOurs
		if errors.As(err, &notOurs) {
			failed(forge.StateFailure, err.Error())
			return nil
		}
		failed(forge.StateError, err.Error())
		return err
	}
	sc := gitsync.Scope{Namespace: ns, Label: resource.LabelPreview, Value: strconv.Itoa(number)}
	res, err := gitsync.ApplyScope(ctx, m.cfg.Store, log, sc, env.Objects, ".", want.head)
	if err != nil {
		if superseded(ctx) {
			return nil
		}
		failed(forge.StateError, err.Error()+"; will retry")
		return err
	}
	if res.Errors != nil {
		failed(forge.StateFailure, fmt.Sprintf("refused (%d errors), first: %s", len(res.Errors), res.Errors[0].Error()))
		return nil
	}
	c := res.Counts
	log.Info("preview applied", "created", c.Created, "updated", c.Updated, "deleted", c.Deleted, "unchanged", c.Unchanged,
		"skipped", len(env.Skipped))
	if quiet && c.Created+c.Updated+c.Deleted == 0 {
		return nil
	}
	if quiet {
		m.status(ctx, log, want, forge.StatePending, "rolling out in namespace "+ns)
	}
	rec.Applied = want.head
	h, settled := m.rollout(ctx, env, want.head)
	if superseded(ctx) {
		m.supersededStatus(ctx, log, want)
		return nil
	}
	state, msg := forge.StateSuccess, fmt.Sprintf("deployed to namespace %s: %s", ns, h.Message)
	switch {
	case !settled:
		state, msg = forge.StateFailure, fmt.Sprintf("%s: still %s after %s: %s", ns, h.Status, m.cfg.Timeout, h.Message)
	case h.Status != bosunv1.HealthHealthy:
		state, msg = forge.StateFailure, fmt.Sprintf("%s: %s: %s", ns, h.Status, h.Message)
	}
	if s := skippedNote(env.Skipped); s != "" {
		msg += "; " + s
	}
	m.finish(ctx, log, want, rec, StateDeployed, state, msg)
	return nil
}

// rollout follows the health of the environment's workloads until it settles (Healthy or
// Degraded) or ctx ends; settled is false then.
func (m *Manager) rollout(ctx context.Context, env *Environment, commit string) (bosunv1.CommitHealth, bool) {
	var refs []gitsync.ObjectRef
	for _, o := range env.Objects {
		if health.HasHealth(o.Resource) {
			refs = append(refs, gitsync.ObjectRef{Resource: o.Resource, Namespace: env.Namespace, Name: o.Object.GetName()})
		}
	}
	h := bosunv1.CommitHealth{Commit: commit, Status: bosunv1.HealthProgressing, Message: fmt.Sprintf("rolling out %d workloads", len(refs))}
	tick := time.NewTicker(m.cfg.Interval)
	defer tick.Stop()
	for {
		next := m.health.Assess(ctx, commit, refs)
		if ctx.Err() != nil {
			return h, false // an assessment cut short says nothing
		}
		h = next
		switch h.Status {
		case bosunv1.HealthHealthy:
			switch len(refs) {
			case 0:
				h.Message = "no workloads"
			case 1:
				h.Message = "its workload is available"
			default:
				h.Message = fmt.Sprintf("all %d workloads available", len(refs))
			}
			return h, true
		case bosunv1.HealthDegraded:
			return h, true
		}
		select {
		case <-ctx.Done():
			return h, false
		case <-tick.C:
		}
	}
}

// remove deletes the preview namespace (which deletes everything in it) and the record.
func (m *Manager) remove(ctx context.Context, log *slog.Logger, number int, want desired, rec *record) error {
	ns := Namespace(number)
	obj, err := m.cfg.Store.Get(ctx, resource.Namespaces, "", ns)
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("reading namespace %s: %w", ns, err)
	}
	exists := err == nil
	ours := exists && obj.GetLabels()[resource.LabelPreview] == strconv.Itoa(number)
	if rec == nil && !ours {
		return nil // never previewed
	}
	if rec != nil {
		if want.head == "" {
			want.head = rec.Head
		}
		if want.repo == "" {
			want.repo = rec.Repo
		}
		if rec.State != StateRemoving {
			rec.State, rec.Message = StateRemoving, want.reason
			if err := m.saveRecord(ctx, rec); err != nil {
				return err
			}
		}
	}
	switch {
	case ours && obj.GetDeletionTimestamp() == nil:
		if _, err := m.cfg.Store.Delete(ctx, resource.Namespaces, "", ns, store.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("deleting namespace %s: %w", ns, err)
		}
		log.Info("preview removed", "reason", want.reason)
	case exists && !ours:
		log.Warn("namespace is not this preview's; left alone", "reason", want.reason)
	}
	if want.head != "" {
		m.status(ctx, log, want, forge.StateSuccess, fmt.Sprintf("namespace %s removed: %s", ns, want.reason))
	}
	return m.deleteRecord(ctx, number)
}

// errNotOurs is a preview namespace that exists without this preview's label.
type errNotOurs struct{ namespace, label string }

func (e errNotOurs) Error() string {
	return fmt.Sprintf("namespace %s exists and is not this preview's (it lacks the label %s): previews need the namespace pr-<number>; rename or delete the other one",
		e.namespace, e.label)
}

// ensureNamespace creates the preview namespace, or waits until a removed one is gone.
func (m *Manager) ensureNamespace(ctx context.Context, number int, head string) error {
	ns, value := Namespace(number), strconv.Itoa(number)
	for {
		obj, err := m.cfg.Store.Get(ctx, resource.Namespaces, "", ns)
		if apierrors.IsNotFound(err) {
			n := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
				Name:   ns,
				Labels: map[string]string{resource.LabelPreview: value},
				Annotations: map[string]string{
					resource.AnnotationSource: pullRef(number),
					resource.AnnotationCommit: head,
				},
			}}
			resource.Namespaces.SetTypeMeta(n)
			_, err = m.cfg.Store.Create(ctx, resource.Namespaces, n)
			if apierrors.IsAlreadyExists(err) {
				continue
			}
			if err != nil {
				return fmt.Errorf("creating namespace %s: %w", ns, err)
			}
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading namespace %s: %w", ns, err)
		}
		if obj.GetLabels()[resource.LabelPreview] != value {
			return errNotOurs{namespace: ns, label: resource.LabelPreview + "=" + value}
		}
		if obj.GetDeletionTimestamp() == nil {
			return nil
		}
		// The namespace of a removed preview is still being emptied.
		if !sleep(ctx, m.cfg.Interval) {
			return fmt.Errorf("waiting for the removed namespace %s to be gone: %w", ns, context.Cause(ctx))
		}
	}
}

// finish records how a deploy ended and posts the head's final status. Both get a short while
// of their own when the deploy's time is up.
func (m *Manager) finish(ctx context.Context, log *slog.Logger, want desired, rec *record, recState string, state forge.State, msg string) {
	if ctx.Err() != nil {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(context.WithoutCancel(ctx), postTimeout)
		defer cancel()
	}
	rec.Head, rec.State, rec.Message = want.head, recState, msg
	if err := m.saveRecord(ctx, rec); err != nil {
		log.Error("recording the preview", "err", err)
	}
	if state == forge.StateSuccess {
		log.Info("preview deployed", "message", msg)
	} else {
		log.Warn("preview not deployed", "state", state, "message", msg)
	}
	m.status(ctx, log, want, state, msg)
}

// supersededStatus ends the status of a head whose deploy a newer event cut short: a newer
// head gets its own, a removal posts on the head it names.
func (m *Manager) supersededStatus(ctx context.Context, log *slog.Logger, want desired) {
	var sup supersededError
	if !errors.As(context.Cause(ctx), &sup) || !sup.by.deploy || sup.by.head == want.head {
		return
	}
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), postTimeout)
	defer cancel()
	m.status(pctx, log, want, forge.StateError, "superseded by "+short(sup.by.head)+" before its rollout settled")
}

func (m *Manager) status(ctx context.Context, log *slog.Logger, want desired, state forge.State, desc string) {
	if m.cfg.Statuses == nil || want.repo == "" || want.head == "" {
		return
	}
	if err := m.cfg.Statuses.SetStatus(ctx, want.repo, want.head, forge.Status{Context: StatusContext, State: state, Description: desc}); err != nil {
		log.Warn("posting the preview status", "state", state, "err", err)
	}
}

// skippedNote summarises what a preview left out.
func skippedNote(skipped []Skipped) string {
	var cluster int
	var host []string
	for _, s := range skipped {
		switch s.Reason {
		case ReasonClusterScoped:
			cluster++
		case ReasonHostNetwork:
			host = append(host, fmt.Sprintf("%s %s", strings.ToLower(s.Kind), s.Name))
		}
	}
	var parts []string
	if len(host) > 0 {
		parts = append(parts, fmt.Sprintf("skipped (hostNetwork): %s", strings.Join(host, ", ")))
	}
	switch {
	case cluster == 1:
		parts = append(parts, "1 cluster-scoped object not previewed")
	case cluster > 1:
		parts = append(parts, fmt.Sprintf("%d cluster-scoped objects not previewed", cluster))
	}
	return strings.Join(parts, "; ")
}

func superseded(ctx context.Context) bool {
	return errors.As(context.Cause(ctx), new(supersededError))
}

func pullRef(number int) string { return fmt.Sprintf("refs/pull/%d/head", number) }

func backoff(attempt int) time.Duration {
	return min(retryBase<<attempt, 30*time.Second)
}

// sleep waits d or until ctx ends; it reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func short(sha string) string {
	if len(sha) > 12 {
		return sha[:12]
	}
	return sha
}
