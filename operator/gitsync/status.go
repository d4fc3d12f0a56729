package gitsync

import (
	"context"
	"fmt"
	"time"

	"github.com/bosun-gitops/bosun/internal/resource"
	bosunv1 "github.com/bosun-gitops/bosun/repo-layout/v1alpha1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// specFromConfig is the GitSync spec for the configuration. Every node may read the object: the
// address is stored redacted.
func (s *Syncer) specFromConfig() bosunv1.GitSyncSpec {
	return bosunv1.GitSyncSpec{
		Repo:     RedactURL(s.cfg.Repo),
		Branch:   s.cfg.Branch,
		Path:     s.cfg.Path,
		Interval: metav1.Duration{Duration: s.cfg.Interval},
	}
}

// ensureGitSync creates the GitSync object on first start, or brings its spec in line with the
// configuration (keeping spec.syncRequested, which `bosun sync` owns).
func (s *Syncer) ensureGitSync(ctx context.Context) (*bosunv1.GitSync, error) {
	for attempt := 0; ; attempt++ {
		gs, err := s.getGitSync(ctx)
		if apierrors.IsNotFound(err) {
			gs = &bosunv1.GitSync{ObjectMeta: metav1.ObjectMeta{Name: s.cfg.Name}, Spec: s.specFromConfig()}
			resource.GitSyncs.SetTypeMeta(gs)
			created, err := s.st.Create(ctx, resource.GitSyncs, gs)
			if apierrors.IsAlreadyExists(err) && attempt < maxRetries {
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("creating GitSync %s: %w", s.cfg.Name, err)
			}
			return created.(*bosunv1.GitSync), nil
		}
		if err != nil {
			return nil, err
		}
		want := s.specFromConfig()
		want.SyncRequested, want.AcceptRewrite = gs.Spec.SyncRequested, gs.Spec.AcceptRewrite
		if gs.Spec == want {
			return gs, nil
		}
		gs.Spec = want
		updated, err := s.st.Update(ctx, resource.GitSyncs, gs)
		if apierrors.IsConflict(err) && attempt < maxRetries {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("updating GitSync %s: %w", s.cfg.Name, err)
		}
		return updated.(*bosunv1.GitSync), nil
	}
}

func (s *Syncer) getGitSync(ctx context.Context) (*bosunv1.GitSync, error) {
	obj, err := s.st.Get(ctx, resource.GitSyncs, "", s.cfg.Name)
	if err != nil {
		if apierrors.IsNotFound(err) {
			return nil, err
		}
		return nil, fmt.Errorf("reading GitSync %s: %w", s.cfg.Name, err)
	}
	gs, ok := obj.(*bosunv1.GitSync)
	if !ok {
		return nil, fmt.Errorf("reading GitSync %s: unexpected type %T", s.cfg.Name, obj)
	}
	return gs, nil
}

// writeStatus applies mutate to the stored status, retrying on conflicts with the API server
// (a concurrent `bosun sync` changes the spec, which bumps the resourceVersion).
func (s *Syncer) writeStatus(ctx context.Context, mutate func(*bosunv1.GitSyncStatus)) error {
	var err error
	for attempt := 0; attempt <= maxRetries; attempt++ {
		var gs *bosunv1.GitSync
		gs, err = s.getGitSync(ctx)
		if apierrors.IsNotFound(err) {
			if gs, err = s.ensureGitSync(ctx); err != nil {
				return err
			}
		} else if err != nil {
			return err
		}
		now := metav1.NewTime(time.Now())
		gs.Status.LastAttempt = &now
		mutate(&gs.Status)
		_, err = s.st.UpdateStatus(ctx, resource.GitSyncs, gs)
		if err == nil || !apierrors.IsConflict(err) {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("writing GitSync %s status: %w", s.cfg.Name, err)
	}
	return nil
}

func commitStatus(c commitInfo) bosunv1.CommitInfo {
	t := metav1.NewTime(c.Time)
	return bosunv1.CommitInfo{SHA: c.SHA, Author: c.Author, Message: c.Message, Time: &t}
}
