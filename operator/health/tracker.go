package health

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/bosun-gitops/bosun/internal/resource"
	"github.com/bosun-gitops/bosun/operator/gitsync"
	bosunv1 "github.com/bosun-gitops/bosun/repo-layout/v1alpha1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Store is the subset of the object store the tracker needs.
type Store interface {
	Get(ctx context.Context, res *resource.Resource, namespace, name string) (resource.Object, error)
	UpdateStatus(ctx context.Context, res *resource.Resource, obj resource.Object) (resource.Object, error)
}

// Settled is called once the health of a commit's changes settles (Healthy or Degraded) or the
// tracker gives up (Timeout: Progressing). It may block; it runs on the tracker's goroutine.
type Settled func(ctx context.Context, commit string, h bosunv1.CommitHealth)

// Superseded is called when a newer commit replaces one whose rollout had not settled: the
// older commit's health will never be known. It runs on a goroutine of its own.
type Superseded func(ctx context.Context, commit, newer string, h bosunv1.CommitHealth)

// Cache looks an object up in an informer cache: cached is false when res has no cache, obj nil
// when the cache does not hold the object.
type Cache func(res *resource.Resource, namespace, name string) (obj resource.Object, cached bool)

// TrackerConfig configures a Tracker.
type TrackerConfig struct {
	Store Store
	// Cache, when set, serves the objects of the kinds it caches instead of a read from Store
	// on every assessment: a rollout of thousands of workloads would otherwise decode each of
	// them from etcd twice a second. A cached object counts only once it carries the assessed
	// commit (the bosun.dev/commit annotation that the apply wrote); before that, and for an
	// object the cache lacks, the store is read.
	Cache Cache
	// GitSync names the GitSync object whose status.health is written ("default").
	GitSync string
	// Interval between assessments (default 500ms), stretched up to ten times while they
	// find nothing new (a rollout waiting on nodes, say); Timeout gives up on a rollout that
	// neither becomes Healthy nor Degraded (default 10m).
	Interval, Timeout time.Duration
	// OnProgress is called once when tracking of a commit starts; OnSettled when it ends;
	// OnSuperseded instead of OnSettled when a newer commit ends it.
	OnProgress   Settled
	OnSettled    Settled
	OnSuperseded Superseded
	Logger       *slog.Logger
}

// nextInterval is the wait before the next assessment: base after one that found something
// new, else twice the last wait, up to maxIntervalFactor times base.
func nextInterval(last, base time.Duration, changed bool) time.Duration {
	if changed {
		return base
	}
	return min(2*last, maxIntervalFactor*base)
}

// maxIntervalFactor bounds how far the interval between assessments stretches while nothing
// changes: a rollout stuck for minutes is looked at every 5 s by default, not every 500 ms.
const maxIntervalFactor = 10

// postTimeout bounds a callback that runs after the tracking's own context ended.
const postTimeout = 30 * time.Second

// Tracker follows the health of the objects that the latest applied commit changed. A newer
// commit replaces the one being tracked.
//
// A process that starts (a restart, a leader failover) first syncs a commit that is already
// applied: that sync writes nothing, so it says nothing about health. The tracker then takes
// up what status.health records for that commit instead of declaring it healthy.
type Tracker struct {
	cfg TrackerConfig
	log *slog.Logger

	mu     sync.Mutex
	cancel context.CancelCauseFunc
	done   chan struct{}
	commit string              // the commit tracked last
	refs   []gitsync.ObjectRef // what its syncs changed
	posts  sync.WaitGroup      // OnSuperseded calls in flight
}

