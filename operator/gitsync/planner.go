package gitsync

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/bosun-gitops/bosun/internal/resource"
	repolayout "github.com/bosun-gitops/bosun/repo-layout"
	git "github.com/go-git/go-git/v5"
	gitconfig "github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// Action is what a sync does to one object.
type Action string

// Actions of a plan.
const (
	ActionCreate Action = "create"
	ActionUpdate Action = "update"
	ActionAdopt  Action = "adopt"
	ActionDelete Action = "delete"
)

// Change is one write that a sync of the planned commit would do.
type Change struct {
	Action    Action
	Resource  *resource.Resource
	Namespace string
	Name      string
	// File and Line locate the manifest in the repository (empty for deletes: the file is gone).
	File string
	Line int
	// Desired is the object exactly as the sync would write it (annotations stamped, fields
	// that controllers own carried over from Live); nil for deletes.
	Desired resource.Object
	// Live is the stored object in full; nil for creates.
	Live resource.Object
}

// Plan is what a sync of one commit (or directory) would write, computed with the same
// inventory, adoption, preserved-field and applied-hash rules as the sync itself.
type Plan struct {
	Commit    string
	Changes   []Change
	Unchanged int
	// Errors holds the validation errors of an invalid commit; such a commit has no Changes.
	Errors repolayout.ErrorList
}

// ObjectRef names one object that a sync wrote.
type ObjectRef struct {
	Resource  *resource.Resource
	Namespace string
	Name      string
}

// SyncReport tells Config.OnSynced what a successful sync applied.
type SyncReport struct {
	Commit string
	// Changed lists the objects created or updated (not deleted) by this sync.
	Changed []ObjectRef
	Deleted []ObjectRef
}

// PlanSet plans a loaded repository (dir is its sub-directory in the repository, "." for the
// root) against the live objects in st, without writing anything. commit is stamped on the
// desired objects as a sync would.
func PlanSet(ctx context.Context, st Reader, set *repolayout.Set, dir, commit string) (*Plan, error) {
	want, err := desiredFrom(set, cleanPath(dir))
	if err != nil {
		return nil, err
	}
	live, err := listLive(ctx, st, nil)
	if err != nil {
		return nil, fmt.Errorf("reading live objects: %w", err)
	}
	p := computePlan(want, live)
	if list := controlledAdoptions(p); len(list) > 0 {
		return &Plan{Commit: commit, Errors: list}, nil // the sync refuses this commit too
	}
	if err := fullLive(ctx, st, p); err != nil {
		return nil, fmt.Errorf("reading live objects: %w", err)
	}
	out := &Plan{Commit: commit, Unchanged: p.unchanged}
	for _, ph := range p.phases {
		for _, c := range ph {
			k := changeKey(c)
			ch := Change{Action: Action(c.action.String()), Resource: c.res, Namespace: k.namespace, Name: k.name, Live: c.live}
			if c.want != nil {
				ch.File, ch.Line = c.want.file, c.want.line
				ch.Desired = prepare(c.want, c.live, commit)
			}
			out.Changes = append(out.Changes, ch)
		}
	}
	return out, nil
}

// LoadError reports whether err carries validation errors, and returns them.
func LoadError(err error) (repolayout.ErrorList, bool) {
	var list repolayout.ErrorList
	if errors.As(err, &list) {
		return list, true
	}
	return nil, false
}

// PlanRef fetches ref from the remote and plans its commit against the live objects; an
// invalid commit yields a Plan with Errors and no error. ref is a branch name, a full ref (for
// example refs/pull/7/head) or a commit SHA that the clone already has. sha, when set, is the
// commit to plan among those fetched (a pull request's head as the webhook named it).
func (s *Syncer) PlanRef(ctx context.Context, ref, sha string) (*Plan, error) {
	l, err := s.LoadRef(ctx, ref, sha)
	if err != nil {
		return nil, err
	}
	if l.Errors != nil {
		return &Plan{Commit: l.Commit, Errors: l.Errors}, nil
	}
	return PlanSet(ctx, s.st, l.Set, l.Dir, l.Commit)
}

var hexSHA = regexp.MustCompile(`^[0-9a-f]{7,40}$`)

// resolve fetches ref (unless it is a SHA the clone has) and returns the commit to plan. The
// clone is shared with the sync loop, so the sync lock is held while git is used.
func (s *Syncer) resolve(ctx context.Context, ref, sha string) (*object.Commit, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.git.open(); err != nil {
		return nil, err
	}
	repo := s.git.repo
	if ref == "" && sha == "" {
		ref = s.cfg.Branch
	}
	if hexSHA.MatchString(ref) && sha == "" {
		if h, err := repo.ResolveRevision(plumbing.Revision(ref)); err == nil {
			return repo.CommitObject(*h)
		}
	}
	if ref != "" {
		src := ref
		if !strings.HasPrefix(src, "refs/") {
			src = "refs/heads/" + src
		}
		dst := plumbing.ReferenceName("refs/bosun/plan/" + strings.TrimPrefix(src, "refs/"))
		// The sync's own fetch: the same --fetch-timeout, dialer and freshly read credentials,
		// so a remote that does not answer cannot hold the sync lock.
		err := s.git.fetchRefs(ctx, gitconfig.RefSpec(fmt.Sprintf("+%s:%s", src, dst)))
		switch {
		case err == nil, errors.Is(err, git.NoErrAlreadyUpToDate):
		case isMissingRef(err):
			return nil, fmt.Errorf("ref %q not found in %s: %w", ref, s.git.display, ErrBranchNotFound)
		default:
			return nil, fmt.Errorf("fetching %s from %s: %w", ref, s.git.display, err)
		}
		if sha == "" {
			r, err := repo.Reference(dst, true)
			if err != nil {
				return nil, fmt.Errorf("resolving %s: %w", ref, err)
			}
			return repo.CommitObject(r.Hash())
		}
	}
	h, err := repo.ResolveRevision(plumbing.Revision(sha))
	if err != nil {
		return nil, fmt.Errorf("commit %s is not in %s (fetched %q): %w", sha, s.git.display, ref, err)
	}
	return repo.CommitObject(*h)
}

// report lists what a plan about to be applied writes, for Config.OnSynced.
func (p *plan) report(commit string) SyncReport {
	r := SyncReport{Commit: commit}
	for _, ph := range p.phases {
		for _, c := range ph {
			k := changeKey(c)
			ref := ObjectRef{Resource: c.res, Namespace: k.namespace, Name: k.name}
			if c.action == actDelete {
				r.Deleted = append(r.Deleted, ref)
			} else {
				r.Changed = append(r.Changed, ref)
			}
		}
	}
	return r
}
