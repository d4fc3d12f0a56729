package deployment

import (
	"context"

	"github.com/bosun-gitops/bosun/operator/controllers/replicaset"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
)

// rolloutRecreate scales every old ReplicaSet to 0, waits until their pods are gone, then
// creates (or scales up) the new one.
func (s *syncer) rolloutRecreate(ctx context.Context, rsList []*appsv1.ReplicaSet) error {
	newRS, old, err := s.getAllReplicaSetsAndSyncRevision(ctx, rsList, false)
	if err != nil {
		return err
	}
	all := append(append([]*appsv1.ReplicaSet(nil), old...), newRS)
	scaledDown := false
	for _, rs := range active(old) {
		scaled, _, err := s.scaleAndRecord(ctx, rs, 0)
		if err != nil {
			return err
		}
		scaledDown = scaledDown || scaled
	}
	if scaledDown || s.oldPodsRunning(newRS, old) {
		return s.syncRolloutStatus(ctx, all, newRS)
	}
	if newRS == nil {
		if newRS, old, err = s.getAllReplicaSetsAndSyncRevision(ctx, rsList, true); err != nil {
			return err
		}
		all = append(append([]*appsv1.ReplicaSet(nil), old...), newRS)
	}
	if _, newRS, err = s.scaleAndRecord(ctx, newRS, *s.d.Spec.Replicas); err != nil {
		return err
	}
	all[len(all)-1] = newRS
	if deploymentComplete(s.d, &s.d.Status) {
		if err := s.cleanup(ctx, old); err != nil {
			return err
		}
	}
	return s.syncRolloutStatus(ctx, all, newRS)
}

// oldPodsRunning reports whether any pod of an old ReplicaSet may still run.
func (s *syncer) oldPodsRunning(newRS *appsv1.ReplicaSet, old []*appsv1.ReplicaSet) bool {
	for _, rs := range old {
		if rs.Status.Replicas > 0 {
			return true
		}
		if newRS != nil && rs.UID == newRS.UID {
			continue
		}
		objs, _ := s.dc.pods.GetIndexer().ByIndex(replicaset.ControllerIndex, string(rs.UID))
		for _, o := range objs {
			switch o.(*corev1.Pod).Status.Phase {
			case corev1.PodFailed, corev1.PodSucceeded:
			default:
				return true
			}
		}
	}
	return false
}
