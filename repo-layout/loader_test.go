package repolayout

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/google/go-cmp/cmp"
)

// gitCommits commits each state (the complete set of files) in turn to one repository and
// returns the commits' trees as go-git reads them.
func gitCommits(t *testing.T, states ...map[string]string) []*object.Tree {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git CLI not installed")
	}
	dir := t.TempDir()
	run := func(args ...string) {
		cmd := exec.Command("git", args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	run("init", "-q", "-b", "main")
	var hashes []string
	for _, files := range states {
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if e.Name() != ".git" {
				if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
					t.Fatal(err)
				}
			}
		}
		for name, content := range files {
			p := filepath.Join(dir, filepath.FromSlash(name))
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		run("add", "-A")
		run("-c", "user.name=Test", "-c", "user.email=test@example.com", "commit", "-q", "--allow-empty", "-m", "state")
		out, err := exec.Command("git", "-C", dir, "rev-parse", "HEAD").Output()
		if err != nil {
			t.Fatal(err)
		}
		hashes = append(hashes, string(out[:40]))
	}
	repo, err := git.PlainOpen(dir)
	if err != nil {
		t.Fatal(err)
	}
	var trees []*object.Tree
	for _, h := range hashes {
		c, err := repo.CommitObject(plumbingHash(h))
		if err != nil {
			t.Fatal(err)
		}
		tree, err := c.Tree()
		if err != nil {
			t.Fatal(err)
		}
		trees = append(trees, tree)
	}
	return trees
}

const (
	nsShop  = "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n"
	cmShop1 = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings, namespace: shop}\ndata: {a: one}\n"
	cmShop2 = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings, namespace: shop}\ndata: {a: two}\n"
	cmOther = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: other, namespace: shop}\ndata: {b: c}\n"
)

// TestLoaderMatchesLoadTree loads a sequence of commits with one Loader and checks every result
// (objects or errors) against a fresh LoadTree of the same commit: the cache must never serve
// stale objects, stale file names or stale errors.
func TestLoaderMatchesLoadTree(t *testing.T) {
	steps := []struct {
		name  string
		files map[string]string
	}{
		{"initial", map[string]string{"ns.yaml": nsShop, "app/cm.yaml": cmShop1, "app/other.yaml": cmOther}},
		{"file edited", map[string]string{"ns.yaml": nsShop, "app/cm.yaml": cmShop2, "app/other.yaml": cmOther}},
		{"file renamed", map[string]string{"ns.yaml": nsShop, "app/renamed.yaml": cmShop2, "app/other.yaml": cmOther}},
		{"same content in two files", map[string]string{"ns.yaml": nsShop, "app/renamed.yaml": cmShop2, "copy.yaml": cmShop2, "app/other.yaml": cmOther}},
		{"copy removed", map[string]string{"ns.yaml": nsShop, "copy.yaml": cmShop2, "app/other.yaml": cmOther}},
		{"namespace file removed", map[string]string{"copy.yaml": cmShop2, "app/other.yaml": cmOther}},
		{"namespace back, content moved between files", map[string]string{"ns.yaml": nsShop, "copy.yaml": cmOther, "app/other.yaml": cmShop2}},
		{"invalid file", map[string]string{"ns.yaml": nsShop, "copy.yaml": "kind: [", "app/other.yaml": cmShop2}},
		{"fixed", map[string]string{"ns.yaml": nsShop, "copy.yaml": cmOther, "app/other.yaml": cmShop2}},
		{"cluster file renamed away", map[string]string{"ns.yaml": nsShop, "bosun.yml": "kind: Cluster", "app/other.yaml": cmShop2}},
	}
	states := make([]map[string]string, len(steps))
	for i, s := range steps {
		states[i] = s.files
	}
	trees := gitCommits(t, states...)
	l := NewLoader()
	for i, step := range steps {
		t.Run(step.name, func(t *testing.T) {
			want, wantErr := LoadTree(trees[i])
			got, gotErr := l.LoadTree(trees[i])
			if diff := cmp.Diff(errorLines(t, wantErr), errorLines(t, gotErr)); diff != "" {
				t.Fatalf("errors differ from LoadTree (-LoadTree +Loader):\n%s", diff)
			}
			if diff := cmp.Diff(want, got, setOpts); diff != "" {
				t.Errorf("set differs from LoadTree (-LoadTree +Loader):\n%s", diff)
			}
			if got, want := l.CachedFiles(), len(step.files); got != want {
				t.Errorf("cache holds %d files, want the %d of this commit", got, want)
			}
		})
	}
}

// TestLoaderReusesUnchangedFiles checks that a file whose path and content did not change is not
// parsed again (its objects are the very same), and that a changed one is.
func TestLoaderReusesUnchangedFiles(t *testing.T) {
	trees := gitCommits(t,
		map[string]string{"ns.yaml": nsShop, "a.yaml": cmShop1, "b.yaml": cmOther},
		map[string]string{"ns.yaml": nsShop, "a.yaml": cmShop2, "b.yaml": cmOther},
	)
	l := NewLoader()
	first, err := l.LoadTree(trees[0])
	if err != nil {
		t.Fatal(err)
	}
	second, err := l.LoadTree(trees[1])
	if err != nil {
		t.Fatal(err)
	}
	reused := map[string]bool{}
	for i := range first.Objects {
		reused[first.Objects[i].File] = first.Objects[i].Object == second.Objects[i].Object
	}
	want := map[string]bool{"ns.yaml": true, "a.yaml": false, "b.yaml": true}
	if diff := cmp.Diff(want, reused); diff != "" {
		t.Errorf("objects reused from the first load (-want +got):\n%s", diff)
	}
	if got := l.Parsed(); got != 1 {
		t.Errorf("Parsed() = %d after a commit that changed one file, want 1", got)
	}
}

func plumbingHash(s string) plumbing.Hash { return plumbing.NewHash(s) }
