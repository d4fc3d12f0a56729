package daemonset

import (
	"context"
	"fmt"
	"time"

	"github.com/bosun-gitops/bosun/internal/resource"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// computeStatus counts nodes as Kubernetes does: for each node that should run the daemon and
// has a pod, its oldest pod decides ready / available / updated.
func computeStatus(ds *appsv1.DaemonSet, nodes []*corev1.Node, byNode map[string][]*corev1.Pod, hash string, now time.Time) (appsv1.DaemonSetStatus, time.Duration) {
	st := ds.Status.DeepCopy()
	st.DesiredNumberScheduled, st.CurrentNumberScheduled, st.NumberMisscheduled = 0, 0, 0
	st.NumberReady, st.NumberAvailable, st.UpdatedNumberScheduled, st.NumberUnavailable = 0, 0, 0, 0
	st.ObservedGeneration = ds.Generation
	var requeue time.Duration
	mnow := metav1.NewTime(now)
	for _, node := range nodes {
		shouldRun, _ := ShouldRun(node, ds)
		pods := byNode[node.Name]
		if shouldRun {
			st.DesiredNumberScheduled++
		}
		if len(pods) == 0 {
			continue
		}
		if !shouldRun {
			st.NumberMisscheduled++
			continue
		}
		st.CurrentNumberScheduled++
		pod := pods[0]
		if c := podReady(pod); c != nil {
			st.NumberReady++
			if podAvailable(pod, ds.Spec.MinReadySeconds, mnow) {
				st.NumberAvailable++
			} else if wait := c.LastTransitionTime.Add(secondsDuration(ds.Spec.MinReadySeconds)).Sub(now) + time.Second; requeue == 0 || wait < requeue {
				requeue = wait
			}
		}
		if isUpdated(pod, hash, ds.Generation) {
			st.UpdatedNumberScheduled++
		}
	}
	st.NumberUnavailable = max(st.DesiredNumberScheduled-st.NumberAvailable, 0)
	return *st, requeue
}

func (dc *Controller) updateStatus(ctx context.Context, ds *appsv1.DaemonSet, nodes []*corev1.Node, byNode map[string][]*corev1.Pod, hash string, now time.Time) (time.Duration, error) {
	st, requeue := computeStatus(ds, nodes, byNode, hash, now)
	if equality.Semantic.DeepEqual(st, ds.Status) {
		return requeue, nil
	}
	next := ds.DeepCopy()
	next.Status = st
	if _, err := dc.c.Store.UpdateStatus(ctx, resource.DaemonSets, next); err != nil {
		if apierrors.IsNotFound(err) {
			return 0, nil
		}
		return 0, fmt.Errorf("updating status of daemon set %s/%s: %w", ds.Namespace, ds.Name, err)
	}
	return requeue, nil
}
