package scheduler

import (
	"context"
	"errors"
	"math/rand/v2"

	"github.com/bosun-gitops/bosun/internal/resource"
	"github.com/bosun-gitops/bosun/operator/scheduler/framework"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Sampling bounds, as kube-scheduler's.
const (
	minFeasibleNodesToFind           = 100
	minFeasibleNodesPercentageToFind = 5
)

// numFeasibleNodesToFind returns how many feasible nodes to find before scoring: all of them in
// small clusters, else a percentage (adaptive by default: 50% - nodes/125, at least 5%), never
// fewer than 100.
func numFeasibleNodesToFind(percentage, numAllNodes int) int {
	if numAllNodes < minFeasibleNodesToFind || percentage >= 100 {
		return numAllNodes
	}
	adaptive := percentage
	if adaptive <= 0 {
		adaptive = max(50-numAllNodes/125, minFeasibleNodesPercentageToFind)
	}
	return max(numAllNodes*adaptive/100, minFeasibleNodesToFind)
}

// scheduleOne places one pod: filter, score, assume, hand over to the binder.
func (s *Scheduler) scheduleOne(ctx context.Context, qp *queuedPod, cycle int64) {
	pod := qp.pod
	if !responsible(pod) || s.cache.isKnown(pod.UID) {
		return // bound, assumed or deleted meanwhile
	}
	pi := framework.NewPodInfo(pod)
	state := framework.NewCycleState()
	state.SetPodInfo(pi)

	s.cache.mu.Lock()
	node, err := s.schedulePodLocked(ctx, state, pod)
	if err == nil {
		s.cache.assumeLocked(pi, node)
	}
	s.cache.mu.Unlock()

	if err != nil {
		s.handleFailure(ctx, qp, cycle, err)
		return
	}
	s.binder.submit(&bindRequest{qp: qp, node: node})
}

// schedulePodLocked returns the best node for pod. s.cache.mu must be held.
func (s *Scheduler) schedulePodLocked(ctx context.Context, state *framework.CycleState, pod *corev1.Pod) (string, error) {
	all := s.cache.list
	if len(all) == 0 {
		// As kube-scheduler: before any plugin runs ("no nodes available to schedule pods").
		return "", &framework.FitError{Pod: pod}
	}
	diagnosis := framework.Diagnosis{NodeToStatus: map[string]*framework.Status{}, UnschedulablePlugins: map[string]bool{}}
	if st := s.fwk.RunPreFilterPlugins(ctx, state, pod); !st.IsSuccess() {
		if !st.IsRejected() {
			return "", st.AsError()
		}
		diagnosis.PreFilterMsg = st.Message()
		diagnosis.UnschedulablePlugins[st.Plugin()] = true
		return "", &framework.FitError{Pod: pod, NumAllNodes: len(all), Diagnosis: diagnosis}
	}
	feasible, err := s.findFeasibleLocked(ctx, state, pod, &diagnosis)
	if err != nil {
		return "", err
	}
	switch len(feasible) {
	case 0:
		return "", &framework.FitError{Pod: pod, NumAllNodes: len(all), Diagnosis: diagnosis}
	case 1:
		return feasible[0].Name(), nil
	}
	if !s.fwk.HasScorePlugins() {
		return feasible[rand.IntN(len(feasible))].Name(), nil
	}
	scores, st := s.fwk.RunScorePlugins(ctx, state, pod, feasible, &s.scoreBuf)
	if !st.IsSuccess() {
		return "", st.AsError()
	}
	return selectHost(scores), nil
}

// findFeasibleLocked filters nodes from the rotating start index until enough feasible ones are
// found (see numFeasibleNodesToFind); rejected nodes' statuses go to diagnosis.
func (s *Scheduler) findFeasibleLocked(ctx context.Context, state *framework.CycleState, pod *corev1.Pod, diagnosis *framework.Diagnosis) ([]*framework.NodeInfo, error) {
	all := s.cache.list
	n := len(all)
	if n == 0 {
		return nil, nil
	}
	want := numFeasibleNodesToFind(s.cfg.PercentageOfNodesToScore, n)
	if cap(s.feasibleBuf) < want {
		s.feasibleBuf = make([]*framework.NodeInfo, 0, want)
	}
	feasible := s.feasibleBuf[:0]
	start := s.nextStart % n
	processed := 0
	for ; processed < n && len(feasible) < want; processed++ {
		ni := all[(start+processed)%n]
		st := s.fwk.RunFilterPlugins(ctx, state, pod, ni)
		switch {
		case st.IsSuccess():
			feasible = append(feasible, ni)
		case st.IsRejected():
			diagnosis.NodeToStatus[ni.Name()] = st
			diagnosis.UnschedulablePlugins[st.Plugin()] = true
		default:
			return nil, st.AsError()
		}
	}
	s.nextStart = (start + processed) % n
	return feasible, nil
}

// selectHost returns the highest-scoring node, picking uniformly at random among ties (reservoir
// sampling), so that equal nodes share the load.
func selectHost(scores framework.NodeScoreList) string {
	best, ties := 0, 1
	for i := 1; i < len(scores); i++ {
		switch {
		case scores[i].Score > scores[best].Score:
			best, ties = i, 1
		case scores[i].Score == scores[best].Score:
			ties++
			if rand.IntN(ties) == 0 {
				best = i
			}
		}
	}
	return scores[best].Name
}

// handleFailure records why a pod was not placed and re-queues it: a pod that fits nowhere gets
// PodScheduled=False (reason Unschedulable, kube-scheduler's message) and a FailedScheduling event
// and waits for a cluster event; an internal error backs off.
func (s *Scheduler) handleFailure(ctx context.Context, qp *queuedPod, cycle int64, err error) {
	var fitErr *framework.FitError
	if !errors.As(err, &fitErr) {
		s.log.Warn("scheduling failed; retrying", "pod", qp.key, "err", err)
		s.recorder.Eventf(qp.pod, corev1.EventTypeWarning, "FailedScheduling", "%v", err)
		s.requeue(qp)
		return
	}
	msg := fitErr.Error()
	s.log.Debug("pod unschedulable", "pod", qp.key, "reason", msg)
	s.recorder.Eventf(qp.pod, corev1.EventTypeWarning, "FailedScheduling", "%s", msg)
	s.queue.AddUnschedulable(qp, cycle)
	if err := s.setUnschedulable(ctx, qp.pod, msg); err != nil && !apierrors.IsNotFound(err) {
		s.log.Warn("recording PodScheduled=False", "pod", qp.key, "err", err)
	}
}

// setUnschedulable writes PodScheduled=False unless the pod already says exactly that.
func (s *Scheduler) setUnschedulable(ctx context.Context, pod *corev1.Pod, msg string) error {
	cond := corev1.PodCondition{
		Type: corev1.PodScheduled, Status: corev1.ConditionFalse,
		Reason: corev1.PodReasonUnschedulable, Message: msg,
	}
	for _, c := range pod.Status.Conditions {
		if c.Type == cond.Type && c.Status == cond.Status && c.Reason == cond.Reason && c.Message == cond.Message {
			return nil
		}
	}
	p := pod.DeepCopy()
	setCondition(&p.Status, cond, metav1.NewTime(s.clock.Now()))
	// With the informer's resourceVersion as precondition: a pod changed (or bound) meanwhile is
	// looked at again anyway.
	_, err := s.store.UpdateStatus(ctx, resource.Pods, p)
	if apierrors.IsConflict(err) {
		return nil
	}
	return err
}

// setCondition replaces or appends cond, moving lastTransitionTime only when the status changes.
func setCondition(st *corev1.PodStatus, cond corev1.PodCondition, now metav1.Time) {
	cond.LastProbeTime = metav1.Time{}
	for i := range st.Conditions {
		c := &st.Conditions[i]
		if c.Type != cond.Type {
			continue
		}
		cond.LastTransitionTime = c.LastTransitionTime
		if c.Status != cond.Status || cond.LastTransitionTime.IsZero() {
			cond.LastTransitionTime = now
		}
		*c = cond
		return
	}
	cond.LastTransitionTime = now
	st.Conditions = append(st.Conditions, cond)
}
