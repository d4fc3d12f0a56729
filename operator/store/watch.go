package store

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/bosun-gitops/bosun/internal/resource"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/watch"
)

// Watch streams changes to res's objects in namespace ("" = all) after opts.ResourceVersion,
// filtered by the selectors. See WatchOptions and Event for the semantics. The events' objects
// are shared with the other watches of res (decoded once, see decodeCache): read them, copy
// them to change them. The channel closes
// when ctx ends or after an Error event: the start revision was compacted (410 Gone: list
// again), etcd lost its leader, or the consumer left its buffer full for longer than
// Options.WatchSendTimeout (watch again from the last resourceVersion seen).
func (s *Store) Watch(ctx context.Context, res *resource.Resource, namespace string, opts WatchOptions) (<-chan Event, error) {
	m, err := newMatcher(res, opts.LabelSelector, opts.FieldSelector)
	if err != nil {
		return nil, err
	}
	if opts.ResourceVersion < 0 {
		return nil, apierrors.NewBadRequest(fmt.Sprintf("invalid resourceVersion %d", opts.ResourceVersion))
	}
	w := &watcher{
		s:      s,
		res:    res,
		m:      m,
		prefix: s.listPrefix(res, namespace),
		opts:   opts,
		out:    make(chan Event, s.opts.WatchBuffer),
		caller: ctx,
	}
	var initial []resource.Object
	startRev := opts.ResourceVersion
	if startRev == 0 {
		objs, rev, err := s.listRaw(ctx, res, namespace)
		if err != nil {
			return nil, err
		}
		initial, startRev = objs, rev
	}
	// Leave the etcd watch to wctx so that ending it (slow consumer) does not need the caller.
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	etcdOpts := []clientv3.OpOption{clientv3.WithPrefix(), clientv3.WithPrevKV(), clientv3.WithRev(startRev + 1)}
	if opts.Bookmarks {
		etcdOpts = append(etcdOpts, clientv3.WithProgressNotify())
	}
	wch := s.client.Watch(wctx, w.prefix, etcdOpts...)
	w.cancelEtcd = cancel
	go func() {
		defer close(w.out)
		defer cancel()
		w.run(wctx, initial, wch)
	}()
	return w.out, nil
}

type watcher struct {
	s      *Store
	res    *resource.Resource
	m      matcher
	prefix string
	opts   WatchOptions
	out    chan Event
	// caller is the caller's context; cancelEtcd ends the etcd watch alone.
	caller     context.Context
	cancelEtcd context.CancelFunc
}

// errSlowConsumer ends a watch whose consumer stopped reading.
var errSlowConsumer = errors.New("watch consumer too slow")

func (w *watcher) run(ctx context.Context, initial []resource.Object, wch clientv3.WatchChan) {
	for _, obj := range initial {
		if !w.m.matches(obj) {
			continue
		}
		if err := w.send(ctx, Event{Type: watch.Added, Object: obj}); err != nil {
			w.fail(ctx, err)
			return
		}
	}
	var bookmarks <-chan time.Time
	if w.opts.Bookmarks {
		t := time.NewTicker(w.s.opts.BookmarkInterval)
		defer t.Stop()
		bookmarks = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-bookmarks:
			// Ask etcd for a progress notification now, rather than waiting for the server's
			// own interval (which an external cluster may set to ten minutes).
			if err := w.s.client.RequestProgress(ctx); err != nil && ctx.Err() == nil {
				w.s.log.Debug("requesting watch progress", "resource", w.res.String(), "err", err)
			}
		case resp, ok := <-wch:
			if !ok {
				if ctx.Err() == nil {
					w.fail(ctx, apierrors.NewInternalError(errors.New("etcd closed the watch; watch again from the last resourceVersion seen")))
				}
				return
			}
			if resp.CompactRevision != 0 {
				w.fail(ctx, apierrors.NewResourceExpired(fmt.Sprintf(
					"too old resource version: %d (%d)", w.opts.ResourceVersion, resp.CompactRevision)))
				return
			}
			if err := resp.Err(); err != nil {
				if ctx.Err() == nil {
					w.fail(ctx, etcdError(fmt.Sprintf("watching %s", w.res), err))
				}
				return
			}
			if resp.IsProgressNotify() {
				if w.opts.Bookmarks {
					if err := w.send(ctx, w.bookmark(resp.Header.Revision)); err != nil {
						w.fail(ctx, err)
						return
					}
				}
				continue
			}
			for _, ev := range resp.Events {
				e, ok, err := w.transform(ev)
				if err != nil {
					w.fail(ctx, err)
					return
				}
				if !ok {
					continue
				}
				if err := w.send(ctx, e); err != nil {
					w.fail(ctx, err)
					return
				}
			}
		}
	}
}

