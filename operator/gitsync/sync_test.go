package gitsync

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bosun-gitops/bosun/internal/resource"
	"github.com/bosun-gitops/bosun/operator/store"
	"github.com/bosun-gitops/bosun/operator/store/storetest"
	repolayout "github.com/bosun-gitops/bosun/repo-layout"
	bosunv1 "github.com/bosun-gitops/bosun/repo-layout/v1alpha1"
	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func newSyncer(t *testing.T, f *gitFixture, st *store.Store, mod func(*Config)) *Syncer {
	t.Helper()
	cfg := Config{Repo: f.bare, WorkDir: t.TempDir(), Interval: time.Hour}
	if mod != nil {
		mod(&cfg)
	}
	s, err := New(cfg, st, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func mustSync(t *testing.T, s *Syncer) *Result {
	t.Helper()
	res, err := s.SyncOnce(context.Background())
	if err != nil {
		t.Fatalf("SyncOnce: %v", err)
	}
	return res
}

func resourceVersions(m map[string]resource.Object) map[string]string {
	out := map[string]string{}
	for k, o := range m {
		out[k] = o.GetResourceVersion()
	}
	return out
}

func TestSyncCreateUpdatePruneInvalid(t *testing.T) {
	st := storetest.NewStore(t)
	f := newGitFixture(t)
	f.write("apps/ns.yaml", namespace("apps"))
	f.write("apps/config.yaml", configMap("apps", "one", "1")+"---\n"+configMap("apps", "two", "2"))
	f.write("apps/web.yaml", deployment("apps", "web", 2))
	first := f.commitPush("first", "main")
	s := newSyncer(t, f, st, nil)

	// push → objects appear, annotated with their source.
	res := mustSync(t, s)
	if diff := cmp.Diff(bosunv1.SyncCounts{Created: 5}, res.Counts); diff != "" {
		t.Errorf("counts of the first sync (-want +got):\n%s", diff) // ns, 2 cm, deploy, Cluster
	}
	cms := names(t, st, resource.ConfigMaps)
	if diff := cmp.Diff([]string{"apps/one", "apps/two"}, keys(cms)); diff != "" {
		t.Fatalf("config maps (-want +got):\n%s", diff)
	}
	gotAnn := cms["apps/two"].GetAnnotations()
	wantAnn := map[string]string{
		resource.AnnotationSource: "apps/config.yaml", resource.AnnotationSourceLine: "9",
		resource.AnnotationCommit: first, resource.AnnotationAppliedHash: gotAnn[resource.AnnotationAppliedHash],
	}
	if diff := cmp.Diff(wantAnn, gotAnn); diff != "" || gotAnn[resource.AnnotationAppliedHash] == "" {
		t.Errorf("annotations (-want +got):\n%s", diff)
	}
	status := gitSyncStatus(t, st, "default")
	if status.State != bosunv1.SyncStateSynced || status.Applied.SHA != first || status.Commit.Author != "Test Author <author@example.com>" || status.Commit.Message != "first" {
		t.Errorf("status after first sync = %+v", status)
	}

	// A sync without changes writes nothing.
	before := resourceVersions(cms)
	res = mustSync(t, s)
	if diff := cmp.Diff(bosunv1.SyncCounts{Unchanged: 5}, res.Counts); diff != "" {
		t.Errorf("counts of an idle sync (-want +got):\n%s", diff)
	}

	// edit → only that object's resourceVersion changes.
	f.write("apps/config.yaml", configMap("apps", "one", "1")+"---\n"+configMap("apps", "two", "changed"))
	f.write("apps/unrelated.txt", "not yaml is ignored? no: only an edit elsewhere\n")
	f.remove("apps/unrelated.txt")
	second := f.commitPush("edit two", "main")
	res = mustSync(t, s)
	if diff := cmp.Diff(bosunv1.SyncCounts{Updated: 1, Unchanged: 4}, res.Counts); diff != "" {
		t.Errorf("counts after an edit (-want +got):\n%s", diff)
	}
	after := names(t, st, resource.ConfigMaps)
	if after["apps/one"].GetResourceVersion() != before["apps/one"] {
		t.Error("the unchanged ConfigMap was rewritten")
	}
	if after["apps/two"].GetResourceVersion() == before["apps/two"] {
		t.Error("the edited ConfigMap was not rewritten")
	}
	if got := after["apps/two"].(*corev1.ConfigMap).Data["key"]; got != "changed" {
		t.Errorf("edited data = %q", got)
	}
	if got := after["apps/two"].GetAnnotations()[resource.AnnotationCommit]; got != second {
		t.Errorf("commit annotation = %s, want %s", got, second)
	}
	if got := after["apps/one"].GetAnnotations()[resource.AnnotationCommit]; got != first {
		t.Errorf("commit annotation of the unchanged object = %s, want the commit it last changed in %s", got, first)
	}

	// delete file → pruned.
	f.remove("apps/web.yaml")
	third := f.commitPush("remove web", "main")
	res = mustSync(t, s)
	if diff := cmp.Diff(bosunv1.SyncCounts{Deleted: 1, Unchanged: 4}, res.Counts); diff != "" {
		t.Errorf("counts after a delete (-want +got):\n%s", diff)
	}
	if got := keys(names(t, st, resource.Deployments)); len(got) != 0 {
		t.Errorf("deployments after delete = %v", got)
	}

	// invalid commit → nothing changes, every error listed with file:line.
	live := resourceVersions(names(t, st, resource.ConfigMaps))
	f.write("apps/config.yaml", configMap("apps", "one", "new value that must not appear"))
	f.write("apps/bad.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: bad\n  namespace: apps\nnotAField: 1\n")
	f.write("apps/worse.yaml", "apiVersion: v1\nkind: NoSuchKind\nmetadata:\n  name: x\n")
	bad := f.commitPush("broken", "main")
	_, err := s.SyncOnce(context.Background())
	var list repolayout.ErrorList
	if !errors.As(err, &list) {
		t.Fatalf("SyncOnce of an invalid commit = %v, want an ErrorList", err)
	}
	if diff := cmp.Diff(live, resourceVersions(names(t, st, resource.ConfigMaps))); diff != "" {
		t.Errorf("an invalid commit changed objects (-before +after):\n%s", diff)
	}
	status = gitSyncStatus(t, st, "default")
	var files []string
	for _, e := range status.Errors {
		files = append(files, e.File)
		if e.Line == 0 || e.Message == "" {
			t.Errorf("error without line or message: %+v", e)
		}
	}
	if diff := cmp.Diff([]string{"apps/bad.yaml", "apps/worse.yaml"}, files); diff != "" {
		t.Errorf("files in status errors (-want +got):\n%s", diff)
	}
	if status.State != bosunv1.SyncStateFailed || status.Commit.SHA != bad || status.Applied.SHA != third ||
		!strings.Contains(status.Message, "fix the files") {
		t.Errorf("status after an invalid commit = %+v", status)
	}

	reg := prometheus.NewRegistry()
	if err := s.Register(reg); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		metric prometheus.Metric
		want   float64
	}{
		{s.metrics.syncs.WithLabelValues(resultSynced), 4},
		{s.metrics.syncs.WithLabelValues(resultInvalid), 1},
		{s.metrics.applied.WithLabelValues("created"), 5},
		{s.metrics.applied.WithLabelValues("updated"), 1},
		{s.metrics.applied.WithLabelValues("deleted"), 1},
	} {
		var m dto.Metric
		if err := c.metric.Write(&m); err != nil {
			t.Fatal(err)
		}
		if got := m.GetCounter().GetValue(); got != c.want {
			t.Errorf("%s = %v, want %v", c.metric.Desc(), got, c.want)
		}
	}
	families, err := reg.Gather()
	var got []string
	for _, f := range families {
		got = append(got, f.GetName())
	}
	want := []string{"bosun_gitsync_last_success_timestamp_seconds", "bosun_gitsync_objects_applied_total",
		"bosun_gitsync_sync_duration_seconds", "bosun_gitsync_syncs_total"}
	if diff := cmp.Diff(want, got); err != nil || diff != "" {
		t.Errorf("gathered metrics (-want +got), err %v:\n%s", err, diff)
	}
}

func TestSyncSubPath(t *testing.T) {
	st := storetest.NewStore(t)
	f := newGitFixture(t)
	f.write("README.md", "not loaded\n")
	f.write("other/cm.yaml", configMap("default", "outside", "x"))
	f.write("deploy/prod/ns.yaml", namespace("prod"))
	f.write("deploy/prod/cm.yaml", configMap("prod", "inside", "y"))
	f.commitPush("layout", "main")
	s := newSyncer(t, f, st, func(c *Config) { c.Path = "deploy/prod" })
	mustSync(t, s)
	cms := names(t, st, resource.ConfigMaps)
	if diff := cmp.Diff([]string{"prod/inside"}, keys(cms)); diff != "" {
		t.Fatalf("config maps (-want +got):\n%s", diff)
	}
	if got := cms["prod/inside"].GetAnnotations()[resource.AnnotationSource]; got != "deploy/prod/cm.yaml" {
		t.Errorf("source annotation = %q, want the path from the repository root", got)
	}
}

// TestSyncForcePushRefusedUntilAccepted: a force-push to an older commit applies nothing, the
// last good commit stays live and the status tells how to accept it; spec.acceptRewrite naming
// that commit (bosun sync --accept-rewrite) applies it, and only it.
func TestSyncForcePushRefusedUntilAccepted(t *testing.T) {
	st := storetest.NewStore(t)
	f := newGitFixture(t)
	f.write("a.yaml", configMap("default", "a", "1"))
	old := f.commitPush("a", "main")
	f.write("b.yaml", configMap("default", "b", "1"))
	f.write("a.yaml", configMap("default", "a", "2"))
	newer := f.commitPush("b", "main")
	s := newSyncer(t, f, st, nil)
	mustSync(t, s)
	before := resourceVersions(names(t, st, resource.ConfigMaps))
	f.git("reset", "--quiet", "--hard", old)
	f.git("push", "--quiet", "--force", "origin", "HEAD:main")

	for _, accept := range []string{"", "0000000", newer[:7], old[:6]} { // none, wrong, the applied one, too short
		setAcceptRewrite(t, st, accept)
		if _, err := s.SyncOnce(context.Background()); !errors.Is(err, ErrHistoryRewritten) {
			t.Fatalf("accept %q: SyncOnce after a force-push = %v, want ErrHistoryRewritten", accept, err)
		}
		status := gitSyncStatus(t, st, "default")
		if status.State != bosunv1.SyncStateFailed || status.Applied.SHA != newer || status.Commit.SHA != old {
			t.Errorf("accept %q: status %s, applied %s, commit %s; want Failed, %s still applied, %s fetched",
				accept, status.State, shortSHA(status.Applied.SHA), shortSHA(status.Commit.SHA), shortSHA(newer), shortSHA(old))
		}
		for _, want := range []string{"history rewritten", shortSHA(newer) + " stays live", "bosun sync --accept-rewrite " + shortSHA(old), "--follow-force-push"} {
			if !strings.Contains(status.Message, want) {
				t.Errorf("accept %q: status message %q lacks %q", accept, status.Message, want)
			}
		}
		if diff := cmp.Diff(before, resourceVersions(names(t, st, resource.ConfigMaps))); diff != "" {
			t.Errorf("accept %q: objects changed by a refused force-push (-before +after):\n%s", accept, diff)
		}
	}

	setAcceptRewrite(t, st, strings.ToUpper(old[:10]))
	mustSync(t, s)
	rewritten := "history rewritten: " + shortSHA(newer) + " is not an ancestor of " + shortSHA(old) + "; applying " + shortSHA(old)
	if msg := gitSyncStatus(t, st, "default").Message; !strings.HasPrefix(msg, rewritten+"; commit "+shortSHA(old)+" applied") {
		t.Errorf("status message = %q, want it to start with %q", msg, rewritten)
	}
	cms := names(t, st, resource.ConfigMaps)
	if diff := cmp.Diff([]string{"default/a"}, keys(cms)); diff != "" {
		t.Errorf("config maps after the accepted force-push (-want +got):\n%s", diff)
	}
	if got := cms["default/a"].(*corev1.ConfigMap).Data["key"]; got != "1" {
		t.Errorf("a = %q after force-push to the older commit, want 1", got)
	}
	if got := gitSyncStatus(t, st, "default").Applied.SHA; got != old {
		t.Errorf("applied = %s, want %s", got, old)
	}
}

// TestRewriteJudgedAgainstWhatIsLive: a head is compared with the commit whose objects are live
// — the one being applied while it waits (Syncing), not only the last complete one — and the
// acceptance is spent once used; another branch is not a rewrite of the first one's history.
func TestRewriteJudgedAgainstWhatIsLive(t *testing.T) {
	st := storetest.NewStore(t)
	f := newGitFixture(t)
	f.write("a.yaml", configMap("default", "a", "1"))
	base := f.commitPush("base", "main")
	s := newSyncer(t, f, st, nil)
	mustSync(t, s)

	// An accepted rewrite clears spec.acceptRewrite once applied.
	f.write("a.yaml", configMap("default", "a", "2"))
	f.git("commit", "--quiet", "--amend", "-am", "base, amended")
	f.git("push", "--quiet", "--force", "origin", "HEAD:main")
	amended := f.git("rev-parse", "HEAD")
	setAcceptRewrite(t, st, amended)
	mustSync(t, s)
	gs := getGitSync(t, st)
	if gs.Status.Applied.SHA != amended || gs.Spec.AcceptRewrite != "" {
		t.Errorf("after the accepted rewrite: applied %s, spec.acceptRewrite %q; want %s and cleared", shortSHA(gs.Status.Applied.SHA), gs.Spec.AcceptRewrite, shortSHA(amended))
	}

	// While a commit is still being applied (Syncing), a commit on top of it is no rewrite,
	// and one that drops it is.
	f.write("b.yaml", configMap("default", "b", "1"))
	waiting := f.commitPush("b", "main")
	setStatus(t, st, func(st *bosunv1.GitSyncStatus) {
		st.State, st.Commit.SHA, st.Applied.SHA = bosunv1.SyncStateSyncing, waiting, base
	})
	f.write("c.yaml", configMap("default", "c", "1"))
	f.commitPush("c", "main")
	mustSync(t, s)
	f.git("reset", "--quiet", "--hard", amended)
	f.write("d.yaml", configMap("default", "d", "1"))
	f.commitPush("d, dropping b and c", "main")
	setStatus(t, st, func(st *bosunv1.GitSyncStatus) { st.State, st.Commit.SHA = bosunv1.SyncStateSyncing, waiting })
	if _, err := s.SyncOnce(context.Background()); !errors.Is(err, ErrHistoryRewritten) {
		t.Errorf("a head dropping the commit being applied: %v, want ErrHistoryRewritten", err)
	}

	// The operator pointed at another branch, unrelated to main: following it is no rewrite.
	f.git("checkout", "--quiet", "--orphan", "other")
	f.write("e.yaml", configMap("default", "e", "1"))
	other := f.commitPush("other", "other")
	mustSync(t, newSyncer(t, f, st, func(c *Config) { c.Branch = "other" }))
	if gs := getGitSync(t, st); gs.Status.Applied.SHA != other || !strings.HasSuffix(gs.Status.AppliedSource, "#other") {
		t.Errorf("after switching branches: applied %s from %q, want %s from #other", shortSHA(gs.Status.Applied.SHA), gs.Status.AppliedSource, shortSHA(other))
	}
}

// getGitSync reads the GitSync "default".
func getGitSync(t *testing.T, st *store.Store) *bosunv1.GitSync {
	t.Helper()
	obj, err := st.Get(context.Background(), resource.GitSyncs, "", "default")
	if err != nil {
		t.Fatal(err)
	}
	return obj.(*bosunv1.GitSync)
}

// setStatus changes the GitSync's status as a sync would have left it.
func setStatus(t *testing.T, st *store.Store, change func(*bosunv1.GitSyncStatus)) {
	t.Helper()
	gs := getGitSync(t, st)
	change(&gs.Status)
	if _, err := st.UpdateStatus(context.Background(), resource.GitSyncs, gs); err != nil {
		t.Fatal(err)
	}
}

// setAcceptRewrite writes spec.acceptRewrite, as `bosun sync --accept-rewrite` does.
func setAcceptRewrite(t *testing.T, st *store.Store, sha string) {
	t.Helper()
	gs := getGitSync(t, st)
	gs.Spec.AcceptRewrite = sha
	if _, err := st.Update(context.Background(), resource.GitSyncs, gs); err != nil {
		t.Fatal(err)
	}
}

// TestSyncForcePushFollowed: with FollowRewrites (--follow-force-push) an amended commit
// force-pushed over the applied one is applied, and the status says that history was rewritten;
// a fast-forward says nothing of it.
func TestSyncForcePushFollowed(t *testing.T) {
	st := storetest.NewStore(t)
	f := newGitFixture(t)
	f.write("a.yaml", configMap("default", "a", "1"))
	f.commitPush("a", "main")
	f.write("b.yaml", configMap("default", "b", "1"))
	applied := f.commitPush("b", "main")
	follow := func(c *Config) { c.FollowRewrites = true }
	s := newSyncer(t, f, st, follow)
	mustSync(t, s)

	f.write("b.yaml", configMap("default", "b", "amended"))
	f.git("add", "-A")
	f.git("commit", "--quiet", "--amend", "-m", "b, amended")
	f.git("push", "--quiet", "--force", "origin", "HEAD:main")
	amended := f.git("rev-parse", "HEAD")
	want := fmt.Sprintf("history rewritten: %s is not an ancestor of %s; applying %s", shortSHA(applied), shortSHA(amended), shortSHA(amended))
	mustSync(t, s)
	checkRewritten(t, st, want, amended)

	// A Syncer with an empty clone, as after a restart on a fresh data dir, does not have the
	// applied commit at all, and still tells that it is not an ancestor.
	setApplied(t, st, applied)
	fresh := newSyncer(t, f, st, follow)
	mustSync(t, fresh)
	checkRewritten(t, st, want, amended)

	f.write("c.yaml", configMap("default", "c", "1"))
	f.commitPush("c", "main")
	mustSync(t, fresh)
	if msg := gitSyncStatus(t, st, "default").Message; strings.Contains(msg, "history rewritten") {
		t.Errorf("a fast-forward reports a rewrite: %q", msg)
	}
}

func checkRewritten(t *testing.T, st *store.Store, want, amended string) {
	t.Helper()
	status := gitSyncStatus(t, st, "default")
	if !strings.HasPrefix(status.Message, want) || status.Applied.SHA != amended || status.State != bosunv1.SyncStateSynced {
		t.Errorf("status = %s %q (applied %s), want Synced at %s with %q", status.State, status.Message, status.Applied.SHA, amended, want)
	}
	if got := names(t, st, resource.ConfigMaps)["default/b"].(*corev1.ConfigMap).Data["key"]; got != "amended" {
		t.Errorf("b = %q, want the amended value", got)
	}
}

// setApplied records sha as the applied commit in the GitSync status.
func setApplied(t *testing.T, st *store.Store, sha string) {
	t.Helper()
	setStatus(t, st, func(s *bosunv1.GitSyncStatus) { s.Applied.SHA = sha })
}

func TestSyncRemoteFailuresKeepLastGoodState(t *testing.T) {
	tests := []struct {
		name    string
		break_  func(f *gitFixture)
		repair  func(f *gitFixture)
		message string
	}{
		{
			name:    "branch deleted",
			break_:  func(f *gitFixture) { f.git("push", "--quiet", "origin", "--delete", "prod") },
			repair:  func(f *gitFixture) { f.git("push", "--quiet", "origin", "HEAD:refs/heads/prod") },
			message: `branch "prod" not found`,
		},
		{
			name:    "remote unreachable",
			break_:  func(f *gitFixture) { rename(f.t, f.bare, f.bare+".away") },
			repair:  func(f *gitFixture) { rename(f.t, f.bare+".away", f.bare) },
			message: "check that the repository is reachable",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := storetest.NewStore(t)
			f := newGitFixture(t)
			f.write("a.yaml", configMap("default", "a", "1"))
			f.commitPush("main", "main")
			good := f.commitPush("a", "prod")
			s := newSyncer(t, f, st, func(c *Config) { c.Branch = "prod" })
			mustSync(t, s)
			before := resourceVersions(names(t, st, resource.ConfigMaps))

			tt.break_(f)
			if _, err := s.SyncOnce(context.Background()); err == nil {
				t.Fatal("SyncOnce succeeded against a broken remote")
			}
			if diff := cmp.Diff(before, resourceVersions(names(t, st, resource.ConfigMaps))); diff != "" {
				t.Errorf("objects changed (-before +after):\n%s", diff)
			}
			status := gitSyncStatus(t, st, "default")
			if status.State != bosunv1.SyncStateFailed || !strings.Contains(status.Message, tt.message) ||
				!strings.Contains(status.Message, "stays applied") || status.Applied.SHA != good {
				t.Errorf("status = %+v, want Failed with %q", status, tt.message)
			}

			tt.repair(f)
			mustSync(t, s)
			if status := gitSyncStatus(t, st, "default"); status.State != bosunv1.SyncStateSynced {
				t.Errorf("status after repair = %+v", status)
			}
		})
	}
}

