package framework

import corev1 "k8s.io/api/core/v1"

// StateKey names one plugin's entry in a CycleState.
type StateKey string

// CycleState carries what PreFilter computed about the pod to the Filter and Score calls of the
// same scheduling cycle. The scheduler schedules one pod at a time; Filter and Score may run in
// parallel over nodes and only read it.
type CycleState struct {
	data    map[StateKey]any
	podInfo *PodInfo // read on every Filter and Score call: a field, not a map entry
}

// SetPodInfo records the PodInfo of the pod being scheduled.
func (c *CycleState) SetPodInfo(pi *PodInfo) { c.podInfo = pi }

// NewCycleState returns an empty state.
func NewCycleState() *CycleState { return &CycleState{data: map[StateKey]any{}} }

// Write stores v under key.
func (c *CycleState) Write(key StateKey, v any) { c.data[key] = v }

// Read returns the value under key.
func (c *CycleState) Read(key StateKey) (any, bool) {
	v, ok := c.data[key]
	return v, ok
}

// PodInfoFrom returns the PodInfo of the cycle, computing it when the state does not hold one
// (plugins called directly in tests).
func PodInfoFrom(state *CycleState, pod *corev1.Pod) *PodInfo {
	if state != nil && state.podInfo != nil && state.podInfo.Pod == pod {
		return state.podInfo
	}
	return NewPodInfo(pod)
}
