package pods

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// statusMinInterval rate-limits status writes of one pod.
const statusMinInterval = time.Second

// mt converts to the API's time, at the second precision the API keeps, so that a status read
// back from the API compares equal to the one written.
func mt(t time.Time) metav1.Time { return metav1.NewTime(t.Truncate(time.Second)) }

func mtp(t time.Time) *metav1.Time {
	m := mt(t)
	return &m
}

// terminatedState is the API's view of an exited container.
func terminatedState(st ContainerStatus) *corev1.ContainerStateTerminated {
	reason := st.Reason
	switch {
	case st.OOMKilled:
		reason = "OOMKilled"
	case reason != "":
	case st.ExitCode == 0:
		reason = "Completed"
	default:
		reason = "Error"
	}
	return &corev1.ContainerStateTerminated{
		ExitCode:    st.ExitCode,
		Reason:      reason,
		Message:     st.Message,
		StartedAt:   mt(st.StartedAt),
		FinishedAt:  mt(st.FinishedAt),
		ContainerID: "containerd://" + st.ID,
	}
}

// containerStatus renders one container's status.
func (w *podWorker) containerStatus(c *corev1.Container, r *ctrRun, initPending bool) corev1.ContainerStatus {
	cs := corev1.ContainerStatus{Name: c.Name, Image: c.Image}
	if r == nil {
		reason := "ContainerCreating"
		if initPending {
			reason = "PodInitializing"
		}
		cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: reason}
		cs.Started = new(bool)
		return cs
	}
	cs.ImageID = r.imageID
	cs.RestartCount = r.restartCount
	cs.Ready = r.ready && r.id != "" && r.status.State == StateRunning
	started := r.started && r.id != "" && r.status.State == StateRunning
	cs.Started = &started
	if r.id != "" {
		cs.ContainerID = "containerd://" + r.id
	}
	if r.last != nil {
		cs.LastTerminationState.Terminated = r.last
	}
	switch {
	case r.id != "" && r.status.State == StateRunning:
		cs.State.Running = &corev1.ContainerStateRunning{StartedAt: mt(r.status.StartedAt)}
	case r.waiting != nil:
		cs.State.Waiting = r.waiting.DeepCopy()
		if r.exited() {
			cs.LastTerminationState.Terminated = terminatedState(r.status)
		}
	case r.exited():
		cs.State.Terminated = terminatedState(r.status)
	case r.id != "":
		cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}
	default:
		reason := "ContainerCreating"
		if initPending && !r.init {
			reason = "PodInitializing"
		}
		cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: reason}
	}
	return cs
}

// buildStatus computes the pod's status from the worker's view of its containers.
func (w *podWorker) buildStatus(pod *corev1.Pod) corev1.PodStatus {
	now := w.m.clock.Now()
	st := corev1.PodStatus{
		QOSClass:  pod.Status.QOSClass,
		StartTime: w.startTime,
		HostIP:    w.m.cfg.NodeIP,
		PodIP:     w.podIP,
	}
	if st.HostIP != "" {
		st.HostIPs = []corev1.HostIP{{IP: st.HostIP}}
	}
	if st.PodIP != "" {
		st.PodIPs = []corev1.PodIP{{IP: st.PodIP}}
	}
	initPending := !w.initDone
	for i := range pod.Spec.InitContainers {
		c := &pod.Spec.InitContainers[i]
		cs := w.containerStatus(c, w.ctrs[c.Name], false)
		if w.initDone && cs.State.Terminated == nil && cs.State.Running == nil && w.ctrs[c.Name] == nil {
			// Adopted pods whose init containers are gone: they completed.
			cs.State = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{Reason: "Completed"}}
			cs.State.Waiting = nil
		}
		st.InitContainerStatuses = append(st.InitContainerStatuses, cs)
	}
	for i := range pod.Spec.Containers {
		c := &pod.Spec.Containers[i]
		st.ContainerStatuses = append(st.ContainerStatuses, w.containerStatus(c, w.ctrs[c.Name], initPending))
	}
	st.Phase = podPhase(&pod.Spec, st.InitContainerStatuses, st.ContainerStatuses)
	if w.terminal != "" {
		st.Phase = w.terminal
	} else if st.Phase == corev1.PodSucceeded || st.Phase == corev1.PodFailed {
		w.terminal = st.Phase
	}
	if pod.DeletionTimestamp != nil && st.Phase == corev1.PodRunning && !anyRunning(st.ContainerStatuses) {
		st.Phase = corev1.PodFailed
	}
	st.Conditions = w.conditions(pod, &st, now)
	return st
}

