package health

import (
	"context"
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

// TrackerConfig configures a Tracker.
type TrackerConfig struct {
	Store Store
	// GitSync names the GitSync object whose status.health is written ("default").
	GitSync string
	// Interval between assessments (default 500ms); Timeout gives up on a rollout that neither
	// becomes Healthy nor Degraded (default 10m).
	Interval, Timeout time.Duration
	// OnProgress is called once when tracking of a commit starts; OnSettled when it ends.
	OnProgress Settled
	OnSettled  Settled
	Logger     *slog.Logger
}

// Tracker follows the health of the objects that the latest applied commit changed. A newer
// commit replaces the one being tracked.
type Tracker struct {
	cfg TrackerConfig
	log *slog.Logger

	mu     sync.Mutex
	cancel context.CancelFunc
	done   chan struct{}
	commit string              // the commit tracked last
	refs   []gitsync.ObjectRef // what its syncs changed
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

// OnSynced is a gitsync.Config.OnSynced hook: it starts tracking r's commit in the background
// (ctx bounds it) and returns at once.
func (t *Tracker) OnSynced(ctx context.Context, r gitsync.SyncReport) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if r.Commit == t.commit {
		// The same commit synced again (a webhook and a poll, or a re-diff): what the first
		// sync changed is still rolling out, and a sync that wrote nothing changes nothing.
		if len(r.Changed) == 0 {
			return
		}
		r.Changed = append(append([]gitsync.ObjectRef(nil), t.refs...), r.Changed...)
	}
	t.commit, t.refs = r.Commit, r.Changed
	if t.cancel != nil {
		t.cancel()
		<-t.done
	}
	ctx, cancel := context.WithTimeout(ctx, t.cfg.Timeout)
	done := make(chan struct{})
	t.cancel, t.done = cancel, done
	go func() {
		defer close(done)
		defer cancel()
		t.track(ctx, r)
	}()
}

// Wait blocks until the current tracking ends (for tests and shutdown).
func (t *Tracker) Wait() {
	t.mu.Lock()
	done := t.done
	t.mu.Unlock()
	if done != nil {
		<-done
	}
}

func (t *Tracker) track(ctx context.Context, r gitsync.SyncReport) {
	var refs []gitsync.ObjectRef
	for _, ref := range r.Changed {
		if HasHealth(ref.Resource) {
			refs = append(refs, ref)
		}
	}
	if t.cfg.OnProgress != nil {
		t.cfg.OnProgress(ctx, r.Commit, bosunv1.CommitHealth{Commit: r.Commit, Status: bosunv1.HealthProgressing,
			Message: fmt.Sprintf("rolling out %d workloads", len(refs))})
	}
	var last bosunv1.HealthStatusCode
	ticker := time.NewTicker(t.cfg.Interval)
	defer ticker.Stop()
	for {
		h := t.Assess(ctx, r.Commit, refs)
		if h.Status != last {
			last = h.Status
			t.log.Info("commit health", "commit", short(r.Commit), "health", h.Status, "message", h.Message)
			if err := t.record(ctx, h); err != nil && ctx.Err() == nil {
				t.log.Warn("recording health", "err", err)
			}
		}
		if h.Status == bosunv1.HealthHealthy || h.Status == bosunv1.HealthDegraded {
			t.settle(ctx, r.Commit, h)
			return
		}
		select {
		case <-ctx.Done():
			if ctx.Err() == context.DeadlineExceeded {
				h.Message = fmt.Sprintf("still %s after %s: %s", h.Status, t.cfg.Timeout, h.Message)
				t.settle(context.WithoutCancel(ctx), r.Commit, h)
			}
			return
		case <-ticker.C:
		}
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
		obj, err := t.cfg.Store.Get(ctx, ref.Resource, ref.Namespace, ref.Name)
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
