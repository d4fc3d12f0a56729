package operator

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/bosun-gitops/bosun/internal/resource"
	"github.com/bosun-gitops/bosun/internal/testutil"
	bosunv1 "github.com/bosun-gitops/bosun/repo-layout/v1alpha1"
)

// TestGitSyncHistory checks status.history as the syncer and the health tracker write it: a
// healthy commit, an invalid one and one whose rollout misses its deadline, newest first.
func TestGitSyncHistory(t *testing.T) {
	if testing.Short() {
		t.Skip("starts an operator")
	}
	repo := testutil.NewGitRepo(t)
	repo.Write(map[string]string{"apps/base.yaml": previewBase, "apps/web.yaml": previewWeb(1, "registry.local/web:1")})
	good := repo.CommitAndPush("web at 1")
	c := startCluster(t, repo, t.TempDir())
	c.simulate(nodes(1, "node")...)
	gitSync := func() (*bosunv1.GitSync, error) {
		obj, err := c.op.Store().Get(context.Background(), resource.GitSyncs, "", "default")
		if err != nil {
			return nil, err
		}
		return obj.(*bosunv1.GitSync), nil
	}
	// history waits until the history starts with want (sha, sync, health, reason prefix).
	history := func(what string, want ...[4]string) {
		t.Helper()
		c.eventually(60*time.Second, what, func() error {
			gs, err := gitSync()
			if err != nil {
				return err
			}
			h := gs.Status.History
			if len(h) < len(want) {
				return fmt.Errorf("history %+v", h)
			}
			for i, w := range want {
				r := h[i]
				if r.SHA != w[0] || string(r.Sync) != w[1] || string(r.Health) != w[2] || !strings.HasPrefix(r.Reason, w[3]) || r.Time == nil {
					return fmt.Errorf("history[%d] = %+v, want %v", i, r, w)
				}
			}
			return nil
		})
	}
	history("the first commit synced and healthy", [4]string{good, "Synced", "Healthy", "all 1 changed workloads"})

	repo.Write(map[string]string{"apps/bad.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: bad, namespace: shop}\ndata: {\"bad key!\": x}\n"})
	bad := repo.CommitAndPush("a bad config map")
	history("the invalid commit failed, above the good one",
		[4]string{bad, "Failed", "", "invalid (1 errors), first: apps/bad.yaml:4:"},
		[4]string{good, "Synced", "Healthy", ""})

	repo.Remove("apps/bad.yaml")
	repo.Write(map[string]string{"apps/stuck.yaml": strings.SplitN(stuckDeployment, "---\n", 2)[1]})
	stuck := repo.CommitAndPush("a deployment that cannot roll out")
	history("the stuck commit degraded",
		[4]string{stuck, "Synced", "Degraded", `Deployment stuck: deployment "stuck" exceeded its progress deadline`},
		[4]string{bad, "Failed", "", "invalid"},
		[4]string{good, "Synced", "Healthy", ""})
	gs, err := gitSync()
	if err != nil {
		t.Fatal(err)
	}
	if m := gs.Status.History[0].Message; m != "a deployment that cannot roll out" {
		t.Errorf("history message %q, want the commit's first line", m)
	}
}