func anyRunning(statuses []corev1.ContainerStatus) bool {
	for _, cs := range statuses {
		if cs.State.Running != nil {
			return true
		}
	}
	return false
}

// podPhase is the kubelet's getPhase: Pending until initialized and every container started,
// Running while something runs or will be restarted, Succeeded/Failed when all containers
// terminated for good.
func podPhase(spec *corev1.PodSpec, initStatuses, statuses []corev1.ContainerStatus) corev1.PodPhase {
	byName := func(list []corev1.ContainerStatus, name string) (corev1.ContainerStatus, bool) {
		for _, cs := range list {
			if cs.Name == name {
				return cs, true
			}
		}
		return corev1.ContainerStatus{}, false
	}
	pendingInit, failedInit := 0, 0
	for _, c := range spec.InitContainers {
		cs, ok := byName(initStatuses, c.Name)
		switch {
		case !ok:
			pendingInit++
		case cs.State.Running != nil:
			pendingInit++
		case cs.State.Terminated != nil:
			if cs.State.Terminated.ExitCode != 0 {
				failedInit++
			}
		case cs.State.Waiting != nil:
			if t := cs.LastTerminationState.Terminated; t != nil {
				if t.ExitCode != 0 {
					failedInit++
				}
			} else {
				pendingInit++
			}
		default:
			pendingInit++
		}
	}
	unknown, running, waiting, stopped, succeeded := 0, 0, 0, 0, 0
	for _, c := range spec.Containers {
		cs, ok := byName(statuses, c.Name)
		switch {
		case !ok:
			unknown++
		case cs.State.Running != nil:
			running++
		case cs.State.Terminated != nil:
			stopped++
			if cs.State.Terminated.ExitCode == 0 {
				succeeded++
			}
		case cs.State.Waiting != nil:
			if cs.LastTerminationState.Terminated != nil {
				stopped++
			} else {
				waiting++
			}
		default:
			unknown++
		}
	}
	if failedInit > 0 && spec.RestartPolicy == corev1.RestartPolicyNever {
		return corev1.PodFailed
	}
	switch {
	case pendingInit > 0, failedInit > 0:
		return corev1.PodPending
	case waiting > 0:
		return corev1.PodPending
	case running > 0 && unknown == 0:
		return corev1.PodRunning
	case running == 0 && stopped > 0 && unknown == 0:
		if spec.RestartPolicy == corev1.RestartPolicyAlways {
			return corev1.PodRunning
		}
		if stopped == succeeded {
			return corev1.PodSucceeded
		}
		if spec.RestartPolicy == corev1.RestartPolicyNever {
			return corev1.PodFailed
		}
		return corev1.PodRunning
	}
	return corev1.PodPending
}

// conditions computes Initialized, ContainersReady and Ready (keeping PodScheduled and other
// conditions the agent does not own), with transition times kept while a status holds.
func (w *podWorker) conditions(pod *corev1.Pod, st *corev1.PodStatus, now time.Time) []corev1.PodCondition {
	var notInit, notReady []string
	for _, cs := range st.InitContainerStatuses {
		if t := cs.State.Terminated; t == nil || t.ExitCode != 0 {
			notInit = append(notInit, cs.Name)
		}
	}
	if w.initDone {
		notInit = nil
	}
	for _, cs := range st.ContainerStatuses {
		if !cs.Ready {
			notReady = append(notReady, cs.Name)
		}
	}
	initialized := corev1.PodCondition{Type: corev1.PodInitialized, Status: corev1.ConditionTrue}
	if len(notInit) > 0 {
		initialized.Status, initialized.Reason = corev1.ConditionFalse, "ContainersNotInitialized"
		initialized.Message = fmt.Sprintf("containers with incomplete status: [%s]", strings.Join(notInit, " "))
	}
	ready := corev1.PodCondition{Type: corev1.ContainersReady, Status: corev1.ConditionTrue}
	switch {
	case st.Phase == corev1.PodSucceeded || st.Phase == corev1.PodFailed:
		ready.Status, ready.Reason = corev1.ConditionFalse, "PodCompleted"
	case len(notReady) > 0:
		ready.Status, ready.Reason = corev1.ConditionFalse, "ContainersNotReady"
		ready.Message = fmt.Sprintf("containers with unready status: [%s]", strings.Join(notReady, " "))
	}
	podReady := ready
	podReady.Type = corev1.PodReady
	own := []corev1.PodCondition{initialized, ready, podReady}

	previous := w.apiStatus(pod).Conditions
	var out []corev1.PodCondition
	ownTypes := map[corev1.PodConditionType]bool{}
	for _, c := range own {
		ownTypes[c.Type] = true
		c.LastTransitionTime = mt(now)
		for _, p := range previous {
			if p.Type == c.Type && p.Status == c.Status {
				c.LastTransitionTime = p.LastTransitionTime
			}
		}
		out = append(out, c)
	}
	for _, p := range pod.Status.Conditions {
		if !ownTypes[p.Type] {
			out = append(out, p)
		}
	}
	order := map[corev1.PodConditionType]int{corev1.PodScheduled: 0, corev1.PodInitialized: 1, corev1.ContainersReady: 2, corev1.PodReady: 3}
	sort.SliceStable(out, func(i, j int) bool {
		oi, ok := order[out[i].Type]
		if !ok {
			oi = 9
		}
		oj, ok := order[out[j].Type]
		if !ok {
			oj = 9
		}
		return oi < oj
	})
	return out
}