func rename(t testing.TB, from, to string) {
	t.Helper()
	if err := os.Rename(from, to); err != nil {
		t.Fatal(err)
	}
}

func TestSyncKeepsControllerFieldsAndAdopts(t *testing.T) {
	ctx := context.Background()
	st := storetest.NewStore(t)
	f := newGitFixture(t)

	// An object created through the API before Git declares it.
	byHand := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "adopted"}, Data: map[string]string{"key": "by hand"}}
	resource.ConfigMaps.SetTypeMeta(byHand)
	if _, err := st.Create(ctx, resource.ConfigMaps, byHand); err != nil {
		t.Fatal(err)
	}
	f.write("svc.yaml", service("default", "web", "app: web"))
	f.write("cm.yaml", configMap("default", "adopted", "from git"))
	f.commitPush("svc", "main")
	s := newSyncer(t, f, st, nil)
	res := mustSync(t, s)
	if res.Counts.Updated != 1 {
		t.Errorf("counts = %+v, want the adoption counted as an update", res.Counts)
	}
	cm := names(t, st, resource.ConfigMaps)["default/adopted"].(*corev1.ConfigMap)
	if cm.Data["key"] != "from git" || cm.Annotations[resource.AnnotationSource] != "cm.yaml" {
		t.Errorf("adopted ConfigMap = %+v", cm)
	}

	// "A controller" allocates the cluster IP and a finalizer.
	obj, err := st.Get(ctx, resource.Services, "default", "web")
	if err != nil {
		t.Fatal(err)
	}
	svc := obj.(*corev1.Service)
	svc.Spec.ClusterIP, svc.Spec.ClusterIPs = "10.96.0.42", []string{"10.96.0.42"}
	svc.Finalizers = []string{"bosun.dev/service-ip"}
	if _, err := st.Update(ctx, resource.Services, svc); err != nil {
		t.Fatal(err)
	}

	f.write("svc.yaml", service("default", "web", "app: web, edited: \"yes\""))
	f.commitPush("edit svc", "main")
	if res := mustSync(t, s); res.Counts.Updated != 1 {
		t.Errorf("counts = %+v, want one update", res.Counts)
	}
	svc = names(t, st, resource.Services)["default/web"].(*corev1.Service)
	if svc.Labels["edited"] != "yes" {
		t.Errorf("labels = %v, the edit was not applied", svc.Labels)
	}
	if diff := cmp.Diff([]string{"10.96.0.42"}, svc.Spec.ClusterIPs); diff != "" || svc.Spec.ClusterIP != "10.96.0.42" {
		t.Errorf("cluster IP lost on re-apply: %q %v", svc.Spec.ClusterIP, svc.Spec.ClusterIPs)
	}
	if diff := cmp.Diff([]string{"bosun.dev/service-ip"}, svc.Finalizers); diff != "" {
		t.Errorf("finalizers (-want +got):\n%s", diff)
	}
}