// NewTracker returns a Tracker; Track starts its work.
func NewTracker(cfg TrackerConfig) *Tracker {
	if cfg.GitSync == "" {
		cfg.GitSync = "default"
	}
	if cfg.Interval == 0 {
		cfg.Interval = 500 * time.Millisecond
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 10 * time.Minute
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Tracker{cfg: cfg, log: log.With("component", "health")}
}

// supersededError is the cause of a tracking cancelled by a newer commit.
type supersededError struct{ by string }

func (e supersededError) Error() string { return "superseded by commit " + short(e.by) }

// OnSynced is a gitsync.Config.OnSynced hook: it starts tracking r's commit in the background
// (ctx bounds it) and returns at once.
func (t *Tracker) OnSynced(ctx context.Context, r gitsync.SyncReport) {
	t.mu.Lock()
	defer t.mu.Unlock()
	var resumed *bosunv1.CommitHealth
	switch {
	case r.Commit == t.commit:
		// The same commit synced again (a webhook and a poll, or a re-diff): what the first
		// sync changed is still rolling out, and a sync that wrote nothing changes nothing.
		if len(r.Changed) == 0 {
			return
		}
		r.Changed = append(append([]gitsync.ObjectRef(nil), t.refs...), r.Changed...)
	case len(r.Changed) == 0:
		// Nothing written for a commit this tracker has not seen: the first sync after a
		// restart or a failover. What status.health holds for this commit stands.
		h, err := t.stored(ctx)
		if err != nil {
			// Not knowing is not healthy: the next sync of the commit asks again.
			t.log.Warn("reading the recorded commit health; health not tracked until the next sync", "commit", short(r.Commit), "err", err)
			return
		}
		if h == nil || h.Commit != r.Commit {
			break
		}
		refs := refsOf(h)
		if settled(h.Status) {
			t.log.Info("commit health already settled; kept", "commit", short(r.Commit), "health", h.Status)
			t.stop(r.Commit)
			t.commit, t.refs = r.Commit, refs
			return
		}
		t.log.Info("resuming health tracking", "commit", short(r.Commit), "health", h.Status, "workloads", len(refs))
		r.Changed, resumed = refs, h
	}
	t.stop(r.Commit)
	t.commit, t.refs = r.Commit, r.Changed
	cctx, cancelCause := context.WithCancelCause(ctx)
	tctx, cancel := context.WithTimeout(cctx, t.cfg.Timeout)
	done := make(chan struct{})
	t.cancel, t.done = cancelCause, done
	go func() {
		defer close(done)
		defer cancelCause(nil)
		defer cancel()
		t.track(tctx, r, resumed)
	}()
}

// stop ends the current tracking (t.mu held) and waits for it; next is the commit that
// replaces it.
func (t *Tracker) stop(next string) {
	if t.cancel == nil {
		return
	}
	var cause error = context.Canceled
	if next != t.commit {
		cause = supersededError{by: next}
	}
	t.cancel(cause)
	<-t.done
	t.cancel, t.done = nil, nil
}

// stored returns the health recorded in the GitSync status (nil when there is none).
func (t *Tracker) stored(ctx context.Context) (*bosunv1.CommitHealth, error) {
	obj, err := t.cfg.Store.Get(ctx, resource.GitSyncs, "", t.cfg.GitSync)
	if err != nil {
		return nil, fmt.Errorf("reading GitSync %s: %w", t.cfg.GitSync, err)
	}
	return obj.(*bosunv1.GitSync).Status.Health, nil
}

func settled(s bosunv1.HealthStatusCode) bool {
	return s == bosunv1.HealthHealthy || s == bosunv1.HealthDegraded
}

// refsOf turns the workloads recorded in h back into object references.
func refsOf(h *bosunv1.CommitHealth) []gitsync.ObjectRef {
	var refs []gitsync.ObjectRef
	for _, rh := range h.Resources {
		for _, res := range resource.All {
			if res.Kind == rh.Kind && HasHealth(res) {
				refs = append(refs, gitsync.ObjectRef{Resource: res, Namespace: rh.Namespace, Name: rh.Name})
				break
			}
		}
	}
	return refs
}

// Wait blocks until the current tracking ends (for tests and shutdown).
func (t *Tracker) Wait() {
	t.mu.Lock()
	done := t.done
	t.mu.Unlock()
	if done != nil {
		<-done
	}
	t.posts.Wait()
}

// track follows r's workloads until they settle, the tracking times out or ctx ends. resumed is
// the recorded health when tracking is taken up after a restart (OnProgress was called then).
func (t *Tracker) track(ctx context.Context, r gitsync.SyncReport, resumed *bosunv1.CommitHealth) {
	var refs []gitsync.ObjectRef
	for _, ref := range r.Changed {
		if HasHealth(ref.Resource) {
			refs = append(refs, ref)
		}
	}
	var last bosunv1.HealthStatusCode
	if resumed != nil {
		last = resumed.Status
	}
	// h is the latest assessment made while ctx lived (one cut short says nothing).
	h := bosunv1.CommitHealth{Commit: r.Commit, Status: bosunv1.HealthProgressing, Message: fmt.Sprintf("rolling out %d workloads", len(refs))}
	if resumed != nil {
		h = *resumed
	}
	interval := t.cfg.Interval
	timer := time.NewTimer(interval)
	defer timer.Stop()
	for first := true; ; first = false {
		next := t.Assess(ctx, r.Commit, refs)
		if ctx.Err() != nil {
			t.ended(ctx, r.Commit, h)
			return
		}
		interval = nextInterval(interval, t.cfg.Interval, first || next.Status != h.Status || next.Message != h.Message)
		h = next
		if h.Status != last {
			last = h.Status
			t.log.Info("commit health", "commit", short(r.Commit), "health", h.Status, "message", h.Message)
			if err := t.record(ctx, h); err != nil && ctx.Err() == nil {
				t.log.Warn("recording health", "err", err)
			}
		}
		// The forge hears of the rollout once status.health says whose it is, so that a
		// restart in between finds the commit's own record.
		if first && resumed == nil && t.cfg.OnProgress != nil {
			t.cfg.OnProgress(ctx, r.Commit, bosunv1.CommitHealth{Commit: r.Commit, Status: bosunv1.HealthProgressing,
				Message: fmt.Sprintf("rolling out %d workloads", len(refs))})
		}
		if settled(h.Status) {
			t.settle(ctx, r.Commit, h)
			return
		}
		timer.Reset(interval)
		select {
		case <-ctx.Done():
			t.ended(ctx, r.Commit, h)
			return
		case <-timer.C:
		}
	}
}

// ended reports a tracking that ctx ended before the health settled: a timeout is settled as
// it stands, a newer commit supersedes it; leadership ending says nothing (the next leader
// takes the tracking up).
func (t *Tracker) ended(ctx context.Context, commit string, h bosunv1.CommitHealth) {
	var sup supersededError
	switch cause := context.Cause(ctx); {
	case errors.As(cause, &sup):
		if t.cfg.OnSuperseded == nil {
			return
		}
		t.log.Info("commit superseded before its rollout settled", "commit", short(commit), "by", short(sup.by), "health", h.Status)
		pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), postTimeout)
		t.posts.Add(1)
		go func() {
			defer t.posts.Done()
			defer cancel()
			t.cfg.OnSuperseded(pctx, commit, sup.by, h)
		}()
	case errors.Is(cause, context.DeadlineExceeded):
		h.Message = fmt.Sprintf("still %s after %s: %s", h.Status, t.cfg.Timeout, h.Message)
		pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), postTimeout)
		defer cancel()
		t.settle(pctx, commit, h)
	}
}

