package gitsync

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/bosun-gitops/bosun/internal/resource"
	"github.com/bosun-gitops/bosun/operator/store"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Store is the subset of the operator's store that Git sync needs.
type Store interface {
	Get(ctx context.Context, res *resource.Resource, namespace, name string) (resource.Object, error)
	List(ctx context.Context, res *resource.Resource, namespace string, opts store.ListOptions) (*store.ListResult, error)
	ListMetadata(ctx context.Context, res *resource.Resource, namespace string) ([]*metav1.PartialObjectMetadata, int64, error)
	Create(ctx context.Context, res *resource.Resource, obj resource.Object) (resource.Object, error)
	Update(ctx context.Context, res *resource.Resource, obj resource.Object) (resource.Object, error)
	UpdateStatus(ctx context.Context, res *resource.Resource, obj resource.Object) (resource.Object, error)
	Batch(ctx context.Context, ops []store.Op) []store.OpResult
	Watch(ctx context.Context, res *resource.Resource, namespace string, opts store.WatchOptions) (<-chan store.Event, error)
}

var _ Store = (*store.Store)(nil)

// Reader is the read-only subset of Store that planning needs: `bosun plan` and pull-request
// plans compute exactly what a sync would write without writing anything.
type Reader interface {
	Get(ctx context.Context, res *resource.Resource, namespace, name string) (resource.Object, error)
	List(ctx context.Context, res *resource.Resource, namespace string, opts store.ListOptions) (*store.ListResult, error)
	ListMetadata(ctx context.Context, res *resource.Resource, namespace string) ([]*metav1.PartialObjectMetadata, int64, error)
}

// listPageSize bounds one List response (Deployment-sized objects stay well under etcd's limit).
const listPageSize = 2000

// fullListThreshold is the number of objects of one kind to read in full above which one List
// of the kind is cheaper than a Get per object.
const fullListThreshold = 200

// getConcurrency bounds the Gets in flight when reading objects in full.
const getConcurrency = 8