func TestRunSyncsOnTriggerAndRequest(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st := storetest.NewStore(t)
	f := newGitFixture(t)
	f.write("a.yaml", configMap("default", "a", "1"))
	f.commitPush("a", "main")
	s := newSyncer(t, f, st, nil) // Interval: an hour, so only triggers sync
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	has := func(name string) func() bool {
		return func() bool { _, ok := names(t, st, resource.ConfigMaps)["default/"+name]; return ok }
	}
	waitFor(t, "the first sync", has("a"))

	f.write("b.yaml", configMap("default", "b", "1"))
	f.commitPush("b", "main")
	s.Trigger()
	waitFor(t, "Trigger to sync b", has("b"))

	// `bosun sync` changes spec.syncRequested through the API.
	f.write("c.yaml", configMap("default", "c", "1"))
	f.commitPush("c", "main")
	gs := getGitSync(t, st)
	gs.Spec.SyncRequested = "2026-01-01T00:00:00Z"
	if _, err := st.Update(ctx, resource.GitSyncs, gs); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "spec.syncRequested to sync c", has("c"))
	waitFor(t, "status.observedSyncRequest", func() bool {
		return gitSyncStatus(t, st, "default").ObservedSyncRequest == "2026-01-01T00:00:00Z"
	})
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run = %v", err)
	}
}

