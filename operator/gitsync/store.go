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
	Create(ctx context.Context, res *resource.Resource, obj resource.Object) (resource.Object, error)
	Update(ctx context.Context, res *resource.Resource, obj resource.Object) (resource.Object, error)
	UpdateStatus(ctx context.Context, res *resource.Resource, obj resource.Object) (resource.Object, error)
	Batch(ctx context.Context, ops []store.Op) []store.OpResult
	Watch(ctx context.Context, res *resource.Resource, namespace string, opts store.WatchOptions) (<-chan store.Event, error)
}

var _ Store = (*store.Store)(nil)

// listPageSize bounds one List response (Deployment-sized objects stay well under etcd's limit).
const listPageSize = 2000

// listLive reads every stored object of every kind that the repository may declare: managed
// objects form the inventory to prune, unmanaged ones may be adopted. Kinds are listed in
// parallel, each once.
//
// A managed object whose applied hash matches its desired object is kept only as a small
// metadata stub: that is all the plan needs, and it keeps memory flat at 10 000 objects.
func listLive(ctx context.Context, st Store, want []*desired) (map[objKey]resource.Object, error) {
	hashes := make(map[objKey]string, len(want))
	for _, d := range want {
		hashes[keyOf(d.res, d.obj.GetNamespace(), d.obj.GetName())] = d.hash
	}
	var (
		mu   sync.Mutex
		live = make(map[objKey]resource.Object)
		errs []error
		wg   sync.WaitGroup
	)
	for _, res := range resource.All {
		if !res.InRepo {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			var items []resource.Object
			opts := store.ListOptions{Limit: listPageSize}
			for {
				page, err := st.List(ctx, res, "", opts)
				if err != nil {
					mu.Lock()
					errs = append(errs, fmt.Errorf("listing %s: %w", res, err))
					mu.Unlock()
					return
				}
				items = append(items, page.Items...)
				page.Items = nil
				if page.Continue == "" {
					break
				}
				opts.Continue = page.Continue
			}
			mu.Lock()
			for _, obj := range items {
				k := keyOf(res, obj.GetNamespace(), obj.GetName())
				if h, ok := hashes[k]; ok && isManaged(obj) && obj.GetAnnotations()[resource.AnnotationAppliedHash] == h {
					obj = unchangedStub(obj)
				}
				live[k] = obj
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return live, nil
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
		return store.Op{Type: store.OpCreate, Resource: c.res, Object: prepare(c.want, nil, commit)}
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

// unchangedStub keeps what the plan reads of an object that needs no write.
func unchangedStub(obj resource.Object) resource.Object {
	ann := obj.GetAnnotations()
	return &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{
		Namespace: obj.GetNamespace(), Name: obj.GetName(), ResourceVersion: obj.GetResourceVersion(),
		Annotations: map[string]string{
			resource.AnnotationSource:      ann[resource.AnnotationSource],
			resource.AnnotationAppliedHash: ann[resource.AnnotationAppliedHash],
		},
	}}
}
