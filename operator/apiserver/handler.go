package apiserver

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/bosun-gitops/bosun/internal/resource"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// buildHandler assembles the request pipeline: recording (logs, metrics), authentication, path
// parsing, authorization and the resource handlers.
func (s *Server) buildHandler() http.Handler {
	metricsHandler := promhttp.HandlerFor(s.registry, promhttp.HandlerOpts{})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &recorder{ResponseWriter: w, code: http.StatusOK}
		ri := &requestInfo{}
		user := anonymousUser
		defer func() {
			s.observe(r, rec, ri, user, time.Since(start))
		}()

		switch r.URL.Path {
		case "/healthz", "/readyz", "/livez":
			rec.Header().Set("Content-Type", "text/plain")
			rec.Write([]byte("ok"))
			return
		}
		if ju, ok := s.serveJoinPaths(rec, r); ok {
			user = ju
			return
		}
		if s.cfg.Hooks != nil && strings.HasPrefix(r.URL.Path, "/hooks/") {
			s.cfg.Hooks.ServeHTTP(rec, r) // verified by signature, not by credentials
			return
		}
		u, ok := s.authenticate(r)
		if !ok {
			writeError(rec, apierrors.NewUnauthorized("Unauthorized"))
			return
		}
		user = u
		if u.anonymous() {
			writeError(rec, apierrors.NewUnauthorized("Unauthorized"))
			return
		}
		if u.inGroup(groupBootstrappers) { // bootstrap tokens only join (join.go)
			writeError(rec, statusForbiddenPath(u, r.URL.Path))
			return
		}
		if r.URL.Path == "/metrics" {
			if !u.inGroup(groupMasters) {
				writeError(rec, statusForbiddenPath(u, r.URL.Path))
				return
			}
			metricsHandler.ServeHTTP(rec, r)
			return
		}
		if s.cfg.Plans != nil && r.URL.Path == PlansPath {
			if !u.inGroup(groupMasters) {
				writeError(rec, statusForbiddenPath(u, r.URL.Path))
				return
			}
			s.cfg.Plans.ServeHTTP(rec, r)
			return
		}
		switch r.URL.Path {
		case "/version", "/version/":
			s.serveVersion(rec)
			return
		}
		var notFound bool
		ri, notFound = parseRequest(r)
		if notFound {
			writeError(rec, errPathNotFound())
			return
		}
		if ri.Discovery || ri.Resource == nil {
			s.serveDiscovery(rec, r, ri)
			return
		}
		if err := s.authorize(r.Context(), u, ri); err != nil {
			writeError(rec, err)
			return
		}
		s.serveResource(rec, r, ri, u)
	})
}

func statusForbiddenPath(u *userInfo, path string) error {
	return statusError(http.StatusForbidden, metav1.StatusReasonForbidden,
		fmt.Sprintf("forbidden: User %q cannot get path %q", u.Name, path))
}

func errPathNotFound() error {
	return statusError(http.StatusNotFound, metav1.StatusReasonNotFound, "the server could not find the requested resource")
}

// statusError is a StatusError for cases apierrors has no constructor for.
func statusError(code int32, reason metav1.StatusReason, msg string) error {
	return &apierrors.StatusError{ErrStatus: metav1.Status{
		Status: metav1.StatusFailure, Code: code, Reason: reason, Message: msg,
	}}
}

func slogLevelFor(code int) slog.Level {
	if code >= 500 {
		return slog.LevelError
	}
	return slog.LevelInfo
}

// serveResource dispatches a resource request by verb and subresource.
func (s *Server) serveResource(w http.ResponseWriter, r *http.Request, ri *requestInfo, u *userInfo) {
	if ri.Resource.Namespaced && ri.Namespace == "" && ri.Name != "" {
		writeError(w, errPathNotFound()) // /api/v1/pods/{name}: a namespaced object needs its namespace
		return
	}
	switch ri.Subresource {
	case "":
	case "log":
		if ri.Resource == resource.Pods {
			s.servePodLog(w, r, ri, u)
			return
		}
		writeError(w, apierrors.NewNotFound(ri.Resource.GroupResource(), ri.Name+"/"+ri.Subresource))
		return
	case "status":
		if !ri.Resource.HasStatus {
			writeError(w, apierrors.NewNotFound(ri.Resource.GroupResource(), ri.Name+"/status"))
			return
		}
		switch ri.Verb {
		case verbGet, verbUpdate, verbPatch:
		default:
			writeError(w, apierrors.NewMethodNotSupported(ri.Resource.GroupResource(), ri.Verb))
			return
		}
	default:
		writeError(w, apierrors.NewNotFound(ri.Resource.GroupResource(), ri.Name+"/"+ri.Subresource))
		return
	}
	switch ri.Verb {
	case verbGet:
		s.handleGet(w, r, ri)
	case verbList:
		s.handleList(w, r, ri)
	case verbWatch:
		s.handleWatch(w, r, ri)
	case verbCreate:
		if ri.Name != "" {
			writeError(w, apierrors.NewMethodNotSupported(ri.Resource.GroupResource(), "create on a named path"))
			return
		}
		s.handleCreate(w, r, ri, u)
	case verbUpdate:
		s.handleUpdate(w, r, ri)
	case verbPatch:
		s.handlePatch(w, r, ri)
	case verbDelete:
		if ri.Name == "" {
			writeError(w, apierrors.NewMethodNotSupported(ri.Resource.GroupResource(), "deletecollection"))
			return
		}
		s.handleDelete(w, r, ri)
	default:
		writeError(w, apierrors.NewMethodNotSupported(ri.Resource.GroupResource(), r.Method))
	}
}

// recorder remembers the response code for logs and metrics and passes flushes through for
// watches.
type recorder struct {
	http.ResponseWriter
	code        int
	wroteHeader bool
	errMsg      string // the Status message of an error response, for the access log
}

func (r *recorder) WriteHeader(code int) {
	if !r.wroteHeader {
		r.code, r.wroteHeader = code, true
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	r.wroteHeader = true
	return r.ResponseWriter.Write(b)
}

func (r *recorder) Flush() {
	r.wroteHeader = true
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// observe writes the access log line and the request metrics; it never logs headers or tokens.
func (s *Server) observe(r *http.Request, rec *recorder, ri *requestInfo, u *userInfo, d time.Duration) {
	verb := ri.Verb
	if verb == "" {
		verb = r.Method
	}
	res := ri.resourceLabel()
	code := strconv.Itoa(rec.code)
	s.metrics.requests.WithLabelValues(verb, res, code).Inc()
	if verb != verbWatch {
		s.metrics.latency.WithLabelValues(verb, res).Observe(d.Seconds())
	}
	level := slogLevelFor(rec.code)
	switch r.URL.Path {
	case "/healthz", "/readyz", "/livez", "/metrics":
		level = slog.LevelDebug // probes and scrapes would drown the access log
	}
	attrs := []any{"method", r.Method, "path", r.URL.Path, "verb", verb, "user", u.Name,
		"code", rec.code, "duration", d.Round(time.Microsecond)}
	if rec.code >= 500 && rec.errMsg != "" {
		attrs = append(attrs, "error", rec.errMsg)
	}
	s.log.Log(context.WithoutCancel(r.Context()), level, "request", attrs...)
}
