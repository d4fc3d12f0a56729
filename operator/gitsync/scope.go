package gitsync

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/bosun-gitops/bosun/internal/resource"
	repolayout "github.com/bosun-gitops/bosun/repo-layout"
	bosunv1 "github.com/bosun-gitops/bosun/repo-layout/v1alpha1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// This file lends the sync's pieces (loading a ref, the plan, the batched apply) to writers of
// a part of the store that the branch's sync does not own: preview environments of pull
// requests (package preview). Their objects carry resource.LabelPreview; the branch's sync
// leaves them out of its inventory, so it never prunes or adopts them.

// inPreview reports whether obj belongs to a preview environment.
func inPreview(obj metav1.Object) bool {
	_, ok := obj.GetLabels()[resource.LabelPreview]
	return ok
}

// invalidReason is the short form of a commit's validation errors, for the history.
func invalidReason(list repolayout.ErrorList) string {
	if len(list) == 0 {
		return "invalid"
	}
	return fmt.Sprintf("invalid (%d errors), first: %s", len(list), list[0].Error())
}

// LoadedRef is a commit's tree loaded at the configured path.
type LoadedRef struct {
	Commit string
	// Set holds the loaded objects (nil when Errors is set); their files are relative to Dir.
	Set *repolayout.Set
	// Dir is the loaded sub-directory of the repository ("." for the root).
	Dir string
	// Errors are the commit's validation errors, files relative to the repository root.
	Errors repolayout.ErrorList
}

// LoadRef fetches ref as PlanRef does (sha, when set, is the commit to load among those
// fetched) and loads its tree at the configured path; an invalid commit yields Errors and no
// error.
func (s *Syncer) LoadRef(ctx context.Context, ref, sha string) (*LoadedRef, error) {
	commit, err := s.resolve(ctx, ref, sha)
	if err != nil {
		return nil, err
	}
	out := &LoadedRef{Commit: commit.Hash.String(), Dir: s.cfg.Path}
	tree, err := subtree(commit, s.cfg.Path)
	if err != nil {
		return nil, err
	}
	set, err := repolayout.LoadTree(tree)
	if err != nil {
		if list, ok := LoadError(err); ok {
			for i := range list {
				list[i].File = s.repoFile(list[i].File)
			}
			out.Errors = list
			return out, nil
		}
		return nil, fmt.Errorf("loading commit %s: %w", shortSHA(out.Commit), err)
	}
	out.Set = set
	return out, nil
}

// Scope is a part of the store written by ApplyScope: the objects in Namespace. Its inventory
// (what ApplyScope prunes) is the Git-stamped objects there that carry the label Label=Value;
// a Git-stamped object without it belongs to someone else and is left alone.
type Scope struct {
	Namespace    string
	Label, Value string
}

// ScopeResult is what ApplyScope did.
type ScopeResult struct {
	Counts bosunv1.SyncCounts
	// Report lists what was written, as a sync reports it.
	Report SyncReport
	// Errors, when set, refused the apply (an object that a controller owns would be taken
	// over); nothing was written.
	Errors repolayout.ErrorList
}

// ApplyScope makes the objects of sc what objs declare, with the sync's rules: the diff by
// applied hash, adoption, the fields controllers own carried over, batched writes in phases,
// conflicts retried; commit is stamped on what it writes. objs must all be namespaced, in
// sc.Namespace, and carry sc's label; their files are relative to dir (a LoadedRef's Dir).
func ApplyScope(ctx context.Context, st Store, log *slog.Logger, sc Scope, objs []repolayout.Object, dir, commit string) (*ScopeResult, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	want := make([]*desired, 0, len(objs))
	for _, o := range objs {
		if !o.Resource.Namespaced || o.Object.GetNamespace() != sc.Namespace || o.Object.GetLabels()[sc.Label] != sc.Value {
			return nil, fmt.Errorf("%s %s/%s is outside the scope of namespace %s and label %s=%s",
				o.Resource.Kind, o.Object.GetNamespace(), o.Object.GetName(), sc.Namespace, sc.Label, sc.Value)
		}
		file := repoFile(cleanPath(dir), o.File)
		want = append(want, &desired{res: o.Resource, obj: o.Object, file: file, line: o.Line, hash: appliedHash(o.Raw, file, o.Line)})
	}
	live, err := listScope(ctx, st, sc)
	if err != nil {
		return nil, fmt.Errorf("reading the objects of namespace %s: %w", sc.Namespace, err)
	}
	p := computePlan(want, live)
	if list := controlledAdoptions(p); len(list) > 0 {
		return &ScopeResult{Errors: list}, nil
	}
	if err := fullLive(ctx, st, p); err != nil {
		return nil, fmt.Errorf("reading the objects of namespace %s: %w", sc.Namespace, err)
	}
	res := &ScopeResult{Report: p.report(commit)}
	// The sync's own apply; it needs nothing of a Syncer but the store and the logger.
	n, err := (&Syncer{st: st, log: log}).apply(ctx, p, commit)
	res.Counts = bosunv1.SyncCounts{Created: n.created, Updated: n.updated, Deleted: n.deleted, Unchanged: p.unchanged}
	if err != nil {
		return res, fmt.Errorf("applying commit %s to namespace %s: %w", shortSHA(commit), sc.Namespace, err)
	}
	return res, nil
}

// listScope reads the metadata of the objects in sc's namespace of every namespaced kind a
// repository may declare, without the Git-stamped objects of other owners.
func listScope(ctx context.Context, st Reader, sc Scope) (map[objKey]resource.Object, error) {
	live := make(map[objKey]resource.Object)
	for _, res := range resource.All {
		if !res.InRepo || !res.Namespaced {
			continue
		}
		items, _, err := st.ListMetadata(ctx, res, sc.Namespace)
		if err != nil {
			return nil, fmt.Errorf("listing %s: %w", res, err)
		}
		for _, obj := range items {
			if isManaged(obj) && obj.Labels[sc.Label] != sc.Value {
				continue
			}
			live[keyOf(res, obj.Namespace, obj.Name)] = obj
		}
	}
	return live, nil
}
