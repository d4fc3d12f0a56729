// Package health assesses the health of live objects with Argo CD's model (Healthy,
// Progressing, Degraded, Missing) and tracks the health of what one applied commit changed until
// it settles, recording it in the GitSync status.
//
//	gitsync OnSynced(commit, changed) ─> Tracker.Track ─> poll Assess(each object)
//	    ─> GitSync status.health ─> OnSettled(commit, Healthy|Degraded) (forge: bosun/deploy)
//	    a newer commit first ─> OnSuperseded(commit, newer)             (forge: bosun/deploy error)
//	after a restart, a sync that wrote nothing ─> status.health of that commit kept or resumed
//
// Assess reads each object from the controllers' informer caches once the cached copy carries
// the commit (from the store before that), every 500 ms while something changes and up to
// every 5 s while nothing does.
package health

import (
	"fmt"

	"github.com/bosun-gitops/bosun/internal/resource"
	bosunv1 "github.com/bosun-gitops/bosun/repo-layout/v1alpha1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
)

// Status aliases the API's health codes.
type Status = bosunv1.HealthStatusCode

// Result is the health of one object with the reason a user needs.
type Result struct {
	Status  Status
	Message string
}

// rank orders statuses from best to worst.
func rank(s Status) int {
	switch s {
	case bosunv1.HealthHealthy:
		return 0
	case bosunv1.HealthProgressing:
		return 1
	case bosunv1.HealthMissing:
		return 2
	default:
		return 3
	}
}

// Worse reports whether a is worse than b.
func Worse(a, b Status) bool { return rank(a) > rank(b) }

// HasHealth reports whether objects of res have a health of their own (workloads); the others
// are Healthy once they exist.
func HasHealth(res *resource.Resource) bool {
	switch res {
	case resource.Deployments, resource.ReplicaSets, resource.DaemonSets, resource.Pods, resource.ReplicationControllers:
		return true
	}
	return false
}

// Assess returns the health of obj; nil is Missing.
func Assess(obj resource.Object) Result {
	switch o := obj.(type) {
	case nil:
		return Result{bosunv1.HealthMissing, "not found"}
	case *appsv1.Deployment:
		return deployment(o)
	case *appsv1.ReplicaSet:
		return replicated(o.Generation, o.Status.ObservedGeneration, o.Spec.Replicas, o.Status.Replicas, o.Status.ReadyReplicas, o.Status.AvailableReplicas)
	case *corev1.ReplicationController:
		return replicated(o.Generation, o.Status.ObservedGeneration, o.Spec.Replicas, o.Status.Replicas, o.Status.ReadyReplicas, o.Status.AvailableReplicas)
	case *appsv1.DaemonSet:
		return daemonSet(o)
	case *corev1.Pod:
		return pod(o)
	}
	return Result{Status: bosunv1.HealthHealthy}
}

// deployment follows kubectl rollout status and Argo CD: a missed progress deadline is
// Degraded; a rollout not yet observed, updated or available is Progressing.
func deployment(d *appsv1.Deployment) Result {
	if d.Spec.Paused {
		return Result{bosunv1.HealthProgressing, "rollout is paused"}
	}
	if d.Generation > d.Status.ObservedGeneration {
		return Result{bosunv1.HealthProgressing, "waiting for the rollout to be observed"}
	}
	for _, c := range d.Status.Conditions {
		if c.Type == appsv1.DeploymentProgressing && c.Status == corev1.ConditionFalse && c.Reason == "ProgressDeadlineExceeded" {
			return Result{bosunv1.HealthDegraded, fmt.Sprintf("deployment %q exceeded its progress deadline", d.Name)}
		}
		if c.Type == appsv1.DeploymentReplicaFailure && c.Status == corev1.ConditionTrue {
			return Result{bosunv1.HealthDegraded, fmt.Sprintf("deployment %q: %s", d.Name, c.Message)}
		}
	}
	want := int32(1)
	if d.Spec.Replicas != nil {
		want = *d.Spec.Replicas
	}
	st := d.Status
	switch {
	case st.UpdatedReplicas < want:
		return Result{bosunv1.HealthProgressing, fmt.Sprintf("%d of %d new replicas have been updated", st.UpdatedReplicas, want)}
	case st.Replicas > st.UpdatedReplicas:
		return Result{bosunv1.HealthProgressing, fmt.Sprintf("%d old replicas are pending termination", st.Replicas-st.UpdatedReplicas)}
	case st.AvailableReplicas < st.UpdatedReplicas:
		return Result{bosunv1.HealthProgressing, fmt.Sprintf("%d of %d updated replicas are available", st.AvailableReplicas, st.UpdatedReplicas)}
	}
	return Result{bosunv1.HealthHealthy, fmt.Sprintf("%d of %d replicas available", st.AvailableReplicas, want)}
}

func replicated(gen, observed int64, spec *int32, replicas, ready, available int32) Result {
	want := int32(1)
	if spec != nil {
		want = *spec
	}
	switch {
	case gen > observed:
		return Result{bosunv1.HealthProgressing, "waiting for the spec to be observed"}
	case replicas != want:
		return Result{bosunv1.HealthProgressing, fmt.Sprintf("%d of %d replicas created", replicas, want)}
	case available < want:
		return Result{bosunv1.HealthProgressing, fmt.Sprintf("%d of %d replicas available", available, want)}
	}
	return Result{bosunv1.HealthHealthy, fmt.Sprintf("%d of %d replicas available", available, want)}
}

func daemonSet(d *appsv1.DaemonSet) Result {
	st := d.Status
	switch {
	case d.Generation > st.ObservedGeneration:
		return Result{bosunv1.HealthProgressing, "waiting for the rollout to be observed"}
	case st.UpdatedNumberScheduled < st.DesiredNumberScheduled:
		return Result{bosunv1.HealthProgressing, fmt.Sprintf("%d of %d pods updated", st.UpdatedNumberScheduled, st.DesiredNumberScheduled)}
	case st.NumberAvailable < st.DesiredNumberScheduled:
		return Result{bosunv1.HealthProgressing, fmt.Sprintf("%d of %d pods available", st.NumberAvailable, st.DesiredNumberScheduled)}
	}
	return Result{bosunv1.HealthHealthy, fmt.Sprintf("%d of %d pods available", st.NumberAvailable, st.DesiredNumberScheduled)}
}

func pod(p *corev1.Pod) Result {
	for _, cs := range p.Status.ContainerStatuses {
		if w := cs.State.Waiting; w != nil && (w.Reason == "CrashLoopBackOff" || w.Reason == "ImagePullBackOff" || w.Reason == "ErrImagePull") {
			return Result{bosunv1.HealthDegraded, fmt.Sprintf("container %s: %s", cs.Name, w.Reason)}
		}
	}
	switch p.Status.Phase {
	case corev1.PodSucceeded:
		return Result{bosunv1.HealthHealthy, "completed"}
	case corev1.PodFailed:
		return Result{bosunv1.HealthDegraded, orDefault(p.Status.Message, "pod failed")}
	case corev1.PodRunning:
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
				return Result{bosunv1.HealthHealthy, "running and ready"}
			}
		}
		return Result{bosunv1.HealthProgressing, "running, not ready"}
	}
	return Result{bosunv1.HealthProgressing, "pending"}
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
