package deployment

import (
	"math"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// ResolveFenceposts turns maxSurge and maxUnavailable into pod counts for desired replicas as
// Kubernetes does: percentages of surge round up, of unavailability down, and when both come
// out 0 one pod may be unavailable (a rollout must be able to move).
func ResolveFenceposts(maxSurge, maxUnavailable *intstr.IntOrString, desired int32) (surge, unavailable int32, err error) {
	zero := intstr.FromInt32(0)
	s, err := intstr.GetScaledValueFromIntOrPercent(intstr.ValueOrDefault(maxSurge, zero), int(desired), true)
	if err != nil {
		return 0, 0, err
	}
	u, err := intstr.GetScaledValueFromIntOrPercent(intstr.ValueOrDefault(maxUnavailable, zero), int(desired), false)
	if err != nil {
		return 0, 0, err
	}
	if s == 0 && u == 0 {
		u = 1
	}
	return int32(s), int32(u), nil
}

func isRollingUpdate(d *appsv1.Deployment) bool {
	return d.Spec.Strategy.Type == appsv1.RollingUpdateDeploymentStrategyType
}

// MaxUnavailable is the number of pods that may be unavailable during d's rollout.
func MaxUnavailable(d *appsv1.Deployment) int32 {
	if !isRollingUpdate(d) || *d.Spec.Replicas == 0 {
		return 0
	}
	_, u, _ := ResolveFenceposts(d.Spec.Strategy.RollingUpdate.MaxSurge, d.Spec.Strategy.RollingUpdate.MaxUnavailable, *d.Spec.Replicas)
	return min(u, *d.Spec.Replicas)
}

// MaxSurge is the number of pods that may exist above replicas during d's rollout.
func MaxSurge(d *appsv1.Deployment) int32 {
	if !isRollingUpdate(d) {
		return 0
	}
	s, _, _ := ResolveFenceposts(d.Spec.Strategy.RollingUpdate.MaxSurge, d.Spec.Strategy.RollingUpdate.MaxUnavailable, *d.Spec.Replicas)
	return s
}

// rsState is what the rollout arithmetic reads of one ReplicaSet.
type rsState struct {
	Spec      int32 // spec.replicas
	Pods      int32 // pods that may exist: max(spec, status.replicas)
	Available int32 // available pods that will survive the current spec
}

// NewRSNewReplicas is the size the new ReplicaSet may grow to now: under RollingUpdate, up to
// replicas+maxSurge pods in all; under Recreate, replicas at once.
func NewRSNewReplicas(d *appsv1.Deployment, all []rsState, newRS rsState) int32 {
	if !isRollingUpdate(d) {
		return *d.Spec.Replicas
	}
	var current int32
	for _, rs := range all {
		current += rs.Pods
	}
	maxTotal := *d.Spec.Replicas + MaxSurge(d)
	if current >= maxTotal {
		return newRS.Spec
	}
	up := min(maxTotal-current, *d.Spec.Replicas-newRS.Spec)
	return newRS.Spec + max(up, 0)
}

// MaxScaledDown is how many old pods a rolling update may remove now: everything above
// replicas-maxUnavailable, counting the new ReplicaSet's unavailable pods as lost.
func MaxScaledDown(d *appsv1.Deployment, all []rsState, newRS rsState) int32 {
	var total int32
	for _, rs := range all {
		total += rs.Spec
	}
	minAvailable := *d.Spec.Replicas - MaxUnavailable(d)
	newUnavailable := newRS.Spec - newRS.Available
	return total - minAvailable - newUnavailable
}

// ScaleDownBudget is how many available old pods may go now without available pods dropping
// below replicas-maxUnavailable.
func ScaleDownBudget(d *appsv1.Deployment, all []rsState) int32 {
	var available int32
	for _, rs := range all {
		available += rs.Available
	}
	return max(available-(*d.Spec.Replicas-MaxUnavailable(d)), 0)
}

// replicaSetFraction is the change in size of a ReplicaSet of size rsSize when its Deployment,
// whose replicas+maxSurge were annotated when the ReplicaSet was last sized (see
// maxReplicasBeforeScale), becomes d (proportional scaling). Without an annotated size (0) there
// is no proportion to keep: 0.
func replicaSetFraction(rsSize int32, annotated int32, d *appsv1.Deployment) int32 {
	if *d.Spec.Replicas == 0 {
		return -rsSize
	}
	target := *d.Spec.Replicas + MaxSurge(d)
	if annotated == 0 {
		return 0
	}
	size := float64(rsSize*target) / float64(annotated)
	return int32(math.Round(size)) - rsSize
}

// proportion bounds a ReplicaSet's fraction by what is left to add (or remove).
func proportion(rsSize, annotated int32, d *appsv1.Deployment, toAdd, added int32) int32 {
	if rsSize == 0 || toAdd == 0 || toAdd == added {
		return 0
	}
	f := replicaSetFraction(rsSize, annotated, d)
	allowed := toAdd - added
	if toAdd > 0 {
		return min(f, allowed)
	}
	return max(f, allowed)
}
