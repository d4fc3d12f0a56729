// Package logs is the agent's HTTPS endpoint for container logs, the kubelet's
// /containerLogs/{namespace}/{pod}/{container} equivalent. It serves the per-restart log files
// the pod workers write (pods.LogPath) and answers only the operator: mutual TLS against the
// cluster CA, and the client certificate's CN must be the operator's identity.
//
//	bosun logs ──> operator /api/v1/namespaces/{ns}/pods/{pod}/log ──mTLS──> agent /containerLogs/...
package logs

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// OperatorUser is the only client identity (certificate CN) allowed to read logs.
const OperatorUser = "system:bosun-operator"

// PodLookup finds a pod bound to this node, with the status the agent last wrote.
type PodLookup func(namespace, name string) (*corev1.Pod, bool)

// Config configures the handler.
type Config struct {
	// LogDir and LogPath are the log file layout (pods.LogDir, pods.LogPath bound to the data dir).
	LogDir  func(podUID, container string) string
	LogPath func(podUID, container string, restartCount int32) string
	// Pods finds the pod: its UID when the request carries no podUID, and its container
	// statuses, which say which run --previous means and when a followed container has ended.
	Pods PodLookup
	// PollInterval is how often a followed file is checked for new lines; 250 ms when zero.
	PollInterval time.Duration
	Logger       *slog.Logger
}

// Handler serves GET /containerLogs/{namespace}/{pod}/{container}?follow=&previous=&tailLines=.
type Handler struct {
	cfg Config
	log *slog.Logger
	mux *http.ServeMux
}

// NewHandler returns the logs handler; wrap it with RequireOperator (TLSConfig does the rest).
func NewHandler(cfg Config) *Handler {
	if cfg.PollInterval == 0 {
		cfg.PollInterval = 250 * time.Millisecond
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	h := &Handler{cfg: cfg, log: cfg.Logger.With("component", "logs"), mux: http.NewServeMux()}
	h.mux.HandleFunc("GET /containerLogs/{namespace}/{pod}/{container}", h.serveLogs)
	return h
}

// ServeHTTP refuses callers other than the operator, then serves the logs.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 || r.TLS.PeerCertificates[0].Subject.CommonName != OperatorUser {
		http.Error(w, "forbidden: only the operator ("+OperatorUser+") may read logs", http.StatusForbidden)
		return
	}
	h.mux.ServeHTTP(w, r)
}

// TLSConfig is the server side of the mutual TLS: the agent's serving certificate (the current one,
// from serving: it is renewed while the agent runs), and client certificates required and
// verified against the cluster CA.
func TLSConfig(serving func(*tls.ClientHelloInfo) (*tls.Certificate, error), clusterCA *x509.CertPool) *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: serving,
		ClientAuth:     tls.RequireAndVerifyClientCert,
		ClientCAs:      clusterCA,
	}
}

// Options are the query parameters.
type Options struct {
	Follow, Previous bool
	// TailLines < 0 = everything.
	TailLines int64
}

func parseOptions(r *http.Request) (Options, error) {
	q := r.URL.Query()
	o := Options{TailLines: -1}
	for _, b := range []struct {
		name string
		dst  *bool
	}{{"follow", &o.Follow}, {"previous", &o.Previous}} {
		if v := q.Get(b.name); v != "" {
			x, err := strconv.ParseBool(v)
			if err != nil {
				return o, fmt.Errorf("%s=%q: not a boolean", b.name, v)
			}
			*b.dst = x
		}
	}
	if v := q.Get("tailLines"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return o, fmt.Errorf("tailLines=%q: must be a number >= 0", v)
		}
		o.TailLines = n
	}
	return o, nil
}

