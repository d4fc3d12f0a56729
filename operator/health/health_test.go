package health

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bosun-gitops/bosun/internal/resource"
	"github.com/bosun-gitops/bosun/operator/gitsync"
	bosunv1 "github.com/bosun-gitops/bosun/repo-layout/v1alpha1"
	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func ptr[T any](v T) *T { return &v }

func dep(gen, observed int64, replicas, updated, available, total int32, conds ...appsv1.DeploymentCondition) *appsv1.Deployment {
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop", Generation: gen},
		Spec:       appsv1.DeploymentSpec{Replicas: ptr(replicas)},
		Status: appsv1.DeploymentStatus{ObservedGeneration: observed, UpdatedReplicas: updated, AvailableReplicas: available,
			Replicas: total, Conditions: conds},
	}
}

func TestAssess(t *testing.T) {
	deadline := appsv1.DeploymentCondition{Type: appsv1.DeploymentProgressing, Status: corev1.ConditionFalse, Reason: "ProgressDeadlineExceeded"}
	tests := []struct {
		name string
		obj  resource.Object
		want bosunv1.HealthStatusCode
	}{
		{"missing", nil, bosunv1.HealthMissing},
		{"deployment available", dep(2, 2, 3, 3, 3, 3), bosunv1.HealthHealthy},
		{"deployment not observed", dep(3, 2, 3, 3, 3, 3), bosunv1.HealthProgressing},
		{"deployment updating", dep(2, 2, 3, 1, 3, 4), bosunv1.HealthProgressing},
		{"deployment old replicas", dep(2, 2, 3, 3, 3, 4), bosunv1.HealthProgressing},
		{"deployment unavailable", dep(2, 2, 3, 3, 1, 3), bosunv1.HealthProgressing},
		{"deployment deadline", dep(2, 2, 3, 1, 1, 3, deadline), bosunv1.HealthDegraded},
		{"pod ready", &corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodRunning,
			Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}}}, bosunv1.HealthHealthy},
		{"pod pending", &corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodPending}}, bosunv1.HealthProgressing},
		{"pod failed", &corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodFailed}}, bosunv1.HealthDegraded},
		{"pod crashloop", &corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodRunning, ContainerStatuses: []corev1.ContainerStatus{
			{Name: "c", State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff"}}}}}}, bosunv1.HealthDegraded},
		{"daemonset rolling", &appsv1.DaemonSet{Status: appsv1.DaemonSetStatus{DesiredNumberScheduled: 3, UpdatedNumberScheduled: 2}}, bosunv1.HealthProgressing},
		{"daemonset done", &appsv1.DaemonSet{Status: appsv1.DaemonSetStatus{DesiredNumberScheduled: 3, UpdatedNumberScheduled: 3, NumberAvailable: 3}}, bosunv1.HealthHealthy},
		{"replicaset short", &appsv1.ReplicaSet{Spec: appsv1.ReplicaSetSpec{Replicas: ptr(int32(2))}, Status: appsv1.ReplicaSetStatus{Replicas: 2, AvailableReplicas: 1}}, bosunv1.HealthProgressing},
		{"configmap", &corev1.ConfigMap{}, bosunv1.HealthHealthy},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Assess(tt.obj); got.Status != tt.want {
				t.Errorf("Assess = %+v, want %s", got, tt.want)
			}
		})
	}
}

// fakeStore serves fixed objects and records GitSync status writes.
type fakeStore struct {
	mu   sync.Mutex
	objs map[string]resource.Object
	gs   *bosunv1.GitSync
}

func (f *fakeStore) Get(_ context.Context, res *resource.Resource, ns, name string) (resource.Object, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if res == resource.GitSyncs {
		return f.gs.DeepCopy(), nil
	}
	if o, ok := f.objs[res.Kind+"/"+ns+"/"+name]; ok {
		return o, nil
	}
	return nil, apierrors.NewNotFound(res.GroupResource(), name)
}

func (f *fakeStore) UpdateStatus(_ context.Context, _ *resource.Resource, obj resource.Object) (resource.Object, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.gs = obj.(*bosunv1.GitSync)
	return obj, nil
}

func (f *fakeStore) health() *bosunv1.CommitHealth {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.gs.DeepCopy().Status.Health
}

func (f *fakeStore) set(key string, obj resource.Object) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.objs[key] = obj
}

