package repolayout

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzLoadFile feeds arbitrary bytes through the whole pipeline (split, decode, default,
// validate) as one file of a repository: it must never panic, and must either load or explain.
func FuzzLoadFile(f *testing.F) {
	for _, dir := range []string{"examples/starter", "examples/valid", "examples/invalid"} {
		_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
			if err == nil && !d.IsDir() && isManifest(p) {
				if b, err := os.ReadFile(p); err == nil {
					f.Add(strings.HasSuffix(p, ".json"), b)
				}
			}
			return nil
		})
	}
	f.Add(false, []byte("---\n---\n# nothing\n"))
	f.Add(false, []byte("a: &a [*a]\n"))
	f.Add(false, []byte("apiVersion: v1\nkind: List\nitems: [{apiVersion: v1, kind: List}]\n"))
	f.Fuzz(func(t *testing.T, isJSON bool, data []byte) {
		name := "apps/x.yaml"
		if isJSON {
			name = "apps/x.json"
		}
		l := &loader{src: memSource{name: data}}
		if err := l.loadFile(name, name, entry{name: name, kind: kindFile, size: int64(len(data))}); err != nil {
			t.Fatalf("loadFile: %v", err)
		}
		l.parseFiles()
		set := l.finish()
		if len(l.errs) == 0 && set == nil {
			t.Fatal("no errors and no set")
		}
		for _, e := range l.errs {
			if e.File != name || e.Reason == "" || e.Line < 0 {
				t.Fatalf("malformed error %+v", e)
			}
		}
		for _, o := range set.Objects {
			if o.Object == nil || len(o.Raw) == 0 || o.Line < 1 {
				t.Fatalf("malformed object %+v", o)
			}
		}
	})
}

// memSource is a source holding files in memory (no directories or symlinks).
type memSource map[string][]byte

func (m memSource) readDir(string) ([]entry, error) { return nil, nil }
func (m memSource) stat(p string) (entry, bool, error) {
	b, ok := m[p]
	return entry{name: filepath.Base(p), kind: kindFile, size: int64(len(b))}, ok, nil
}
func (m memSource) readFile(p string) ([]byte, error) {
	if b, ok := m[p]; ok {
		return b, nil
	}
	return nil, errors.New("not found")
}
func (m memSource) readEntry(p string, e entry) ([]byte, int64, error) {
	b, err := m.readFile(p)
	return b, int64(len(b)), err
}
func (m memSource) readLink(string) (string, error) { return "", errors.New("not a symlink") }
