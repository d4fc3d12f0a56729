package replicaset

import (
	"sort"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// podDeletionCost is the annotation with which users rank pods for scale-down (lower goes first).
const podDeletionCost = "controller.kubernetes.io/pod-deletion-cost"

// isActive reports whether a pod counts towards replicas: not finished and not being deleted.
func isActive(p *corev1.Pod) bool {
	return p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed &&
		p.DeletionTimestamp == nil
}

// readyCondition returns the pod's Ready condition, or nil.
func readyCondition(p *corev1.Pod) *corev1.PodCondition {
	for i := range p.Status.Conditions {
		if p.Status.Conditions[i].Type == corev1.PodReady {
			return &p.Status.Conditions[i]
		}
	}
	return nil
}

// IsPodReady reports whether the pod's Ready condition is True.
func IsPodReady(p *corev1.Pod) bool {
	c := readyCondition(p)
	return c != nil && c.Status == corev1.ConditionTrue
}

// IsPodAvailable reports whether the pod has been ready for at least minReadySeconds at now.
func IsPodAvailable(p *corev1.Pod, minReadySeconds int32, now time.Time) bool {
	c := readyCondition(p)
	if c == nil || c.Status != corev1.ConditionTrue {
		return false
	}
	if minReadySeconds == 0 {
		return true
	}
	d := time.Duration(minReadySeconds) * time.Second
	return !c.LastTransitionTime.IsZero() && !c.LastTransitionTime.Add(d).After(now)
}

// rankedPod is a pod with the number of related pods on its node, for scale-down ordering.
type rankedPod struct {
	pod  *corev1.Pod
	rank int
}

// sortForDeletion orders pods so that the ones to delete first come first, as Kubernetes'
// ActivePodsWithRanks: unscheduled before scheduled, Pending before Unknown before Running,
// not ready before ready, lower deletion cost first, pods doubled up on a node before lone ones,
// ready for a shorter time first, more container restarts first, and newer before older.
func sortForDeletion(pods []*corev1.Pod) {
	perNode := map[string]int{}
	for _, p := range pods {
		if p.Spec.NodeName != "" {
			perNode[p.Spec.NodeName]++
		}
	}
	ranked := make([]rankedPod, len(pods))
	for i, p := range pods {
		ranked[i] = rankedPod{pod: p}
		if p.Spec.NodeName != "" {
			ranked[i].rank = perNode[p.Spec.NodeName]
		}
	}
	sort.SliceStable(ranked, func(i, j int) bool { return deleteBefore(ranked[i], ranked[j]) })
	for i := range ranked {
		pods[i] = ranked[i].pod
	}
}

var phaseOrder = map[corev1.PodPhase]int{corev1.PodPending: 0, corev1.PodUnknown: 1, corev1.PodRunning: 2}

func deleteBefore(a, b rankedPod) bool {
	pa, pb := a.pod, b.pod
	if (pa.Spec.NodeName == "") != (pb.Spec.NodeName == "") {
		return pa.Spec.NodeName == ""
	}
	if phaseOrder[pa.Status.Phase] != phaseOrder[pb.Status.Phase] {
		return phaseOrder[pa.Status.Phase] < phaseOrder[pb.Status.Phase]
	}
	ra, rb := IsPodReady(pa), IsPodReady(pb)
	if ra != rb {
		return !ra
	}
	if ca, cb := deletionCost(pa), deletionCost(pb); ca != cb {
		return ca < cb
	}
	if a.rank != b.rank {
		return a.rank > b.rank
	}
	if ra && rb {
		ta, tb := readyCondition(pa).LastTransitionTime, readyCondition(pb).LastTransitionTime
		if !ta.Equal(&tb) {
			return tb.Before(&ta) // ready more recently first
		}
	}
	if na, nb := restarts(pa), restarts(pb); na != nb {
		return na > nb
	}
	if !pa.CreationTimestamp.Equal(&pb.CreationTimestamp) {
		return pb.CreationTimestamp.Before(&pa.CreationTimestamp)
	}
	return pa.Name > pb.Name // generated names: a stable, arbitrary tie-break
}

func deletionCost(p *corev1.Pod) int64 {
	v, ok := p.Annotations[podDeletionCost]
	if !ok {
		return 0
	}
	n, err := strconv.ParseInt(v, 10, 32)
	if err != nil {
		return 0
	}
	return n
}

func restarts(p *corev1.Pod) int32 {
	var n int32
	for _, c := range p.Status.ContainerStatuses {
		n += c.RestartCount
	}
	return n
}
