package health

import (
	"context"
	"testing"

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
	objs map[string]resource.Object
	gs   *bosunv1.GitSync
}

func (f *fakeStore) Get(_ context.Context, res *resource.Resource, ns, name string) (resource.Object, error) {
	if res == resource.GitSyncs {
		return f.gs.DeepCopy(), nil
	}
	if o, ok := f.objs[res.Kind+"/"+ns+"/"+name]; ok {
		return o, nil
	}
	return nil, apierrors.NewNotFound(res.GroupResource(), name)
}

func (f *fakeStore) UpdateStatus(_ context.Context, _ *resource.Resource, obj resource.Object) (resource.Object, error) {
	f.gs = obj.(*bosunv1.GitSync)
	return obj, nil
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