func TestConfigValidate(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name string
		cfg  Config
		want []string // substrings of the error, nil = valid
	}{
		{"path", Config{Repo: dir, WorkDir: dir}, nil},
		{"file url", Config{Repo: "file://" + dir, WorkDir: dir}, nil},
		{"https with token", Config{Repo: "https://git.example.com/r.git", Token: "t", WorkDir: dir}, nil},
		{"ssh", Config{Repo: "ssh://git@h/r.git", SSHKeyFile: "k", KnownHostsFile: "kh", WorkDir: dir}, nil},
		{"missing", Config{}, []string{"repo: required", "workDir: required"}},
		{"ssh without known hosts", Config{Repo: "git@h:r.git", SSHKeyFile: "k", WorkDir: dir}, []string{"knownHostsFile"}},
		{"bad scheme", Config{Repo: "ftp://h/r", WorkDir: dir}, []string{"unsupported scheme"}},
		{"bad branch", Config{Repo: dir, WorkDir: dir, Branch: "a b"}, []string{"branch:"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if (err == nil) != (tt.want == nil) {
				t.Fatalf("Validate() = %v, want errors %v", err, tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate() = %v, want it to mention %q", err, w)
				}
			}
		})
	}
}

// listCounter counts the kinds a sync lists (in parallel).
type listCounter struct {
	*store.Store
	mu     sync.Mutex
	listed map[string]int
}

