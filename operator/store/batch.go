package store

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"

	"github.com/bosun-gitops/bosun/internal/resource"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Batch applies many writes with few round trips. The ops on distinct keys are cut into chunks
// of at most MaxTxnOps, and up to BatchConcurrency chunks run at once, each on its own: it reads
// the current state of its updates and deletes in one transaction of Gets, prepares its writes
// and commits them in transactions of at most MaxTxnBytes bytes. One chunk's encoding thus
// overlaps other chunks' round trips to etcd. A transaction whose compares fail (a conflict or a
// concurrent writer) is redone op by op, so that every op gets its own result. Ops on distinct
// keys are independent: there is no all-or-nothing across the batch. Several ops on the same key
// run one after another, in order, after the others.
func (s *Store) Batch(ctx context.Context, ops []Op) []OpResult {
	results := make([]OpResult, len(ops))
	keys := make([]string, len(ops))
	seen := make(map[string]int, len(ops))
	var sequential []int
	var parallel []int
	for i, op := range ops {
		key, err := s.opKey(i, op)
		if err != nil {
			results[i].Err = err
			continue
		}
		keys[i] = key
		seen[key]++
	}
	for i := range ops {
		switch {
		case results[i].Err != nil:
		case seen[keys[i]] > 1:
			sequential = append(sequential, i)
		default:
			parallel = append(parallel, i)
		}
	}
	b := &batch{s: s, ops: ops, keys: keys, results: results, plans: make([]*plan, len(ops))}
	s.forChunks(len(parallel), s.opts.MaxTxnOps, func(lo, hi int) {
		b.run(ctx, parallel[lo:hi])
	})
	for _, i := range sequential {
		results[i] = s.runOne(ctx, ops[i])
	}
	return results
}

// batch is one Batch call; its chunks write to distinct indices of results and plans.
type batch struct {
	s       *Store
	ops     []Op
	keys    []string
	results []OpResult
	plans   []*plan
}

// run reads, prepares and commits the ops at indices chunk (at most MaxTxnOps of them).
func (b *batch) run(ctx context.Context, chunk []int) {
	s, ops, results := b.s, b.ops, b.results
	// Read the current state of every update and delete.
	current := make(map[int]*kvState)
	var reads []clientv3.Op
	var readIdx []int
	for _, i := range chunk {
		if ops[i].Type != OpCreate && ops[i].base() == nil {
			reads = append(reads, clientv3.OpGet(b.keys[i]))
			readIdx = append(readIdx, i)
		}
	}
	if len(reads) > 0 {
		resp, err := s.client.Txn(ctx).Then(reads...).Commit()
		for j, i := range readIdx {
			if err != nil {
				results[i].Err = etcdError("reading objects for a batch", err)
				continue
			}
			rr := resp.Responses[j].GetResponseRange()
			st := &kvState{}
			if rr != nil && len(rr.Kvs) > 0 {
				st.value, st.rev = rr.Kvs[0].Value, rr.Kvs[0].ModRevision
			}
			current[i] = st
		}
	}

	// Prepare the writes: encoding dominates a batch of creates.
	for _, i := range chunk {
		if results[i].Err != nil {
			continue
		}
		p, res, err := s.planOp(ops[i], b.keys[i], current[i])
		switch {
		case err != nil:
			results[i].Err = err
		case p == nil:
			results[i] = res
		case p.noop:
			results[i].Object = p.obj
		default:
			b.plans[i] = p
		}
	}

	// Commit them in transactions within etcd's limits.
	var group []int
	bytes := 0
	for _, i := range chunk {
		p := b.plans[i]
		if p == nil {
			continue
		}
		if len(group) > 0 && (len(group)+1 > s.opts.MaxTxnOps || bytes+p.size > s.opts.MaxTxnBytes) {
			s.commitGroup(ctx, ops, b.plans, results, group)
			group, bytes = nil, 0
		}
		group = append(group, i)
		bytes += p.size
	}
	if len(group) > 0 {
		s.commitGroup(ctx, ops, b.plans, results, group)
	}
}

// kvState is a key's stored value and ModRevision (rev 0: absent).
type kvState struct {
	value []byte
	rev   int64
}

func (s *Store) opKey(i int, op Op) (string, error) {
	if op.Resource == nil || op.Object == nil {
		return "", apierrors.NewBadRequest("batch op without a resource or an object")
	}
	if op.Type != OpCreate && op.Type != OpUpdate && op.Type != OpDelete && op.Type != OpUpdateWithStatus {
		return "", apierrors.NewBadRequest(fmt.Sprintf("batch op of unknown type %d", op.Type))
	}
	ns := op.Object.GetNamespace()
	if !op.Resource.Namespaced {
		ns = ""
	}
	if op.Type == OpCreate && op.Object.GetName() == "" {
		// generateName: the key is drawn when the op runs; it cannot collide with another op.
		return "generateName:" + strconv.Itoa(i), nil
	}
	return s.objectKey(op.Resource, ns, op.Object.GetName())
}