// calls records the tracker's callbacks as "progress|settled|superseded COMMIT STATUS: MESSAGE".
type calls struct {
	mu   sync.Mutex
	list []string
}

func (c *calls) add(kind, commit string, h bosunv1.CommitHealth) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.list = append(c.list, fmt.Sprintf("%s %s %s: %s", kind, commit, h.Status, h.Message))
}

func (c *calls) config(st Store) TrackerConfig {
	return TrackerConfig{Store: st, Interval: 10 * time.Millisecond,
		OnProgress: func(_ context.Context, commit string, h bosunv1.CommitHealth) { c.add("progress", commit, h) },
		OnSettled:  func(_ context.Context, commit string, h bosunv1.CommitHealth) { c.add("settled", commit, h) },
		OnSuperseded: func(_ context.Context, commit, newer string, h bosunv1.CommitHealth) {
			c.add("superseded by "+newer, commit, h)
		},
	}
}

func (c *calls) take() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	l := c.list
	c.list = nil
	return l
}

var webRef = gitsync.ObjectRef{Resource: resource.Deployments, Namespace: "shop", Name: "web"}

// TestTrackerRestart checks that the first sync of a process (a restart or a failover), which
// writes nothing for the already applied commit, keeps the recorded health instead of calling
// the commit healthy because "no workload changed".
func TestTrackerRestart(t *testing.T) {
	deadline := appsv1.DeploymentCondition{Type: appsv1.DeploymentProgressing, Status: corev1.ConditionFalse, Reason: "ProgressDeadlineExceeded"}
	st := &fakeStore{objs: map[string]resource.Object{"Deployment/shop/web": dep(1, 1, 2, 0, 0, 2, deadline)},
		gs: &bosunv1.GitSync{ObjectMeta: metav1.ObjectMeta{Name: "default"}}}
	var c calls
	first := NewTracker(c.config(st))
	first.OnSynced(t.Context(), gitsync.SyncReport{Commit: "c1", Changed: []gitsync.ObjectRef{webRef}})
	first.Wait()
	want := []string{
		"progress c1 Progressing: rolling out 1 workloads",
		`settled c1 Degraded: Deployment web: deployment "web" exceeded its progress deadline`,
	}
	if diff := cmp.Diff(want, c.take()); diff != "" {
		t.Fatalf("first operator (-want +got):\n%s", diff)
	}

	// The restarted operator: a settled health stays as it is, nothing is posted.
	restarted := NewTracker(c.config(st))
	restarted.OnSynced(t.Context(), gitsync.SyncReport{Commit: "c1"})
	restarted.Wait()
	if got := c.take(); len(got) != 0 {
		t.Errorf("after a restart: callbacks %q, want none", got)
	}
	if h := st.health(); h.Commit != "c1" || h.Status != bosunv1.HealthDegraded || len(h.Resources) != 1 {
		t.Errorf("health after a restart: %+v, want Degraded for c1", h)
	}
	// A later re-sync of the same commit that wrote nothing changes nothing either.
	restarted.OnSynced(t.Context(), gitsync.SyncReport{Commit: "c1"})
	restarted.Wait()
	if got := c.take(); len(got) != 0 {
		t.Errorf("after a second sync: callbacks %q, want none", got)
	}

	// A commit that another process had never recorded is new: tracked as usual.
	fresh := NewTracker(c.config(st))
	fresh.OnSynced(t.Context(), gitsync.SyncReport{Commit: "c2"})
	fresh.Wait()
	want = []string{"progress c2 Progressing: rolling out 0 workloads", "settled c2 Healthy: no workload changed"}
	if diff := cmp.Diff(want, c.take()); diff != "" {
		t.Errorf("a new commit that changed nothing (-want +got):\n%s", diff)
	}
}