func (c *listCounter) ListMetadata(ctx context.Context, res *resource.Resource, ns string) ([]*metav1.PartialObjectMetadata, int64, error) {
	c.mu.Lock()
	c.listed[res.Resource]++
	c.mu.Unlock()
	return c.Store.ListMetadata(ctx, res, ns)
}

// take returns the kinds listed since the last take, sorted.
func (c *listCounter) take() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := keysOf(c.listed)
	clear(c.listed)
	return out
}

func keysOf(m map[string]int) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// TestSyncListsManagedKinds: after a complete apply, a sync lists only the kinds Git manages
// or the commit declares, and still prunes the last object of a kind removed from Git and
// adopts an object of a kind Git starts declaring.
func TestSyncListsManagedKinds(t *testing.T) {
	st := &listCounter{Store: storetest.NewStore(t), listed: map[string]int{}}
	ctx := context.Background()
	f := newGitFixture(t)
	f.write("apps/ns.yaml", namespace("apps"))
	f.write("apps/config.yaml", configMap("apps", "one", "1"))
	f.write("apps/web.yaml", deployment("apps", "web", 1))
	f.commitPush("first", "main")
	s, err := New(Config{Repo: f.bare, WorkDir: t.TempDir(), Interval: time.Hour}, st, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.SyncOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if got := st.take(); !slices.Contains(got, "pods") || !slices.Contains(got, "replicasets") {
		t.Errorf("the first sync of a process listed %v, want every kind", got)
	}
	// A pod nobody declares (a controller's, say).
	if _, err := st.Create(ctx, resource.Pods, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "apps", Name: "solo"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox"}}}}); err != nil {
		t.Fatal(err)
	}

	f.write("apps/config.yaml", configMap("apps", "one", "2"))
	f.commitPush("edit", "main")
	res, err := s.SyncOnce(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"clusters", "configmaps", "deployments", "namespaces"}
	if diff := cmp.Diff(want, st.take()); diff != "" || res.Counts.Updated != 1 {
		t.Errorf("kinds listed by the second sync (-want +got):\n%s\ncounts %+v", diff, res.Counts)
	}

	// The last Deployment leaves Git: its kind is still listed, and it is pruned.
	f.remove("apps/web.yaml")
	f.commitPush("remove web", "main")
	if res, err = s.SyncOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, st.take()); diff != "" || res.Counts.Deleted != 1 {
		t.Errorf("kinds listed when the last Deployment left Git (-want +got):\n%s\ncounts %+v", diff, res.Counts)
	}
	if _, err := st.Get(ctx, resource.Deployments, "apps", "web"); err == nil {
		t.Error("deployment apps/web was not pruned")
	}

	// Git declares the pod that exists: Pods are listed and it is adopted, not created twice.
	f.write("apps/solo.yaml", "apiVersion: v1\nkind: Pod\nmetadata:\n  name: solo\n  namespace: apps\nspec:\n  containers:\n  - name: c\n    image: busybox\n")
	f.commitPush("declare solo", "main")
	if res, err = s.SyncOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"clusters", "configmaps", "namespaces", "pods"}, st.take()); diff != "" {
		t.Errorf("kinds listed when Git declares a Pod (-want +got):\n%s", diff)
	}
	if res.Counts.Created != 0 || res.Counts.Updated != 1 {
		t.Errorf("counts when Git declares an existing pod: %+v, want it adopted (updated)", res.Counts)
	}
	pod, err := st.Get(ctx, resource.Pods, "apps", "solo")
	if err != nil || pod.GetAnnotations()[resource.AnnotationSource] != "apps/solo.yaml" {
		t.Errorf("pod apps/solo after the sync: %v, annotations %v", err, pod)
	}
}

