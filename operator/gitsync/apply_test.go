package gitsync

import (
	"context"
	"strings"
	"testing"

	"github.com/bosun-gitops/bosun/internal/resource"
	"github.com/bosun-gitops/bosun/operator/store/storetest"
	repolayout "github.com/bosun-gitops/bosun/repo-layout"
	"github.com/google/go-cmp/cmp"
)

// TestApplyLeavesTheLoadersObjectsAlone applies creates (which share the loader's nested
// fields until the store copies them) and updates: the objects of the loaded set, which a
// Loader hands to its later loads, must not change, and what is stored carries Bosun's
// annotations next to the manifest's own.
func TestApplyLeavesTheLoadersObjectsAlone(t *testing.T) {
	ctx := context.Background()
	st := storetest.NewStore(t)
	f := newGitFixture(t)
	f.write("apps/ns.yaml", namespace("apps"))
	f.write("apps/config.yaml", strings.Replace(configMap("apps", "one", "1"), "metadata:\n",
		"metadata:\n  labels: {app: one}\n  annotations: {team: web}\n", 1))
	f.write("apps/web.yaml", deployment("apps", "web", 2))
	s := &Syncer{st: st, log: testLogger(t)}
	commit := strings.Repeat("a", 40)

	for round, live := range []bool{false, true} {
		set, err := repolayout.LoadDir(f.work)
		if err != nil {
			t.Fatal(err)
		}
		want, err := desiredFrom(set, ".")
		if err != nil {
			t.Fatal(err)
		}
		before := make([]resource.Object, len(want))
		for i, d := range want {
			before[i] = d.obj.DeepCopyObject().(resource.Object)
			if live {
				d.hash += "-changed" // every object is updated
			}
		}
		current, err := listLive(ctx, st, nil)
		if err != nil {
			t.Fatal(err)
		}
		p := computePlan(want, current)
		if err := fullLive(ctx, st, p); err != nil {
			t.Fatal(err)
		}
		n, err := s.apply(ctx, p, commit)
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		if got := n.created + n.updated; got != len(want) {
			t.Errorf("round %d: %+v, want %d writes", round, n, len(want))
		}
		for i, d := range want {
			if diff := cmp.Diff(before[i], d.obj); diff != "" {
				t.Errorf("round %d: apply modified the loaded %s (-before +after):\n%s", round, d.res.Kind, diff)
			}
		}
	}
	cm, err := st.Get(ctx, resource.ConfigMaps, "apps", "one")
	if err != nil {
		t.Fatal(err)
	}
	ann := cm.GetAnnotations()
	if ann["team"] != "web" || ann[resource.AnnotationSource] != "apps/config.yaml" || ann[resource.AnnotationCommit] != commit ||
		!strings.HasSuffix(ann[resource.AnnotationAppliedHash], "-changed") {
		t.Errorf("stored annotations: %v", ann)
	}
}
