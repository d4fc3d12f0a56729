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

// PathParam is the query parameter of a directory upload that says where the directory is in
// its repository ("." for the root; absent when unknown). The operator syncs one path of the
// repository (--path): the upload is planned from that path, so that sources and applied
// hashes are the ones a sync of the same content writes.
const PathParam = "path"

// MaxTarball bounds an uploaded directory (compressed and expanded).
const MaxTarball = 64 << 20

// Handler serves plans over HTTP: a JSON Request plans a ref (on the leader, which owns the
// clone), a gzipped tar of a directory plans that directory against the live objects.
type Handler struct {
	st       gitsync.Reader
	syncPath string // the operator's --path
	log      *slog.Logger

	mu      sync.Mutex
	planner RefPlanner
}

// NewHandler returns a Handler reading live objects from st; syncPath is the path of the
// repository that the operator syncs (--path, "." for the root).
func NewHandler(st gitsync.Reader, syncPath string, log *slog.Logger) *Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Handler{st: st, syncPath: cleanPath(syncPath), log: log.With("component", "plan")}
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
		rep, err = h.planTarball(r.Context(), http.MaxBytesReader(w, r.Body, MaxTarball), r.URL.Query().Get(PathParam))
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

// PlanDir loads dir and plans it against the live objects in st. dir holds what the operator
// syncs, syncPath is where that is in the repository ("." for the root): file names in the
// report and the applied hashes are relative to the repository root, as a sync's are.
func PlanDir(ctx context.Context, st gitsync.Reader, dir, syncPath string) (*Report, error) {
	syncPath = cleanPath(syncPath)
	set, err := repolayout.LoadDir(dir)
	if err != nil {
		if list, ok := gitsync.LoadError(err); ok {
			for i := range list {
				list[i].File = repoFile(syncPath, list[i].File)
			}
			return Build(&gitsync.Plan{Errors: list})
		}
		return nil, fmt.Errorf("loading %s: %w", dir, err)
	}
	gp, err := gitsync.PlanSet(ctx, st, set, syncPath, "")
	if err != nil {
		return nil, err
	}
	return Build(gp)
}

var errBadTarball = errors.New("bad directory upload")

// planTarball plans an uploaded directory; uploaded is where it is in its repository ("" when
// the client does not know).
func (h *Handler) planTarball(ctx context.Context, body io.Reader, uploaded string) (*Report, error) {
	dir, err := os.MkdirTemp("", "bosun-plan-")
	if err != nil {
		return nil, fmt.Errorf("creating a temporary directory: %w", err)
	}
	defer os.RemoveAll(dir)
	if err := Untar(body, dir); err != nil {
		return nil, fmt.Errorf("%w: %v", errBadTarball, err)
	}
	synced, err := syncedDir(dir, uploaded, h.syncPath)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errBadTarball, err)
	}
	return PlanDir(ctx, h.st, synced, h.syncPath)
}

// syncedDir returns the directory of an upload (expanded in root, found at uploaded in its
// repository, "" if unknown) that holds the synced path of the repository.
func syncedDir(root, uploaded, syncPath string) (string, error) {
	if uploaded == "" {
		// Unknown: the repository root when it holds the synced path, else the synced path.
		if syncPath != "." && isDir(filepath.Join(root, filepath.FromSlash(syncPath))) {
			return filepath.Join(root, filepath.FromSlash(syncPath)), nil
		}
		return root, nil
	}
	if c := path.Clean(uploaded); c == ".." || strings.HasPrefix(c, "../") || path.IsAbs(c) {
		return "", fmt.Errorf("%s=%q: want a path inside the repository", PathParam, uploaded)
	}
	uploaded = cleanPath(uploaded)
	if uploaded == syncPath {
		return root, nil
	}
	rel, ok := strings.CutPrefix(syncPath, uploaded+"/")
	if uploaded == "." {
		rel, ok = syncPath, true
	}
	if !ok {
		return "", fmt.Errorf("the directory is %s in its repository, but the operator syncs %s (--path): plan that directory or one that contains it", uploaded, syncPath)
	}
	d := filepath.Join(root, filepath.FromSlash(rel))
	if !isDir(d) {
		return "", fmt.Errorf("the directory (%s in its repository) has no %s, which the operator syncs (--path)", uploaded, rel)
	}
	return d, nil
}

func isDir(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.IsDir()
}

// cleanPath normalises a repository path as gitsync does: "" and "./" are ".".
func cleanPath(p string) string {
	p = strings.TrimPrefix(path.Clean("/"+strings.ReplaceAll(p, "\\", "/")), "/")
	if p == "" {
		return "."
	}
	return p
}

// repoFile makes a path relative to the synced path relative to the repository root.
func repoFile(syncPath, file string) string {
	if syncPath == "." || file == "" {
		return file
	}
	return path.Join(syncPath, file)
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