func (h *Handler) serveLogs(w http.ResponseWriter, r *http.Request) {
	ns, pod, container := r.PathValue("namespace"), r.PathValue("pod"), r.PathValue("container")
	opts, err := parseOptions(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	uid := r.URL.Query().Get("podUID")
	var status *corev1.ContainerStatus
	if h.cfg.Pods != nil {
		if p, ok := h.cfg.Pods(ns, pod); ok && (uid == "" || uid == string(p.UID)) {
			uid, status = string(p.UID), containerStatus(p, container)
		}
	}
	if uid == "" || strings.ContainsAny(uid, `/\`) || uid == "." || uid == ".." || strings.ContainsAny(container, `/\`) {
		http.Error(w, fmt.Sprintf("pod %s/%s is not on this node", ns, pod), http.StatusNotFound)
		return
	}
	runs := h.runs(uid, container)
	if len(runs) == 0 {
		http.Error(w, fmt.Sprintf("container %q in pod %q has no logs yet (waiting to start?)", container, pod), http.StatusBadRequest)
		return
	}
	run := runs[len(runs)-1]
	if opts.Previous {
		// The run the status shows as the last termination, as the kubelet serves: while a
		// crashed container waits to restart, that is its latest run; while it runs again, the
		// one before.
		prev, ok := previousRun(status, runs)
		if !ok {
			http.Error(w, fmt.Sprintf("previous terminated container %q in pod %q not found", container, pod), http.StatusBadRequest)
			return
		}
		run = prev
	}
	f, err := os.Open(h.cfg.LogPath(uid, container, run))
	if err != nil {
		http.Error(w, fmt.Sprintf("opening log of container %q in pod %q: %v", container, pod, err), http.StatusInternalServerError)
		return
	}
	defer f.Close()
	if opts.TailLines >= 0 {
		off, err := tailOffset(f, opts.TailLines)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		if _, err := f.Seek(off, io.SeekStart); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	if !opts.Follow || opts.Previous {
		io.Copy(w, f)
		return
	}
	h.follow(r.Context(), w, f, ns, pod, uid, container, run)
}

// containerStatus returns the status of the pod's (init or app) container name, or nil.
func containerStatus(p *corev1.Pod, name string) *corev1.ContainerStatus {
	for _, list := range [][]corev1.ContainerStatus{p.Status.InitContainerStatuses, p.Status.ContainerStatuses} {
		for i := range list {
			if list[i].Name == name {
				return &list[i]
			}
		}
	}
	return nil
}

// runOf returns the run (restart count) of a container ID from the pod's status
// ("containerd://<pod-uid>-<container>-<run>", as pods.ContainerID builds it).
func runOf(containerID string) (int32, bool) {
	i := strings.LastIndexByte(containerID, '-')
	if i < 0 {
		return 0, false
	}
	n, err := strconv.ParseInt(containerID[i+1:], 10, 32)
	return int32(n), err == nil && n >= 0
}

// previousRun is the run of the container's last termination according to its status; without
// a status (the pod is gone from the agent's cache), the run before the newest log file.
func previousRun(st *corev1.ContainerStatus, runs []int32) (int32, bool) {
	if st == nil {
		if len(runs) < 2 {
			return 0, false
		}
		return runs[len(runs)-2], true
	}
	if t := st.LastTerminationState.Terminated; t != nil {
		if run, ok := runOf(t.ContainerID); ok && slices.Contains(runs, run) {
			return run, true
		}
	}
	return 0, false
}

// ended reports whether the pod's status shows run as terminated: its current state, or its
// last termination. A status that does not say yet (written a moment after the exit) is not an
// end: following goes on until it does.
func ended(p *corev1.Pod, container string, run int32) bool {
	st := containerStatus(p, container)
	if st == nil {
		return false
	}
	for _, t := range []*corev1.ContainerStateTerminated{st.State.Terminated, st.LastTerminationState.Terminated} {
		if t == nil {
			continue
		}
		if r, ok := runOf(t.ContainerID); ok && r >= run {
			return true
		}
	}
	return false
}

// follow copies new lines until the container's run ends (its status says it terminated, or a
// newer log file appears) and its file is drained, the pod's logs disappear, or the client
// leaves, as kubectl logs -f ends when the container exits.
func (h *Handler) follow(ctx context.Context, w http.ResponseWriter, f *os.File, ns, pod, uid, container string, run int32) {
	flusher, _ := w.(http.Flusher)
	rd := bufio.NewReaderSize(f, 32<<10)
	t := time.NewTicker(h.cfg.PollInterval)
	defer t.Stop()
	for {
		n, err := io.Copy(w, rd)
		if err != nil {
			return
		}
		if n > 0 && flusher != nil {
			flusher.Flush()
		}
		if n == 0 {
			if pos, ok := truncated(f, rd); ok {
				// Rotated: copied to <file>.1, then emptied in place. What was not read yet is
				// in the copy; then the file goes on from its new start.
				copyRotatedTail(w, h.cfg.LogPath(uid, container, run)+".1", pos)
				if _, err := f.Seek(0, io.SeekStart); err != nil {
					return
				}
				rd.Reset(f)
				continue
			}
			runs := h.runs(uid, container)
			if len(runs) == 0 {
				return // the pod was removed
			}
			if runs[len(runs)-1] > run {
				io.Copy(w, rd) // the last lines written before the restart
				return
			}
			if h.cfg.Pods != nil {
				if p, ok := h.cfg.Pods(ns, pod); ok && string(p.UID) == uid && ended(p, container, run) {
					io.Copy(w, rd) // the last lines written before the exit
					return
				}
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// truncated reports whether f has become shorter than what rd has read of it, and that length.
func truncated(f *os.File, rd *bufio.Reader) (int64, bool) {
	pos, err := f.Seek(0, io.SeekCurrent)
	if err != nil {
		return 0, false
	}
	read := pos - int64(rd.Buffered())
	st, err := f.Stat()
	return read, err == nil && st.Size() < read
}

// copyRotatedTail writes what follows offset from in the rotated copy of a log file.
func copyRotatedTail(w io.Writer, rotated string, offset int64) {
	f, err := os.Open(rotated)
	if err != nil {
		return
	}
	defer f.Close()
	if st, err := f.Stat(); err != nil || st.Size() < offset {
		return // not the copy of what was followed
	}
	if _, err := f.Seek(offset, io.SeekStart); err == nil {
		io.Copy(w, f)
	}
}

// runs lists the restart counts that have a log file, ascending.
func (h *Handler) runs(uid, container string) []int32 {
	entries, err := os.ReadDir(h.cfg.LogDir(uid, container))
	if err != nil {
		return nil
	}
	var out []int32
	for _, e := range entries {
		n, err := strconv.ParseInt(strings.TrimSuffix(e.Name(), ".log"), 10, 32)
		if err != nil || e.IsDir() || filepath.Base(h.cfg.LogPath(uid, container, int32(n))) != e.Name() {
			continue
		}
		out = append(out, int32(n))
	}
	slices.Sort(out)
	return out
}

// tailOffset is the offset of the start of the last n lines of f (a final line without a
// newline counts).
func tailOffset(f *os.File, n int64) (int64, error) {
	st, err := f.Stat()
	if err != nil {
		return 0, err
	}
	size := st.Size()
	if n == 0 {
		return size, nil
	}
	const chunk = 8 << 10
	buf := make([]byte, chunk)
	pos := size
	var newlines int64
	first := true
	for pos > 0 {
		readLen := int64(chunk)
		if pos < readLen {
			readLen = pos
		}
		pos -= readLen
		if _, err := f.ReadAt(buf[:readLen], pos); err != nil && !errors.Is(err, io.EOF) {
			return 0, fmt.Errorf("reading log: %w", err)
		}
		for i := readLen - 1; i >= 0; i-- {
			if buf[i] != '\n' {
				first = false
				continue
			}
			if first && pos+i == size-1 {
				first = false
				continue // the newline ending the last line
			}
			newlines++
			if newlines == n {
				return pos + i + 1, nil
			}
		}
	}
	return 0, nil
}
