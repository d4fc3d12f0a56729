package repolayout

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// entryKind is what a directory entry is; anything else (sockets, submodules) is skipped.
type entryKind int

const (
	kindOther entryKind = iota
	kindFile
	kindDir
	kindSymlink
)

// entry is one item of a directory in a source.
type entry struct {
	name string
	kind entryKind
	size int64         // of files in a dirSource; a treeSource reads it with the content
	hash plumbing.Hash // of the content, in a treeSource; zero in a dirSource
}

// source is what the loader needs from a file tree. Paths are slash-separated and relative to
// the root; "" is the root itself. A source never follows symlinks: the loader resolves them.
type source interface {
	readDir(dir string) ([]entry, error)
	// stat describes one path without following a final symlink; ok is false if it is absent.
	stat(p string) (e entry, ok bool, err error)
	readFile(p string) ([]byte, error)
	// readEntry reads the file p that e describes (from readDir or stat): its content (nil when
	// it is over maxFileSize) and its size.
	readEntry(p string, e entry) (data []byte, size int64, err error)
	readLink(p string) (string, error)
}

// dirSource reads a work tree on disk.
type dirSource struct{ root string }

var _ source = dirSource{}

func (s dirSource) full(p string) string { return filepath.Join(s.root, filepath.FromSlash(p)) }

func fileEntry(name string, mode fs.FileMode, size int64) entry {
	e := entry{name: name, size: size}
	switch {
	case mode&fs.ModeSymlink != 0:
		e.kind = kindSymlink
	case mode.IsDir():
		e.kind = kindDir
	case mode.IsRegular():
		e.kind = kindFile
	}
	return e
}

func (s dirSource) readDir(dir string) ([]entry, error) {
	des, err := os.ReadDir(s.full(dir))
	if err != nil {
		return nil, err
	}
	out := make([]entry, 0, len(des))
	for _, de := range des {
		var size int64
		if de.Type().IsRegular() {
			info, err := de.Info()
			if err != nil {
				return nil, err
			}
			size = info.Size()
		}
		out = append(out, fileEntry(de.Name(), de.Type(), size))
	}
	return out, nil
}

func (s dirSource) stat(p string) (entry, bool, error) {
	info, err := os.Lstat(s.full(p))
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrInvalid) || isNotDir(err) {
		return entry{}, false, nil
	}
	if err != nil {
		return entry{}, false, err
	}
	return fileEntry(path.Base(p), info.Mode(), info.Size()), true, nil
}

func isNotDir(err error) bool {
	var pe *fs.PathError
	return errors.As(err, &pe) && strings.Contains(pe.Err.Error(), "not a directory")
}

func (s dirSource) readFile(p string) ([]byte, error) {
	f, err := os.Open(s.full(p))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	// Read one byte past the limit so that a file that grew since readDir is still refused.
	return io.ReadAll(io.LimitReader(f, maxFileSize+1))
}

func (s dirSource) readEntry(p string, e entry) ([]byte, int64, error) {
	if e.size > maxFileSize {
		return nil, e.size, nil
	}
	data, err := s.readFile(p)
	return data, e.size, err
}

func (s dirSource) readLink(p string) (string, error) {
	t, err := os.Readlink(s.full(p))
	return filepath.ToSlash(t), err
}

// treeSource reads a go-git tree (a commit's tree or one of its sub-trees).
type treeSource struct{ tree *object.Tree }

var _ source = treeSource{}

func (s treeSource) dirTree(dir string) (*object.Tree, error) {
	if dir == "" {
		return s.tree, nil
	}
	return s.tree.Tree(dir)
}

// treeEntry describes te. The size of a file is read with its content: reading it here would
// cost a lookup of every blob, also of those that a Loader's cache holds.
func treeEntry(te object.TreeEntry) entry {
	e := entry{name: te.Name, hash: te.Hash}
	switch te.Mode {
	case filemode.Dir:
		e.kind = kindDir
	case filemode.Symlink:
		e.kind = kindSymlink
	case filemode.Regular, filemode.Executable, filemode.Deprecated:
		e.kind = kindFile
	}
	return e
}

func (s treeSource) readDir(dir string) ([]entry, error) {
	t, err := s.dirTree(dir)
	if err != nil {
		return nil, err
	}
	out := make([]entry, 0, len(t.Entries))
	for _, te := range t.Entries {
		out = append(out, treeEntry(te))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out, nil
}

func (s treeSource) stat(p string) (entry, bool, error) {
	if p == "" {
		return entry{kind: kindDir}, true, nil
	}
	dir := path.Dir(p)
	if dir == "." {
		dir = ""
	}
	parent, err := s.dirTree(dir)
	if err != nil {
		// Missing, or under something that is not a directory.
		return entry{}, false, nil
	}
	te, err := parent.FindEntry(path.Base(p))
	if err != nil {
		return entry{}, false, nil
	}
	return treeEntry(*te), true, nil
}

func (s treeSource) blob(p string) ([]byte, error) {
	f, err := s.tree.File(p)
	if err != nil {
		return nil, err
	}
	r, err := f.Reader()
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return io.ReadAll(io.LimitReader(r, maxFileSize+1))
}

func (s treeSource) readFile(p string) ([]byte, error) { return s.blob(p) }

// readEntry reads the blob by its hash: no lookup of the path from the root.
func (s treeSource) readEntry(p string, e entry) ([]byte, int64, error) {
	f, err := s.tree.TreeEntryFile(&object.TreeEntry{Name: e.name, Mode: filemode.Regular, Hash: e.hash})
	if err != nil {
		return nil, 0, err
	}
	if f.Size > maxFileSize {
		return nil, f.Size, nil
	}
	r, err := f.Reader()
	if err != nil {
		return nil, 0, err
	}
	defer r.Close()
	data, err := io.ReadAll(io.LimitReader(r, maxFileSize+1))
	return data, f.Size, err
}
func (s treeSource) readLink(p string) (string, error) {
	b, err := s.blob(p)
	return string(b), err
}