// TestTrackerResume checks that a rollout in progress when the operator stopped is followed
// again by the next one, from the workloads that status.health recorded.
func TestTrackerResume(t *testing.T) {
	st := &fakeStore{objs: map[string]resource.Object{"Deployment/shop/web": dep(1, 1, 2, 2, 2, 2)},
		gs: &bosunv1.GitSync{ObjectMeta: metav1.ObjectMeta{Name: "default"}, Status: bosunv1.GitSyncStatus{Health: &bosunv1.CommitHealth{
			Commit: "c1", Status: bosunv1.HealthProgressing, Message: "Deployment web: 1 of 2 updated replicas are available",
			Resources: []bosunv1.ResourceHealth{{Kind: "Deployment", Namespace: "shop", Name: "web", Status: bosunv1.HealthProgressing}},
		}}}}
	var c calls
	tr := NewTracker(c.config(st))
	tr.OnSynced(t.Context(), gitsync.SyncReport{Commit: "c1"})
	tr.Wait()
	if diff := cmp.Diff([]string{"settled c1 Healthy: all 1 changed workloads are available"}, c.take()); diff != "" {
		t.Errorf("resumed tracking (-want +got):\n%s", diff)
	}
	if h := st.health(); h.Status != bosunv1.HealthHealthy || len(h.Resources) != 1 {
		t.Errorf("health: %+v, want Healthy with the deployment", h)
	}
}

// TestTrackerSuperseded checks that a commit whose rollout a newer commit interrupts gets a
// final word (OnSuperseded) rather than staying pending.
func TestTrackerSuperseded(t *testing.T) {
	st := &fakeStore{objs: map[string]resource.Object{"Deployment/shop/web": dep(1, 1, 2, 1, 1, 2)},
		gs: &bosunv1.GitSync{ObjectMeta: metav1.ObjectMeta{Name: "default"}}}
	var c calls
	tr := NewTracker(c.config(st))
	tr.OnSynced(t.Context(), gitsync.SyncReport{Commit: "c1", Changed: []gitsync.ObjectRef{webRef}})
	deadline := time.Now().Add(30 * time.Second)
	for st.health() == nil && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	st.set("Deployment/shop/web", dep(2, 2, 2, 2, 2, 2))
	tr.OnSynced(t.Context(), gitsync.SyncReport{Commit: "c2", Changed: []gitsync.ObjectRef{webRef}})
	tr.Wait()
	want := []string{
		"progress c1 Progressing: rolling out 1 workloads",
		"superseded by c2 c1 Progressing: Deployment web: 1 of 2 new replicas have been updated",
		"progress c2 Progressing: rolling out 1 workloads",
		"settled c2 Healthy: all 1 changed workloads are available",
	}
	got := c.take()
	sort.Strings(got) // the superseded post runs beside the next tracking
	sort.Strings(want)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("callbacks (-want +got):\n%s", diff)
	}
	// A re-sync of c2 with more changes continues c2: nothing is superseded.
	tr.OnSynced(t.Context(), gitsync.SyncReport{Commit: "c2", Changed: []gitsync.ObjectRef{{Resource: resource.ConfigMaps, Namespace: "shop", Name: "x"}}})
	tr.Wait()
	for _, call := range c.take() {
		if strings.HasPrefix(call, "superseded") {
			t.Errorf("re-sync of the same commit: %s", call)
		}
	}
}

func TestTrackerSettles(t *testing.T) {
	deadline := appsv1.DeploymentCondition{Type: appsv1.DeploymentProgressing, Status: corev1.ConditionFalse, Reason: "ProgressDeadlineExceeded"}
	tests := []struct {
		name string
		objs map[string]resource.Object
		want bosunv1.HealthStatusCode
	}{
		{"healthy", map[string]resource.Object{"Deployment/shop/web": dep(1, 1, 2, 2, 2, 2)}, bosunv1.HealthHealthy},
		{"degraded", map[string]resource.Object{"Deployment/shop/web": dep(1, 1, 2, 0, 0, 2, deadline)}, bosunv1.HealthDegraded},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := &fakeStore{objs: tt.objs, gs: &bosunv1.GitSync{ObjectMeta: metav1.ObjectMeta{Name: "default"}}}
			var settled []bosunv1.HealthStatusCode
			tr := NewTracker(TrackerConfig{Store: st, OnSettled: func(_ context.Context, commit string, h bosunv1.CommitHealth) {
				settled = append(settled, h.Status)
			}})
			tr.OnSynced(t.Context(), gitsync.SyncReport{Commit: "c1", Changed: []gitsync.ObjectRef{
				{Resource: resource.Deployments, Namespace: "shop", Name: "web"},
				{Resource: resource.ConfigMaps, Namespace: "shop", Name: "settings"},
			}})
			tr.Wait()
			if diff := cmp.Diff([]bosunv1.HealthStatusCode{tt.want}, settled); diff != "" {
				t.Errorf("settled (-want +got):\n%s", diff)
			}
			if h := st.gs.Status.Health; h == nil || h.Status != tt.want || h.Commit != "c1" || len(h.Resources) != 1 {
				t.Errorf("recorded health %+v", h)
			}
		})
	}
}