// TestTerminatingObjectsWait checks Git sync against objects being deleted gracefully (a pod
// its node is stopping): a pruned pod that is still terminating is not deleted again nor
// counted, and a commit that declares it again waits (Syncing, not Synced) and creates it once
// it is gone, without another commit.
func TestTerminatingObjectsWait(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st := storetest.NewStore(t)
	f := newGitFixture(t)
	const podYAML = "apiVersion: v1\nkind: Pod\nmetadata: {name: web, namespace: default}\nspec:\n  containers: [{name: c, image: busybox}]\n"
	f.write("web.yaml", podYAML)
	f.write("a.yaml", configMap("default", "a", "1"))
	f.commitPush("web", "main")
	s := newSyncer(t, f, st, nil)
	mustSync(t, s)
	// The scheduler binds it: deleting it now waits for its node.
	obj, err := st.Get(ctx, resource.Pods, "default", "web")
	if err != nil {
		t.Fatal(err)
	}
	bound := obj.(*corev1.Pod)
	bound.Spec.NodeName = "n1"
	if _, err := st.Update(ctx, resource.Pods, bound); err != nil {
		t.Fatal(err)
	}
	oldUID := bound.UID

	f.remove("web.yaml")
	f.commitPush("remove web", "main")
	if res := mustSync(t, s); res.Counts.Deleted != 1 {
		t.Fatalf("counts after removing the pod: %+v, want 1 deleted", res.Counts)
	}
	f.write("b.yaml", configMap("default", "b", "1"))
	f.commitPush("another commit", "main")
	if res := mustSync(t, s); res.Counts.Deleted != 0 {
		t.Errorf("counts while the pod terminates: %+v; it was deleted already, nothing to delete or count", res.Counts)
	}

	// The pod comes back in Git before its node has stopped it.
	f.write("web.yaml", podYAML)
	f.commitPush("revert", "main")
	mustSync(t, s)
	status := gitSyncStatus(t, st, "default")
	if status.State != bosunv1.SyncStateSyncing || !strings.Contains(status.Message, "Pod default/web") {
		t.Errorf("status while the pod terminates: %s %q, want Syncing, naming the pod it waits for", status.State, status.Message)
	}
	go func() { _ = s.Run(ctx) }()
	force := int64(0)
	if _, err := st.Delete(ctx, resource.Pods, "default", "web", store.DeleteOptions{GracePeriodSeconds: &force}); err != nil {
		t.Fatal(err) // its node has stopped it
	}
	waitFor(t, "the pod created again once the old one is gone", func() bool {
		obj, err := st.Get(ctx, resource.Pods, "default", "web")
		return err == nil && obj.GetUID() != oldUID && obj.GetDeletionTimestamp() == nil &&
			gitSyncStatus(t, st, "default").State == bosunv1.SyncStateSynced
	})
}
