package repolayout

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/bosun-gitops/bosun/internal/resource"
)

// gitRepo makes a real repository with the git CLI from files and symlinks, commits everything
// and returns the commit's tree as go-git reads it.
func gitRepo(t testing.TB, files map[string]string, links map[string]string) (dir string, tree *object.Tree) {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git CLI not installed")
	}
	dir = writeTree(t, files)
	for link, target := range links {
		p := filepath.Join(dir, filepath.FromSlash(link))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(target, p); err != nil {
			t.Fatal(err)
		}
	}
	for _, args := range [][]string{
		{"init", "-q", "-b", "main"},
		{"add", "-A"},
		{"-c", "user.name=Test", "-c", "user.email=test@example.com", "commit", "-q", "-m", "test"},
	} {
		cmd := exec.Command("git", args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	repo, err := git.PlainOpen(dir)
	if err != nil {
		t.Fatal(err)
	}
	head, err := repo.Head()
	if err != nil {
		t.Fatal(err)
	}
	commit, err := repo.CommitObject(head.Hash())
	if err != nil {
		t.Fatal(err)
	}
	tree, err = commit.Tree()
	if err != nil {
		t.Fatal(err)
	}
	return dir, tree
}

// setOpts ignores the unexported field that only Stats uses, and compares resources (which
// hold functions) by identity.
var setOpts = cmp.Options{
	cmpopts.IgnoreUnexported(Set{}),
	cmp.Comparer(func(a, b *resource.Resource) bool { return a == b }),
}

func TestLoadTreeMatchesLoadDir(t *testing.T) {
	files := map[string]string{}
	for _, dir := range []string{"examples/valid"} {
		err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			rel, _ := filepath.Rel(dir, p)
			b, err := os.ReadFile(p)
			files[filepath.ToSlash(rel)] = string(b)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	files["shared/extra.txt"] = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: extra, namespace: shop}\n"
	dir, tree := gitRepo(t, files, map[string]string{
		"apps/shop/extra.yaml": "../../shared/extra.txt", // followed: inside the repository
		"apps/linked":          "../shared",              // a directory without manifests
	})
	fromTree, err := LoadTree(tree)
	if err != nil {
		t.Fatalf("LoadTree: %v", err)
	}
	fromDir, err := LoadDir(dir)
	if err != nil {
		t.Fatalf("LoadDir: %v", err)
	}
	if diff := cmp.Diff(fromDir, fromTree, setOpts); diff != "" {
		t.Errorf("LoadTree differs from LoadDir (-dir +tree):\n%s", diff)
	}
	var found bool
	for _, o := range fromTree.Objects {
		if o.File == "apps/shop/extra.yaml" && o.Object.GetName() == "extra" {
			found = true
		}
	}
	if !found {
		t.Errorf("the object behind the symlink apps/shop/extra.yaml was not loaded")
	}
	if got := fromTree.Stats(); got.Objects != 13 {
		t.Errorf("Stats = %+v, want 13 objects", got)
	}

	// A sub-tree, as for --path: bosun.yaml is then absent and the Cluster defaulted.
	sub, err := tree.Tree("apps")
	if err != nil {
		t.Fatal(err)
	}
	_, err = LoadTree(sub)
	want := []string{
		// .bosunignore is at the repository root, outside the loaded sub-tree.
		"shop/cache.draft.yaml:1: apiVersion: Required value: every manifest needs apiVersion, kind and metadata.name",
		`shop/extra.yaml:1: symlink to "../../shared/extra.txt" leaves the repository; link to a path inside it`,
		`linked:1: symlink to "../shared" leaves the repository; link to a path inside it`,
	}
	if diff := cmp.Diff(want, errorLines(t, err), cmpopts.SortSlices(func(a, b string) bool { return a < b })); diff != "" {
		t.Errorf("sub-tree errors (-want +got):\n%s", diff)
	}
}

func TestLoadTreeErrors(t *testing.T) {
	_, tree := gitRepo(t, map[string]string{
		"a.yaml":        cm,
		"b/dup.yaml":    cm,
		"c/bad.yml":     "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers: []\n",
		".hidden/x.yml": "not: [valid",
	}, map[string]string{
		"evil.yaml":     "../../../etc/passwd",
		"abs.yaml":      "/etc/passwd",
		"b/loop":        "..",
		"c/dangle.yaml": "nowhere.yaml",
	})
	_, err := LoadTree(tree)
	want := []string{
		`abs.yaml:1: symlink to "/etc/passwd" leaves the repository; link to a path inside it, relatively`,
		`b/dup.yaml:3: metadata.name: ConfigMap default/settings is declared twice: here and at a.yaml:1; keep one`,
		`b/loop:1: symlink to ".." points to a directory that contains it (a loop)`,
		`c/bad.yml:5: spec.containers: Required value: a pod needs at least one container`,
		`c/dangle.yaml:1: symlink target "nowhere.yaml" does not exist`,
		`evil.yaml:1: symlink to "../../../etc/passwd" leaves the repository; link to a path inside it`,
	}
	if diff := cmp.Diff(want, errorLines(t, err)); diff != "" {
		t.Errorf("errors (-want +got):\n%s", diff)
	}
}
