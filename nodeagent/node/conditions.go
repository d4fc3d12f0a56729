package node

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// conditions computes the node's conditions from the machine's stats and the runtime's health;
// only Type, Status, Reason and Message are set (times come from mergeConditions).
func (r *Registrar) conditions(ctx context.Context) []corev1.NodeCondition {
	st, statsErr := r.cfg.ReadStats()
	cond := func(t corev1.NodeConditionType, bad bool, badReason, okReason, badMsg, okMsg string) corev1.NodeCondition {
		if bad {
			return corev1.NodeCondition{Type: t, Status: corev1.ConditionTrue, Reason: badReason, Message: badMsg}
		}
		return corev1.NodeCondition{Type: t, Status: corev1.ConditionFalse, Reason: okReason, Message: okMsg}
	}
	memBad := statsErr == nil && st.MemAvailableBytes < r.cfg.MemoryThreshold
	diskBad := statsErr == nil && st.DiskTotalBytes > 0 && float64(st.DiskAvailBytes) < r.cfg.DiskFraction*float64(st.DiskTotalBytes)
	pidBad := statsErr == nil && st.PIDMax > 0 && float64(st.PIDMax-st.PIDs) < r.cfg.PIDFraction*float64(st.PIDMax)
	out := []corev1.NodeCondition{
		cond(corev1.NodeMemoryPressure, memBad, "KubeletHasInsufficientMemory", "KubeletHasSufficientMemory",
			fmt.Sprintf("available memory %d MiB is below %d MiB", st.MemAvailableBytes>>20, r.cfg.MemoryThreshold>>20),
			"agent has sufficient memory available"),
		cond(corev1.NodeDiskPressure, diskBad, "KubeletHasDiskPressure", "KubeletHasNoDiskPressure",
			fmt.Sprintf("free disk space %d MiB is below %.0f%% of %d MiB", st.DiskAvailBytes>>20, r.cfg.DiskFraction*100, st.DiskTotalBytes>>20),
			"agent has no disk pressure"),
		cond(corev1.NodePIDPressure, pidBad, "KubeletHasInsufficientPID", "KubeletHasSufficientPID",
			fmt.Sprintf("%d of %d process IDs in use", st.PIDs, st.PIDMax),
			"agent has sufficient PID available"),
	}
	ready := corev1.NodeCondition{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady", Message: "agent is posting ready status"}
	switch {
	case statsErr != nil:
		ready = corev1.NodeCondition{Type: corev1.NodeReady, Status: corev1.ConditionFalse, Reason: "KubeletNotReady", Message: "reading node stats: " + statsErr.Error()}
	case r.cfg.RuntimeVersion != nil:
		if _, err := r.cfg.RuntimeVersion(ctx); err != nil {
			ready = corev1.NodeCondition{Type: corev1.NodeReady, Status: corev1.ConditionFalse, Reason: "KubeletNotReady",
				Message: "container runtime is down: " + err.Error()}
		}
	}
	return append([]corev1.NodeCondition{ready}, out...)
}

// conditionsChanged compares statuses and reasons only (messages carry changing figures).
func conditionsChanged(old, cur []corev1.NodeCondition) bool {
	if len(old) != len(cur) {
		return true
	}
	for i := range cur {
		if old[i].Type != cur[i].Type || old[i].Status != cur[i].Status || old[i].Reason != cur[i].Reason {
			return true
		}
	}
	return false
}

// mergeConditions puts cur into existing: heartbeat time now, transition time kept unless the
// status changed. Conditions of other writers (for example the node lifecycle controller's
// Unknown status) are replaced for the types this agent owns and kept otherwise.
func mergeConditions(existing, cur []corev1.NodeCondition, now metav1.Time) []corev1.NodeCondition {
	byType := map[corev1.NodeConditionType]corev1.NodeCondition{}
	for _, c := range existing {
		byType[c.Type] = c
	}
	out := make([]corev1.NodeCondition, 0, len(cur))
	owned := map[corev1.NodeConditionType]bool{}
	for _, c := range cur {
		owned[c.Type] = true
		c.LastHeartbeatTime = now
		c.LastTransitionTime = now
		if old, ok := byType[c.Type]; ok && old.Status == c.Status && !old.LastTransitionTime.IsZero() {
			c.LastTransitionTime = old.LastTransitionTime
		}
		out = append(out, c)
	}
	for _, c := range existing {
		if !owned[c.Type] {
			out = append(out, c)
		}
	}
	return out
}