func (t *Tracker) settle(ctx context.Context, commit string, h bosunv1.CommitHealth) {
	if t.cfg.OnSettled != nil {
		t.cfg.OnSettled(ctx, commit, h)
	}
}

// Assess reads every object and aggregates their health (the worst wins).
func (t *Tracker) Assess(ctx context.Context, commit string, refs []gitsync.ObjectRef) bosunv1.CommitHealth {
	h := bosunv1.CommitHealth{Commit: commit, Status: bosunv1.HealthHealthy}
	var worst string
	for _, ref := range refs {
		obj, err := t.get(ctx, commit, ref)
		var r Result
		switch {
		case apierrors.IsNotFound(err):
			r = Assess(nil)
		case err != nil:
			r = Result{bosunv1.HealthProgressing, "cannot read: " + err.Error()}
		default:
			r = Assess(obj)
		}
		h.Resources = append(h.Resources, bosunv1.ResourceHealth{Kind: ref.Resource.Kind, Namespace: ref.Namespace, Name: ref.Name, Status: r.Status, Message: r.Message})
		if Worse(r.Status, h.Status) {
			h.Status = r.Status
			worst = fmt.Sprintf("%s %s: %s", ref.Resource.Kind, ref.Name, r.Message)
		}
	}
	switch {
	case worst != "":
		h.Message = worst
	case len(refs) == 0:
		h.Message = "no workload changed"
	default:
		h.Message = fmt.Sprintf("all %d changed workloads are available", len(refs))
	}
	return h
}

// get reads the object ref names as the commit applied it or later: from the cache when the
// cached object carries commit, else from the store.
func (t *Tracker) get(ctx context.Context, commit string, ref gitsync.ObjectRef) (resource.Object, error) {
	if t.cfg.Cache != nil {
		obj, cached := t.cfg.Cache(ref.Resource, ref.Namespace, ref.Name)
		if cached && obj != nil && obj.GetAnnotations()[resource.AnnotationCommit] == commit {
			return obj, nil
		}
	}
	return t.cfg.Store.Get(ctx, ref.Resource, ref.Namespace, ref.Name)
}

// record writes h into the GitSync status (read-modify-write, retried on conflicts with the
// sync loop's own status writes).
func (t *Tracker) record(ctx context.Context, h bosunv1.CommitHealth) error {
	now := metav1.Now()
	h.LastTransitionTime = &now
	for attempt := 0; ; attempt++ {
		obj, err := t.cfg.Store.Get(ctx, resource.GitSyncs, "", t.cfg.GitSync)
		if err != nil {
			return fmt.Errorf("reading GitSync %s: %w", t.cfg.GitSync, err)
		}
		gs := obj.(*bosunv1.GitSync)
		gs.Status.Health = &h
		gs.Status.RecordHealth(h)
		_, err = t.cfg.Store.UpdateStatus(ctx, resource.GitSyncs, gs)
		if err == nil || !apierrors.IsConflict(err) || attempt >= 5 {
			if err != nil {
				return fmt.Errorf("writing GitSync %s health: %w", t.cfg.GitSync, err)
			}
			return nil
		}
	}
}

func short(sha string) string {
	if len(sha) > 12 {
		return sha[:12]
	}
	return sha
}