func (w *watcher) bookmark(rev int64) Event {
	obj := w.res.New()
	w.res.SetTypeMeta(obj)
	obj.SetResourceVersion(strconv.FormatInt(rev, 10))
	return Event{Type: watch.Bookmark, Object: obj}
}

// transform turns an etcd event into a watch event, applying the selectors to the old and new
// states as Kubernetes does: an object that stops matching is reported as DELETED, one that
// starts matching as ADDED.
func (w *watcher) transform(ev *clientv3.Event) (Event, bool, error) {
	rev := ev.Kv.ModRevision
	var cur, prev resource.Object
	var err error
	if ev.Type == mvccpb.PUT {
		if cur, err = w.s.decodes.decode(w.res, ev.Kv.Key, rev, rev, ev.Kv.Value); err != nil {
			return Event{}, false, err
		}
	}
	hadPrev := ev.PrevKv != nil || ev.Type == mvccpb.DELETE
	switch {
	case ev.PrevKv != nil && (ev.Type == mvccpb.DELETE || !w.m.everything()):
		// The old state, stamped with the event's revision as Kubernetes does. A watch
		// without selectors only needs it for deletes: an update is MODIFIED whatever it was.
		if prev, err = w.s.decodes.decode(w.res, ev.PrevKv.Key, ev.PrevKv.ModRevision, rev, ev.PrevKv.Value); err != nil {
			return Event{}, false, err
		}
	case ev.PrevKv == nil && ev.Type == mvccpb.DELETE:
		prev = w.objectFromKey(string(ev.Kv.Key), rev)
	}
	curMatch := cur != nil && w.m.matches(cur)
	prevMatch := hadPrev && (w.m.everything() || w.m.matches(prev))
	switch {
	case ev.Type == mvccpb.DELETE:
		if prevMatch {
			return Event{Type: watch.Deleted, Object: prev}, true, nil
		}
	case !hadPrev || ev.IsCreate():
		if curMatch {
			return Event{Type: watch.Added, Object: cur}, true, nil
		}
	case curMatch && prevMatch:
		return Event{Type: watch.Modified, Object: cur}, true, nil
	case curMatch:
		return Event{Type: watch.Added, Object: cur}, true, nil
	case prevMatch:
		return Event{Type: watch.Deleted, Object: prev}, true, nil
	}
	return Event{}, false, nil
}

// objectFromKey rebuilds namespace and name of a deleted object whose previous value etcd no
// longer has (compacted).
func (w *watcher) objectFromKey(key string, rev int64) resource.Object {
	obj := w.res.New()
	w.res.SetTypeMeta(obj)
	rest := strings.TrimPrefix(key, w.s.resourcePrefix(w.res))
	if ns, name, ok := strings.Cut(rest, "/"); ok && w.res.Namespaced {
		obj.SetNamespace(ns)
		obj.SetName(name)
	} else {
		obj.SetName(rest)
	}
	obj.SetResourceVersion(strconv.FormatInt(rev, 10))
	return obj
}

// send delivers e, waiting at most WatchSendTimeout for room in the buffer.
func (w *watcher) send(ctx context.Context, e Event) error {
	select {
	case w.out <- e:
		return nil
	default:
	}
	t := time.NewTimer(w.s.opts.WatchSendTimeout)
	defer t.Stop()
	select {
	case w.out <- e:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return errSlowConsumer
	}
}

// fail ends the watch with an Error event, unless the caller's ctx ended (which just closes the
// channel). The etcd watch stops at once; the error waits for the consumer to read up to it
// (or to cancel), so that a slow consumer learns why its watch ended.
func (w *watcher) fail(ctx context.Context, err error) {
	w.cancelEtcd()
	if w.caller.Err() != nil {
		return
	}
	if errors.Is(err, errSlowConsumer) {
		w.s.log.Warn("ending watch: consumer too slow", "resource", w.res.String(), "buffer", cap(w.out))
		err = apierrors.NewServiceUnavailable(fmt.Sprintf(
			"watch of %s ended: the client left %d events unread for %s; watch again from the last resourceVersion seen",
			w.res, cap(w.out), w.s.opts.WatchSendTimeout))
	}
	select {
	case w.out <- Event{Type: watch.Error, Err: err}:
	case <-w.caller.Done():
	}
}
