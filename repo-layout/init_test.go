package repolayout

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestInit(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "repo")
	if err := Init(dir); err != nil {
		t.Fatalf("Init: %v", err)
	}
	set, err := LoadDir(dir)
	if err != nil {
		t.Fatalf("the starter repository does not validate:\n%v", err)
	}
	var got []string
	for _, o := range set.Objects {
		got = append(got, o.Resource.Kind+" "+o.Object.GetNamespace()+"/"+o.Object.GetName())
	}
	// The example machine is ignored (.bosunignore) so that nothing dials its made-up address.
	want := []string{"Deployment web/web", "Namespace /web", "Service web/web"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("starter objects (-want +got):\n%s", diff)
	}

	// Yet the example is a valid Machine once its .bosunignore line is removed.
	if err := os.Remove(filepath.Join(dir, ".bosunignore")); err != nil {
		t.Fatal(err)
	}
	set, err = LoadDir(dir)
	if err != nil {
		t.Fatalf("the starter repository with its example machine does not validate:\n%v", err)
	}
	if n := len(set.Objects); n != 4 || set.Objects[len(set.Objects)-1].Resource.Kind != "Machine" {
		t.Errorf("with the example machine: %d objects, want the 3 above and the Machine", n)
	}
	if set.Cluster.Name != "starter" {
		t.Errorf("Cluster name %q, want starter", set.Cluster.Name)
	}
	if _, err := os.Stat(filepath.Join(dir, "README.md")); err != nil {
		t.Errorf("README.md: %v", err)
	}
	if err := Init(dir); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Errorf("Init into a non-empty directory: err = %v, want a 'not empty' error", err)
	}
	empty := t.TempDir()
	if err := Init(empty); err != nil {
		t.Errorf("Init into an empty directory: %v", err)
	}
}