// listLive reads the metadata of every stored object of every kind that the repository may
// declare, but the kinds in skip: managed objects form the inventory to prune, unmanaged ones
// may be adopted. Kinds are listed in parallel. Metadata (name, annotations with the applied
// hash, resourceVersion) is all the plan needs; the few objects it updates are read in full
// by fullLive.
func listLive(ctx context.Context, st Reader, skip map[*resource.Resource]bool) (map[objKey]resource.Object, error) {
	var (
		mu   sync.Mutex
		live = make(map[objKey]resource.Object)
		errs []error
		wg   sync.WaitGroup
	)
	for _, res := range resource.All {
		if !res.InRepo || skip[res] {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			items, _, err := st.ListMetadata(ctx, res, "")
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, fmt.Errorf("listing %s: %w", res, err))
				return
			}
			for _, obj := range items {
				if inPreview(obj) {
					continue // a preview environment's (see scope.go)
				}
				live[keyOf(res, obj.Namespace, obj.Name)] = obj
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return live, nil
}

// fullLive replaces the metadata of the live objects that the plan updates or adopts with the
// stored objects in full: prepare carries over what Git does not own (allocated fields, owner
// references, finalizers). A kind with few of them is read with one Get per object, one with
// many with a List. An object gone in between is created instead.
func fullLive(ctx context.Context, st Reader, p *plan) error {
	byRes := map[*resource.Resource][]*change{}
	for ph := range p.phases {
		for i := range p.phases[ph] {
			c := &p.phases[ph][i]
			if c.action == actUpdate || c.action == actAdopt {
				byRes[c.res] = append(byRes[c.res], c)
			}
		}
	}
	for res, changes := range byRes {
		var err error
		if len(changes) > fullListThreshold {
			err = fullByList(ctx, st, res, changes)
		} else {
			err = fullByGet(ctx, st, res, changes)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func fullByList(ctx context.Context, st Reader, res *resource.Resource, changes []*change) error {
	full := make(map[objKey]resource.Object, len(changes))
	opts := store.ListOptions{Limit: listPageSize}
	for {
		page, err := st.List(ctx, res, "", opts)
		if err != nil {
			return fmt.Errorf("listing %s: %w", res, err)
		}
		for _, obj := range page.Items {
			full[keyOf(res, obj.GetNamespace(), obj.GetName())] = obj
		}
		if page.Continue == "" {
			break
		}
		opts.Continue = page.Continue
	}
	for _, c := range changes {
		setFull(c, full[changeKey(*c)])
	}
	return nil
}

func fullByGet(ctx context.Context, st Reader, res *resource.Resource, changes []*change) error {
	var (
		wg   sync.WaitGroup
		sem  = make(chan struct{}, getConcurrency)
		mu   sync.Mutex
		errs []error
	)
	for _, c := range changes {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			k := changeKey(*c)
			obj, err := st.Get(ctx, res, k.namespace, k.name)
			switch {
			case apierrors.IsNotFound(err):
				obj = nil
			case err != nil:
				mu.Lock()
				errs = append(errs, fmt.Errorf("reading %s %s/%s: %w", res.Kind, k.namespace, k.name, err))
				mu.Unlock()
				return
			}
			setFull(c, obj)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// setFull sets the full live object of c; nil (gone since it was listed) makes c a create.
func setFull(c *change, obj resource.Object) {
	if obj == nil {
		c.action, c.live = actCreate, nil
		return
	}
	c.live = obj
}

// applyCounts is what an apply did.
type applyCounts struct {
	created, updated, deleted int
}

// maxRetries bounds the per-object retries after a conflict (a controller wrote in between).
const maxRetries = 3

// apply writes the plan phase by phase with Batch; the store splits each phase into transactions
// within etcd's limits. Ops that hit a conflict are re-planned one by one against a fresh read.
func (s *Syncer) apply(ctx context.Context, p *plan, commit string) (applyCounts, error) {
	var n applyCounts
	for _, ph := range p.phases {
		if len(ph) == 0 {
			continue
		}
		ops := make([]store.Op, len(ph))
		for i, c := range ph {
			ops[i] = s.opFor(c, commit)
		}
		results := s.st.Batch(ctx, ops)
		var errs []error
		for i, r := range results {
			c := ph[i]
			if r.Err == nil {
				n.add(c.action)
				continue
			}
			if ctx.Err() != nil {
				return n, ctx.Err()
			}
			if err := s.retryOne(ctx, c, commit, r.Err, &n); err != nil {
				errs = append(errs, err)
			}
		}
		if len(errs) > 0 {
			return n, fmt.Errorf("%d of %d writes failed, first: %w", len(errs), len(ph), errs[0])
		}
	}
	return n, nil
}

func (n *applyCounts) add(a action) {
	switch a {
	case actCreate:
		n.created++
	case actUpdate, actAdopt:
		n.updated++
	case actDelete:
		n.deleted++
	}
}

func (s *Syncer) opFor(c change, commit string) store.Op {
	switch c.action {
	case actCreate:
		return store.Op{Type: store.OpCreate, Resource: c.res, Object: prepareCreate(c.want, commit)}
	case actDelete:
		return store.Op{Type: store.OpDelete, Resource: c.res, Object: c.live}
	default:
		if c.action == actAdopt {
			s.log.Info("adopting object created outside Git", "kind", c.res.Kind,
				"namespace", c.live.GetNamespace(), "name", c.live.GetName(), "file", c.want.file)
		}
		return store.Op{Type: store.OpUpdate, Resource: c.res, Object: prepare(c.want, c.live, commit)}
	}
}

// retryOne re-reads one object whose write failed and writes it again from the fresh state.
func (s *Syncer) retryOne(ctx context.Context, c change, commit string, firstErr error, n *applyCounts) error {
	err := firstErr
	for attempt := 0; attempt < maxRetries; attempt++ {
		if !apierrors.IsConflict(err) && !apierrors.IsAlreadyExists(err) && !apierrors.IsNotFound(err) {
			break
		}
		k := changeKey(c)
		live, gerr := s.st.Get(ctx, c.res, k.namespace, k.name)
		switch {
		case apierrors.IsNotFound(gerr):
			live = nil
		case gerr != nil:
			return fmt.Errorf("re-reading %s %s/%s: %w", c.res.Kind, k.namespace, k.name, gerr)
		}
		if c.action == actDelete {
			if live == nil || !isManaged(live) {
				n.deleted++ // gone already, or taken over by someone else
				return nil
			}
			err = s.st.Batch(ctx, []store.Op{{Type: store.OpDelete, Resource: c.res, Object: live}})[0].Err
			if err == nil || apierrors.IsNotFound(err) {
				n.deleted++
				return nil
			}
			continue
		}
		if live == nil {
			_, err = s.st.Create(ctx, c.res, prepare(c.want, nil, commit))
			if err == nil {
				n.created++
				return nil
			}
			continue
		}
		_, err = s.st.Update(ctx, c.res, prepare(c.want, live, commit))
		if err == nil {
			n.updated++
			return nil
		}
	}
	k := changeKey(c)
	return fmt.Errorf("%s %s %s/%s: %w", c.action, c.res.Kind, k.namespace, k.name, err)
}
