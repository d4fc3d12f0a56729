package store

import (
	"context"
	"errors"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// RunCompactor compacts etcd's history every interval (default 5 minutes), keeping the last
// keep revisions (default 10 000), until ctx ends. Watches and paged lists older than that get
// "410 Gone" and re-list. Several operators may run it against one cluster: compacting to a
// revision that is already compacted is harmless.
func (s *Store) RunCompactor(ctx context.Context, interval time.Duration, keep int64) error {
	if interval <= 0 {
		interval = compactorIntervalDef
	}
	if keep <= 0 {
		keep = compactorKeepDefault
	}
	log := s.log.With("task", "compactor")
	t := time.NewTicker(interval)
	defer t.Stop()
	var last int64
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		rev, err := s.Compact(ctx, keep, last)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			log.Warn("compacting etcd", "err", err)
			continue
		}
		if rev > last {
			log.Debug("compacted etcd", "revision", rev)
			last = rev
		}
	}
}

// Compact compacts etcd's history up to the current revision minus keep, if that is past
// after. It returns the revision compacted to (0 when there was nothing to do).
func (s *Store) Compact(ctx context.Context, keep, after int64) (int64, error) {
	cur, err := s.CurrentRevision(ctx)
	if err != nil {
		return 0, err
	}
	target := cur - keep
	if target <= after || target <= 1 {
		return 0, nil
	}
	if err := compactTo(ctx, s.client, target); err != nil {
		return 0, etcdError("compacting etcd", err)
	}
	return target, nil
}

// compactTo compacts etcd's history up to rev; a revision already compacted is no error.
func compactTo(ctx context.Context, c clientv3.KV, rev int64, opts ...clientv3.CompactOption) error {
	_, err := c.Compact(ctx, rev, opts...)
	if errors.Is(err, rpctypes.ErrCompacted) || errors.Is(err, rpctypes.ErrGRPCCompacted) {
		return nil
	}
	return err
}