// agentConditions are the pod conditions the agent computes; others (PodScheduled, readiness
// gates) belong to whoever set them.
var agentConditions = map[corev1.PodConditionType]bool{
	corev1.PodInitialized: true, corev1.ContainersReady: true, corev1.PodReady: true,
}

// agentOwned is the part of a pod status that the agent asserts.
func agentOwned(st *corev1.PodStatus) corev1.PodStatus {
	out := corev1.PodStatus{
		Phase: st.Phase, HostIP: st.HostIP, HostIPs: st.HostIPs, PodIP: st.PodIP, PodIPs: st.PodIPs,
		StartTime: st.StartTime, InitContainerStatuses: st.InitContainerStatuses, ContainerStatuses: st.ContainerStatuses,
	}
	for _, c := range st.Conditions {
		if agentConditions[c.Type] {
			out.Conditions = append(out.Conditions, c)
		}
	}
	return out
}

// apiStatus is the pod status the API holds as far as the worker knows: the informer's copy, or
// what the worker last wrote while that copy is still the one the write replaced.
func (w *podWorker) apiStatus(pod *corev1.Pod) *corev1.PodStatus {
	if w.lastWritten != nil && pod.ResourceVersion == w.writtenOver {
		return w.lastWritten
	}
	return &pod.Status
}

// updateStatus writes the pod's status when it differs from what the API holds, at most once per
// statusMinInterval. Like the kubelet's status manager it compares with the API's copy, not with
// what it wrote last, so a status changed behind its back (the node lifecycle controller marks the
// pods of an unreachable node not ready) is written back at the next sync, which comes with the
// informer's update or at the latest after resyncPeriod.
func (w *podWorker) updateStatus(ctx context.Context, pod *corev1.Pod) {
	st := w.buildStatus(pod)
	w.mu.Lock()
	w.phase = st.Phase
	w.mu.Unlock()
	api := agentOwned(w.apiStatus(pod))
	if equality.Semantic.DeepEqual(api, agentOwned(&st)) {
		return
	}
	now := w.m.clock.Now()
	if !w.lastWriteAt.IsZero() && now.Before(w.lastWriteAt.Add(statusMinInterval)) {
		w.wakeAt(w.lastWriteAt.Add(statusMinInterval))
		return
	}
	out := pod.DeepCopy()
	out.Status = st
	began := w.m.clock.Now()
	err := w.m.cfg.Status.UpdatePodStatus(ctx, out)
	w.m.cfg.Metrics.observe(opStatusUpdate, w.m.clock.Since(began))
	if err != nil {
		w.log.Warn("writing pod status", "err", err)
		w.wakeAt(now.Add(statusMinInterval))
		return
	}
	if w.lastWritten != nil && !equality.Semantic.DeepEqual(api, agentOwned(w.lastWritten)) {
		w.log.Info("the pod's status was changed by someone else; wrote the agent's back", "phase", st.Phase)
	}
	w.lastWritten = &st
	w.writtenOver = pod.ResourceVersion
	w.lastWriteAt = now
	if st.Phase == corev1.PodRunning && !w.startTimed {
		w.startTimed = true
		w.m.cfg.Metrics.podStart.Observe(w.m.clock.Since(w.seen).Seconds())
	}
}
