package deployment

import (
	"context"

	appsv1 "k8s.io/api/apps/v1"
)

// rolloutRolling is one step of a RollingUpdate: grow the new ReplicaSet within maxSurge, or
// shrink old ones within maxUnavailable, then clean up and report.
func (s *syncer) rolloutRolling(ctx context.Context, rsList []*appsv1.ReplicaSet) error {
	newRS, old, err := s.getAllReplicaSetsAndSyncRevision(ctx, rsList, true)
	if err != nil {
		return err
	}
	all := append(append([]*appsv1.ReplicaSet(nil), old...), newRS)

	scaledUp, newRS, err := s.reconcileNewReplicaSet(ctx, all, newRS)
	if err != nil {
		return err
	}
	all[len(all)-1] = newRS
	if scaledUp {
		return s.syncRolloutStatus(ctx, all, newRS)
	}
	scaledDown, err := s.reconcileOldReplicaSets(ctx, all, active(old), newRS)
	if err != nil {
		return err
	}
	if scaledDown {
		return s.syncRolloutStatus(ctx, all, newRS)
	}
	if deploymentComplete(s.d, &s.d.Status) {
		if err := s.cleanup(ctx, old); err != nil {
			return err
		}
	}
	return s.syncRolloutStatus(ctx, all, newRS)
}

func (s *syncer) reconcileNewReplicaSet(ctx context.Context, all []*appsv1.ReplicaSet, newRS *appsv1.ReplicaSet) (bool, *appsv1.ReplicaSet, error) {
	want := *s.d.Spec.Replicas
	if replicas(newRS) == want {
		return false, newRS, nil
	}
	if replicas(newRS) > want {
		return s.scaleAndRecord(ctx, newRS, want)
	}
	n := NewRSNewReplicas(s.d, states(all), state(newRS))
	return s.scaleAndRecord(ctx, newRS, n)
}

func (s *syncer) reconcileOldReplicaSets(ctx context.Context, all, old []*appsv1.ReplicaSet, newRS *appsv1.ReplicaSet) (bool, error) {
	var oldPods int32
	for _, rs := range old {
		oldPods += replicas(rs)
	}
	if oldPods == 0 {
		return false, nil
	}
	maxScaledDown := MaxScaledDown(s.d, states(all), state(newRS))
	if maxScaledDown <= 0 {
		return false, nil
	}
	// Unhealthy old pods go first: removing them costs no availability.
	byCreation(old)
	var cleaned int32
	for i, rs := range old {
		if cleaned >= maxScaledDown {
			break
		}
		st := state(rs)
		if st.Spec == 0 || st.Spec == st.Available {
			continue
		}
		n := min(maxScaledDown-cleaned, st.Spec-st.Available)
		_, out, err := s.scaleAndRecord(ctx, rs, st.Spec-n)
		if err != nil {
			return false, err
		}
		old[i] = out
		cleaned += n
	}
	all = append(append([]*appsv1.ReplicaSet(nil), old...), newRS)

	// Then healthy ones, as far as availability allows.
	budget := ScaleDownBudget(s.d, states(all))
	var scaled int32
	for _, rs := range old {
		if scaled >= budget {
			break
		}
		if replicas(rs) == 0 {
			continue
		}
		n := min(replicas(rs), budget-scaled)
		if _, _, err := s.scaleAndRecord(ctx, rs, replicas(rs)-n); err != nil {
			return false, err
		}
		scaled += n
	}
	return cleaned+scaled > 0, nil
}
