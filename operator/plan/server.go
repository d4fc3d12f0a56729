package plan

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"

	"github.com/bosun-gitops/bosun/operator/gitsync"
	repolayout "github.com/bosun-gitops/bosun/repo-layout"
)

// RefPlanner plans a commit of the synced repository; *gitsync.Syncer implements it.
type RefPlanner interface {
	PlanRef(ctx context.Context, ref, sha string) (*gitsync.Plan, error)
}

var _ RefPlanner = (*gitsync.Syncer)(nil)

// Request is the JSON body of POST /apis/bosun.dev/v1alpha1/plans: a ref of the synced
// repository (branch, refs/pull/N/head, or SHA) and optionally the commit expected there.
type Request struct {
	Ref string `json:"ref"`
	SHA string `json:"sha,omitempty"`
}

// ContentTypeTarball is the content type of a directory upload (a gzipped tar).
const ContentTypeTarball = "application/gzip"

// MaxTarball bounds an uploaded directory (compressed and expanded).
const MaxTarball = 64 << 20

// Handler serves plans over HTTP: a JSON Request plans a ref (on the leader, which owns the
// clone), a gzipped tar of a directory plans that directory against the live objects.
type Handler struct {
	st  gitsync.Reader
	log *slog.Logger

	mu      sync.Mutex
	planner RefPlanner
}

// NewHandler returns a Handler reading live objects from st.
func NewHandler(st gitsync.Reader, log *slog.Logger) *Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Handler{st: st, log: log.With("component", "plan")}
}

// SetPlanner sets (or with nil, clears) the planner of refs: only the leader has one.
func (h *Handler) SetPlanner(p RefPlanner) {
	h.mu.Lock()
	h.planner = p
	h.mu.Unlock()
}

func (h *Handler) refPlanner() RefPlanner {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.planner
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		httpError(w, http.StatusMethodNotAllowed, "POST a JSON {\"ref\": ...} or a gzipped tar of a directory")
		return
	}
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	var (
		rep *Report
		err error
	)
	switch ct {
	case ContentTypeTarball, "application/x-gzip", "application/x-tar+gzip":
		rep, err = h.planTarball(r.Context(), http.MaxBytesReader(w, r.Body, MaxTarball))
	default:
		var req Request
		if derr := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req); derr != nil {
			httpError(w, http.StatusBadRequest, "decoding the plan request: "+derr.Error())
			return
		}
		p := h.refPlanner()
		if p == nil {
			httpError(w, http.StatusServiceUnavailable, "this operator is not the leader; plans of a ref are computed by the leader, retry shortly")
			return
		}
		rep, err = PlanRef(r.Context(), p, req.Ref, req.SHA)
	}
	if err != nil {
		h.log.Warn("plan failed", "err", err)
		code := http.StatusInternalServerError
		if errors.Is(err, gitsync.ErrBranchNotFound) || errors.Is(err, errBadTarball) {
			code = http.StatusBadRequest
		}
		httpError(w, code, err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(rep)
}

// PlanRef plans ref with p and builds the report.
func PlanRef(ctx context.Context, p RefPlanner, ref, sha string) (*Report, error) {
	gp, err := p.PlanRef(ctx, ref, sha)
	if err != nil {
		return nil, err
	}
	return Build(gp)
}

// PlanDir loads dir and plans it against the live objects in st.
func PlanDir(ctx context.Context, st gitsync.Reader, dir string) (*Report, error) {
	set, err := repolayout.LoadDir(dir)
	if err != nil {
		if list, ok := gitsync.LoadError(err); ok {
			return Build(&gitsync.Plan{Errors: list})
		}
		return nil, fmt.Errorf("loading %s: %w", dir, err)
	}
	gp, err := gitsync.PlanSet(ctx, st, set, ".", "")
	if err != nil {
		return nil, err
	}
	return Build(gp)
}

var errBadTarball = errors.New("bad directory upload")

func (h *Handler) planTarball(ctx context.Context, body io.Reader) (*Report, error) {
	dir, err := os.MkdirTemp("", "bosun-plan-")
	if err != nil {
		return nil, fmt.Errorf("creating a temporary directory: %w", err)
	}
	defer os.RemoveAll(dir)
	if err := Untar(body, dir); err != nil {
		return nil, fmt.Errorf("%w: %v", errBadTarball, err)
	}
	return PlanDir(ctx, h.st, dir)
}

// Untar expands a gzipped tar into dir; entries that leave dir, links and devices are refused,
// and the expanded size is bounded by MaxTarball.
func Untar(r io.Reader, dir string) error {
	gz, err := gzip.NewReader(r)
	if err != nil {
		return fmt.Errorf("reading gzip: %w", err)
	}
	tr := tar.NewReader(gz)
	var total int64
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading tar: %w", err)
		}
		name := path.Clean("/" + hdr.Name)[1:]
		if name == "" || strings.HasPrefix(name, "..") {
			continue
		}
		dst := filepath.Join(dir, filepath.FromSlash(name))
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(dst, 0o755); err != nil {
				return err
			}
		case tar.TypeReg:
			total += hdr.Size
			if total > MaxTarball {
				return fmt.Errorf("directory larger than %d bytes", MaxTarball)
			}
			if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
				return err
			}
			f, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
			if err != nil {
				return err
			}
			_, err = io.Copy(f, io.LimitReader(tr, hdr.Size))
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return fmt.Errorf("writing %s: %w", name, err)
			}
		}
	}
}

// Tar writes dir as a gzipped tar (regular files and directories; hidden directories such as
// .git are left out, as the loader skips them anyway).
func Tar(w io.Writer, dir string) error {
	gz := gzip.NewWriter(w)
	tw := tar.NewWriter(gz)
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil || rel == "." {
			return err
		}
		if d.IsDir() && strings.HasPrefix(d.Name(), ".") {
			return filepath.SkipDir
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if !d.IsDir() && !info.Mode().IsRegular() {
			return nil
		}
		hdr, err := tar.FileInfoHeader(info, "")
		if err != nil {
			return err
		}
		hdr.Name = filepath.ToSlash(rel)
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = io.Copy(tw, f)
		return err
	})
	if err != nil {
		return fmt.Errorf("packing %s: %w", dir, err)
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return gz.Close()
}

// httpError answers with a Kubernetes-style Status so that API clients print the message.
func httpError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(map[string]any{
		"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code, "message": msg,
	})
}