// planOp prepares op against the stored state st (nil for creates). It returns either a plan
// or, when nothing is to be written, the final result.
func (s *Store) planOp(op Op, key string, st *kvState) (*plan, OpResult, error) {
	res := op.Resource
	switch op.Type {
	case OpCreate:
		p, err := s.planCreate(res, op.Object)
		return p, OpResult{}, err
	case OpUpdate, OpUpdateWithStatus:
		var cur resource.Object
		var raw []byte
		if base := op.base(); base != nil {
			cur = base.DeepCopyObject().(resource.Object) // the precondition checks it is current
		} else {
			if st.rev == 0 {
				return nil, OpResult{}, apierrors.NewNotFound(res.GroupResource(), op.Object.GetName())
			}
			var err error
			if cur, err = decode(res, st.value, st.rev); err != nil {
				return nil, OpResult{}, err
			}
			raw = st.value
		}
		if op.Type == OpUpdateWithStatus && res.HasStatus {
			setStatus(cur, op.Object) // planUpdate keeps cur's status: make it the new one
		}
		p, err := s.planUpdate(res, key, cur, raw, op.Object, false)
		return p, OpResult{}, err
	default: // OpDelete
		if st.rev == 0 {
			return nil, OpResult{}, nil // already gone
		}
		cur, err := decode(res, st.value, st.rev)
		if err != nil {
			return nil, OpResult{}, err
		}
		p, err := s.planDelete(res, key, cur, DeleteOptions{Preconditions: deletePreconditions(op.Object)})
		return p, OpResult{}, err
	}
}

func deletePreconditions(obj resource.Object) *metav1.Preconditions {
	rv := obj.GetResourceVersion()
	if rv == "" {
		return nil
	}
	return &metav1.Preconditions{ResourceVersion: &rv}
}

// commitGroup commits the plans of group as one transaction, or op by op when that fails.
func (s *Store) commitGroup(ctx context.Context, ops []Op, plans []*plan, results []OpResult, group []int) {
	var cmps []clientv3.Cmp
	thens := make([]clientv3.Op, 0, len(group))
	for _, i := range group {
		cmps = append(cmps, plans[i].cmps...)
		thens = append(thens, plans[i].op)
	}
	resp, err := s.client.Txn(ctx).If(cmps...).Then(thens...).Commit()
	if err == nil && resp.Succeeded {
		rv := strconv.FormatInt(resp.Header.Revision, 10)
		for _, i := range group {
			p := plans[i]
			if p.deleted {
				continue
			}
			p.obj.SetResourceVersion(rv)
			results[i].Object = p.obj
		}
		return
	}
	if err != nil && !retryOpByOp(err) {
		serr := etcdError("committing a batch", err)
		for _, i := range group {
			results[i].Err = serr
		}
		return
	}
	if len(group) > 1 {
		s.log.Debug("batch transaction failed; retrying op by op", "ops", len(group), "err", err)
	}
	for _, i := range group {
		results[i] = s.runOne(ctx, ops[i])
	}
}

// runOne runs a single op through the ordinary write path.
func (s *Store) runOne(ctx context.Context, op Op) OpResult {
	var obj resource.Object
	var err error
	switch op.Type {
	case OpCreate:
		obj, err = s.Create(ctx, op.Resource, op.Object)
	case OpUpdate:
		obj, err = s.Update(ctx, op.Resource, op.Object)
	case OpUpdateWithStatus:
		obj, err = s.update(ctx, op.Resource, op.Object, false, true)
	case OpDelete:
		obj, err = s.Delete(ctx, op.Resource, op.Object.GetNamespace(), op.Object.GetName(),
			DeleteOptions{Preconditions: deletePreconditions(op.Object)})
		switch {
		case apierrors.IsNotFound(err):
			return OpResult{} // already gone
		case err == nil && len(obj.GetFinalizers()) == 0 && !gracePending(obj):
			obj = nil // deleted, not merely marked
		}
	}
	return OpResult{Object: obj, Err: err}
}

// forChunks calls fn on [lo, hi) chunks of n items of at most size, running up to
// BatchConcurrency calls at once.
func (s *Store) forChunks(n, size int, fn func(lo, hi int)) {
	if n == 0 {
		return
	}
	sem := make(chan struct{}, s.opts.BatchConcurrency)
	var wg sync.WaitGroup
	for lo := 0; lo < n; lo += size {
		hi := min(lo+size, n)
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			fn(lo, hi)
		}()
	}
	wg.Wait()
}

// retryOpByOp tells the transaction errors that one op may cause (too large, two ops on one
// generated name) from those that every op would meet (etcd unavailable, ctx ended).
func retryOpByOp(err error) bool {
	return errors.Is(err, rpctypes.ErrRequestTooLarge) || errors.Is(err, rpctypes.ErrGRPCRequestTooLarge) ||
		errors.Is(err, rpctypes.ErrDuplicateKey) || errors.Is(err, rpctypes.ErrGRPCDuplicateKey)
}
