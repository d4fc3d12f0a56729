package deployment

import (
	"context"
	"fmt"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
)

// deploymentComplete: every replica updated and available, nothing else left, spec observed.
func deploymentComplete(d *appsv1.Deployment, st *appsv1.DeploymentStatus) bool {
	return st.UpdatedReplicas == *d.Spec.Replicas && st.Replicas == *d.Spec.Replicas &&
		st.AvailableReplicas == *d.Spec.Replicas && st.ObservedGeneration >= d.Generation
}

// deploymentProgressing: the new status moved the rollout forward compared with the old one.
func deploymentProgressing(old, cur *appsv1.DeploymentStatus) bool {
	return cur.UpdatedReplicas > old.UpdatedReplicas ||
		cur.Replicas-cur.UpdatedReplicas < old.Replicas-old.UpdatedReplicas ||
		cur.ReadyReplicas > old.ReadyReplicas || cur.AvailableReplicas > old.AvailableReplicas
}

func (s *syncer) deadline() time.Duration {
	return time.Duration(*s.d.Spec.ProgressDeadlineSeconds) * time.Second
}

func (s *syncer) hasProgressDeadline() bool {
	return s.d.Spec.ProgressDeadlineSeconds != nil && *s.d.Spec.ProgressDeadlineSeconds != 1<<31-1
}

// timedOut reports whether the last progress is older than the deadline.
func (s *syncer) timedOut(st *appsv1.DeploymentStatus) bool {
	if !s.hasProgressDeadline() {
		return false
	}
	c := getCondition(*st, appsv1.DeploymentProgressing)
	if c == nil || c.Reason == ReasonNewRSAvailable {
		return false
	}
	if c.Reason == ReasonTimedOut {
		return true
	}
	return c.LastUpdateTime.Add(s.deadline()).Before(s.dc.clock.Now())
}

// syncRolloutStatus updates status and the Progressing condition during a rollout, and asks
// for a later look when the deadline may pass with no event.
func (s *syncer) syncRolloutStatus(ctx context.Context, all []*appsv1.ReplicaSet, newRS *appsv1.ReplicaSet) error {
	d := s.d
	st := s.calculateStatus(all, newRS)
	if !s.hasProgressDeadline() {
		removeCondition(&st, appsv1.DeploymentProgressing)
	}
	cur := getCondition(st, appsv1.DeploymentProgressing)
	complete := st.Replicas == st.UpdatedReplicas && cur != nil && cur.Reason == ReasonNewRSAvailable
	if s.hasProgressDeadline() && !complete && newRS != nil {
		switch {
		case deploymentComplete(d, &st):
			setStatusCondition(&st, s.newCondition(appsv1.DeploymentProgressing, corev1.ConditionTrue, ReasonNewRSAvailable,
				fmt.Sprintf("ReplicaSet %q has successfully progressed.", newRS.Name)))
		case deploymentProgressing(&d.Status, &st):
			c := s.newCondition(appsv1.DeploymentProgressing, corev1.ConditionTrue, ReasonRSUpdated,
				fmt.Sprintf("ReplicaSet %q is progressing.", newRS.Name))
			if cur != nil {
				if cur.Status == corev1.ConditionTrue {
					c.LastTransitionTime = cur.LastTransitionTime
				}
				removeCondition(&st, appsv1.DeploymentProgressing)
			}
			setStatusCondition(&st, c)
		case s.timedOut(&st):
			if cur == nil || cur.Reason != ReasonTimedOut {
				s.dc.rec.Eventf(d, corev1.EventTypeWarning, ReasonTimedOut, "ReplicaSet %q has timed out progressing.", newRS.Name)
			}
			setStatusCondition(&st, s.newCondition(appsv1.DeploymentProgressing, corev1.ConditionFalse, ReasonTimedOut,
				fmt.Sprintf("ReplicaSet %q has timed out progressing.", newRS.Name)))
		}
	}
	s.syncReplicaFailure(&st, all, newRS)
	if err := s.writeStatus(ctx, st); err != nil {
		return err
	}
	s.requeueStuck(&st)
	return nil
}

// syncReplicaFailure mirrors the new ReplicaSet's ReplicaFailure condition.
func (s *syncer) syncReplicaFailure(st *appsv1.DeploymentStatus, all []*appsv1.ReplicaSet, newRS *appsv1.ReplicaSet) {
	if newRS != nil {
		for _, c := range newRS.Status.Conditions {
			if c.Type == appsv1.ReplicaSetReplicaFailure && c.Status == corev1.ConditionTrue {
				setStatusCondition(st, appsv1.DeploymentCondition{Type: appsv1.DeploymentReplicaFailure, Status: c.Status,
					Reason: c.Reason, Message: c.Message, LastUpdateTime: c.LastTransitionTime, LastTransitionTime: c.LastTransitionTime})
				return
			}
		}
	}
	removeCondition(st, appsv1.DeploymentReplicaFailure)
}

// requeueStuck asks for a look when the progress deadline passes, as nothing else would wake us.
func (s *syncer) requeueStuck(st *appsv1.DeploymentStatus) {
	c := getCondition(*st, appsv1.DeploymentProgressing)
	if c == nil || !s.hasProgressDeadline() || c.Reason == ReasonNewRSAvailable || c.Reason == ReasonTimedOut ||
		deploymentComplete(s.d, st) {
		return
	}
	after := c.LastUpdateTime.Add(s.deadline()).Sub(s.dc.clock.Now())
	if after < time.Second {
		after = time.Second
	} else {
		after += time.Second
	}
	s.requeueAfter = after
}
