package apiserver

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"time"

	"github.com/bosun-gitops/bosun/internal/resource"
	"github.com/bosun-gitops/bosun/operator/store"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
)

// minWatchTimeout is the shortest server-side lifetime of a watch without timeoutSeconds; each
// gets a random lifetime between it and twice it, so that clients re-list spread out in time.
const minWatchTimeout = 30 * time.Minute

// watchBufferSize is the most a watch stream holds back while more events are waiting.
const watchBufferSize = 32 << 10

// watchEvent is one event of a watch stream (a line of JSON).
type watchEvent struct {
	Type   watch.EventType `json:"type"`
	Object runtime.Object  `json:"object"`
}

func (s *Server) handleWatch(w http.ResponseWriter, r *http.Request, ri *requestInfo) {
	res := ri.Resource
	ls, fs, err := selectors(r)
	if err != nil {
		writeError(w, err)
		return
	}
	if ri.Name != "" { // legacy /watch/.../{name} paths watch one object
		byName := fields.OneTermEqualSelector("metadata.name", ri.Name)
		if fs == nil {
			fs = byName
		} else {
			fs = fields.AndSelectors(fs, byName)
		}
	}
	q := r.URL.Query()
	var rv int64
	if v := q.Get("resourceVersion"); v != "" {
		rv, err = strconv.ParseInt(v, 10, 64)
		if err != nil || rv < 0 {
			writeError(w, apierrors.NewBadRequest(fmt.Sprintf("resourceVersion %q: must be a non-negative integer", v)))
			return
		}
	}
	bookmarks := q.Get("allowWatchBookmarks") == "true"
	sendInitial := q.Get("sendInitialEvents") == "true"
	timeout := minWatchTimeout + rand.N(minWatchTimeout)
	if v := q.Get("timeoutSeconds"); v != "" {
		secs, err := strconv.ParseInt(v, 10, 64)
		if err != nil || secs < 0 {
			writeError(w, apierrors.NewBadRequest(fmt.Sprintf("timeoutSeconds %q: must be a non-negative integer", v)))
			return
		}
		if secs > 0 {
			timeout = time.Duration(secs) * time.Second
		}
	}
	flusher, ok := w.(http.Flusher)
	if !ok {
		writeError(w, apierrors.NewInternalError(fmt.Errorf("response writer %T cannot stream", w)))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()

	// sendInitialEvents (client-go's watch-list): the current state as ADDED events, then a
	// bookmark marking their end, then changes from the revision they were read at.
	var initial []resource.Object
	if sendInitial {
		lr, err := s.cfg.Store.List(ctx, res, ri.Namespace, store.ListOptions{LabelSelector: ls, FieldSelector: fs})
		if err != nil {
			writeError(w, err)
			return
		}
		initial, rv = lr.Items, lr.ResourceVersion
	}
	events, err := s.cfg.Store.Watch(ctx, res, ri.Namespace, store.WatchOptions{
		ResourceVersion: rv, LabelSelector: ls, FieldSelector: fs, Bookmarks: bookmarks,
	})
	if err != nil {
		writeError(w, err)
		return
	}
	gauge := s.metrics.watches.WithLabelValues(res.Resource)
	gauge.Inc()
	defer gauge.Dec()

	// Kubernetes' own kinds go as protobuf to the clients that prefer it (client-go's typed
	// clients): cheaper to encode here and to decode there than JSON.
	useProto := answersInProtobuf(r, res)
	if useProto {
		w.Header().Set("Content-Type", mediaProtobufWatch)
	} else {
		w.Header().Set("Content-Type", mediaJSON)
	}
	w.Header().Set("Cache-Control", "no-cache, private")
	w.WriteHeader(http.StatusOK)
	flusher.Flush()

	// Events are written to a buffer that is flushed when no further event is waiting: a
	// single change goes out at once, a burst in large frames rather than one TLS record each.
	bw := bufio.NewWriterSize(w, watchBufferSize)
	send := func(ev watchEvent) bool {
		var data []byte
		var err error
		if useProto {
			data, err = s.codec.protoWatchFrame(ev.Type, ev.Object)
		} else {
			data, err = json.Marshal(ev)
			data = append(data, '\n')
		}
		if err != nil {
			s.log.Error("encoding watch event", "resource", res.String(), "error", err)
			return false
		}
		_, err = bw.Write(data)
		return err == nil
	}
	flush := func() bool {
		if err := bw.Flush(); err != nil {
			return false
		}
		flusher.Flush()
		return true
	}
	for _, o := range initial {
		if !send(watchEvent{Type: watch.Added, Object: withTypeMeta(res, o)}) {
			return
		}
	}
	if sendInitial && bookmarks {
		bm := res.New()
		bm.SetResourceVersion(strconv.FormatInt(rv, 10))
		bm.SetAnnotations(map[string]string{metav1.InitialEventsAnnotationKey: "true"})
		if !send(watchEvent{Type: watch.Bookmark, Object: withTypeMeta(res, bm)}) {
			return
		}
	}
	if !flush() {
		return
	}
	defer flush() // what is held back when the watch ends
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-events:
			if !ok {
				return
			}
			out := watchEvent{Type: ev.Type}
			switch {
			case ev.Type == watch.Error:
				st := statusFor(ev.Err)
				out.Object = &st
			case ev.Object != nil:
				out.Object = withTypeMeta(res, ev.Object)
			}
			if out.Object != nil && !send(out) {
				return
			}
			if ev.Type == watch.Error {
				return
			}
			if len(events) == 0 && !flush() {
				return
			}
		}
	}
}

// withTypeMeta returns obj with apiVersion and kind set, copying it first when they are missing
// (the store may hand the same object to several watchers).
func withTypeMeta(res *resource.Resource, obj resource.Object) runtime.Object {
	if obj.GetObjectKind().GroupVersionKind() == res.GroupVersionKind() {
		return obj
	}
	c := obj.DeepCopyObject()
	res.SetTypeMeta(c)
	return c
}