// TestTrackerSameCommit checks that a second sync of the same commit that wrote nothing does
// not replace the tracking of what the first one changed.
func TestTrackerSameCommit(t *testing.T) {
	st := &fakeStore{objs: map[string]resource.Object{"Deployment/shop/web": dep(1, 1, 2, 2, 2, 2)},
		gs: &bosunv1.GitSync{ObjectMeta: metav1.ObjectMeta{Name: "default"}}}
	var settled []string
	tr := NewTracker(TrackerConfig{Store: st, OnSettled: func(_ context.Context, commit string, h bosunv1.CommitHealth) {
		settled = append(settled, commit+" "+h.Message)
	}})
	tr.OnSynced(t.Context(), gitsync.SyncReport{Commit: "c1", Changed: []gitsync.ObjectRef{{Resource: resource.Deployments, Namespace: "shop", Name: "web"}}})
	tr.Wait()
	tr.OnSynced(t.Context(), gitsync.SyncReport{Commit: "c1"})
	tr.Wait()
	if diff := cmp.Diff([]string{"c1 all 1 changed workloads are available"}, settled); diff != "" {
		t.Errorf("settled (-want +got):\n%s", diff)
	}
}

// countingStore is a fakeStore that counts the reads of workloads.
type countingStore struct {
	*fakeStore
	mu    sync.Mutex
	reads int
}

func (c *countingStore) Get(ctx context.Context, res *resource.Resource, ns, name string) (resource.Object, error) {
	if res != resource.GitSyncs {
		c.mu.Lock()
		c.reads++
		c.mu.Unlock()
	}
	return c.fakeStore.Get(ctx, res, ns, name)
}

// TestAssessFromCache: a cached object that carries the assessed commit is assessed without a
// read of the store; one from an older commit (the cache has not seen the apply yet) or one the
// cache lacks is read from the store, whose answer counts.
func TestAssessFromCache(t *testing.T) {
	withCommit := func(d *appsv1.Deployment, commit string) *appsv1.Deployment {
		d.Annotations = map[string]string{resource.AnnotationCommit: commit}
		return d
	}
	stored := withCommit(dep(2, 1, 3, 0, 0, 3), "c2") // the apply of c2, not yet rolled out
	tests := []struct {
		name      string
		cached    resource.Object
		want      bosunv1.HealthStatusCode
		wantReads int
	}{
		{"cache carries the commit", withCommit(dep(2, 2, 3, 3, 3, 3), "c2"), bosunv1.HealthHealthy, 0},
		{"cache behind the apply", withCommit(dep(1, 1, 3, 3, 3, 3), "c1"), bosunv1.HealthProgressing, 1},
		{"cache lacks the object", nil, bosunv1.HealthProgressing, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := &countingStore{fakeStore: &fakeStore{objs: map[string]resource.Object{"Deployment/shop/web": stored}}}
			tr := NewTracker(TrackerConfig{Store: st, Cache: func(res *resource.Resource, ns, name string) (resource.Object, bool) {
				if res != resource.Deployments || ns != "shop" || name != "web" {
					t.Errorf("cache asked for %s %s/%s", res.Kind, ns, name)
				}
				return tt.cached, true
			}})
			h := tr.Assess(context.Background(), "c2", []gitsync.ObjectRef{webRef})
			if h.Status != tt.want || st.reads != tt.wantReads {
				t.Errorf("health %s (%s) after %d store reads, want %s after %d", h.Status, h.Message, st.reads, tt.want, tt.wantReads)
			}
		})
	}
}

// TestNextInterval: the wait doubles while assessments find nothing new, up to ten times the
// base, and drops back to the base on a change.
func TestNextInterval(t *testing.T) {
	base := 500 * time.Millisecond
	var got []time.Duration
	d := base
	for _, changed := range []bool{true, false, false, false, false, false, true, false} {
		d = nextInterval(d, base, changed)
		got = append(got, d)
	}
	ms := time.Millisecond
	want := []time.Duration{500 * ms, 1000 * ms, 2000 * ms, 4000 * ms, 5000 * ms, 5000 * ms, 500 * ms, 1000 * ms}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("intervals (-want +got):\n%s", diff)
	}
}
