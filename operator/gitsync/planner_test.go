package gitsync

import (
	"context"
	"sort"
	"testing"

	"github.com/bosun-gitops/bosun/internal/resource"
	"github.com/bosun-gitops/bosun/operator/store/storetest"
	"github.com/google/go-cmp/cmp"
)

// TestPlanRefMatchesSync checks that a plan of a ref is exactly what the sync of that commit
// then does, and that OnSynced reports what was written.
func TestPlanRefMatchesSync(t *testing.T) {
	st := storetest.NewStore(t)
	f := newGitFixture(t)
	f.write("apps/ns.yaml", namespace("apps"))
	f.write("apps/config.yaml", configMap("apps", "one", "1")+"---\n"+configMap("apps", "two", "2"))
	f.write("apps/web.yaml", deployment("apps", "web", 2))
	f.commitPush("first", "main")
	var reports []SyncReport
	s := newSyncer(t, f, st, func(c *Config) {
		c.OnSynced = func(_ context.Context, r SyncReport) { reports = append(reports, r) }
	})
	mustSync(t, s)

	// A branch: scale web, drop config map two, add three, and an invalid branch.
	f.git("checkout", "--quiet", "-b", "feature")
	f.write("apps/web.yaml", deployment("apps", "web", 5))
	f.write("apps/config.yaml", configMap("apps", "one", "1")+"---\n"+configMap("apps", "three", "3"))
	feature := f.commitPush("feature", "feature")
	f.git("checkout", "--quiet", "-b", "broken")
	f.write("apps/bad.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: bad, namespace: apps}\ndata: {\"bad key!\": x}\n")
	f.commitPush("broken", "broken")

	type step struct{ Action, Kind, Name string }
	steps := func(p *Plan) []step {
		var out []step
		for _, c := range p.Changes {
			out = append(out, step{string(c.Action), c.Resource.Kind, c.Name})
		}
		sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
		return out
	}
	ctx := context.Background()
	p, err := s.PlanRef(ctx, "feature", "")
	if err != nil {
		t.Fatal(err)
	}
	want := []step{{"create", "ConfigMap", "three"}, {"delete", "ConfigMap", "two"}, {"update", "Deployment", "web"}}
	if diff := cmp.Diff(want, steps(p)); diff != "" || p.Commit != feature {
		t.Errorf("plan of feature at %s (-want +got):\n%s", p.Commit, diff)
	}
	if p.Changes[0].Desired != nil && p.Changes[0].Desired.GetAnnotations()[resource.AnnotationCommit] != feature {
		t.Error("the planned objects do not carry the planned commit")
	}
	// The same plan by SHA, with the ref fetched.
	if p2, err := s.PlanRef(ctx, "refs/heads/feature", feature); err != nil || len(p2.Changes) != 3 {
		t.Errorf("plan by ref and sha: %v, %d changes", err, len(p2.Changes))
	}
	bad, err := s.PlanRef(ctx, "broken", "")
	if err != nil {
		t.Fatal(err)
	}
	if len(bad.Errors) != 1 || bad.Errors[0].File != "apps/bad.yaml" || bad.Errors[0].Line != 4 || len(bad.Changes) != 0 {
		t.Errorf("plan of an invalid commit: errors %v, %d changes", bad.Errors, len(bad.Changes))
	}
	if _, err := s.PlanRef(ctx, "no-such-branch", ""); err == nil {
		t.Error("planning a missing branch succeeded")
	}

	// Merge feature into main: the sync does exactly the plan, and reports it.
	f.git("checkout", "--quiet", "main")
	f.git("merge", "--quiet", "--ff-only", "feature")
	f.git("push", "--quiet", "origin", "main")
	res := mustSync(t, s)
	if res.Counts.Created != 1 || res.Counts.Updated != 1 || res.Counts.Deleted != 1 {
		t.Errorf("sync counts %+v, want what the plan said", res.Counts)
	}
	last := reports[len(reports)-1]
	var changed, deleted []string
	for _, r := range last.Changed {
		changed = append(changed, r.Resource.Kind+"/"+r.Name)
	}
	for _, r := range last.Deleted {
		deleted = append(deleted, r.Resource.Kind+"/"+r.Name)
	}
	sort.Strings(changed)
	if diff := cmp.Diff([]string{"ConfigMap/three", "Deployment/web"}, changed); diff != "" || last.Commit != feature {
		t.Errorf("OnSynced changed (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"ConfigMap/two"}, deleted); diff != "" {
		t.Errorf("OnSynced deleted (-want +got):\n%s", diff)
	}
	after, err := s.PlanRef(ctx, "main", "")
	if err != nil || len(after.Changes) != 0 {
		t.Errorf("plan of the synced branch: %v, %d changes, want none", err, len(after.Changes))
	}
}
