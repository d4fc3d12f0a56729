package pods

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// minStopGrace is what is left for SIGTERM after a preStop hook used up the grace period (the
// kubelet's minimum).
const minStopGrace = 2 * time.Second

// killContainer stops one running container (preStop hook, SIGTERM, grace, SIGKILL).
func (w *podWorker) killContainer(ctx context.Context, pod *corev1.Pod, r *ctrRun, grace time.Duration, message string) {
	w.event(pod, corev1.EventTypeNormal, "Killing", "%s", message)
	c, _ := containerByName(pod, r.name)
	grace = w.runPreStop(ctx, pod, c, r, grace)
	if err := w.m.cfg.Runtime.StopContainer(ctx, r.id, grace); err != nil {
		w.log.Error("stopping container", "container", r.name, "err", err)
	}
	if st, err := w.m.cfg.Runtime.ContainerStatus(ctx, r.id); err == nil {
		r.status = st
	}
	r.ready = false
}

// runPreStop runs the container's preStop hook (exec or HTTP GET) within the grace period and
// returns what is left of it for SIGTERM.
func (w *podWorker) runPreStop(ctx context.Context, pod *corev1.Pod, c *corev1.Container, r *ctrRun, grace time.Duration) time.Duration {
	if c == nil || c.Lifecycle == nil || c.Lifecycle.PreStop == nil || r.status.State != StateRunning {
		return grace
	}
	start := w.m.clock.Now()
	h := c.Lifecycle.PreStop
	var err error
	switch {
	case h.Exec != nil:
		var code int
		var out []byte
		code, out, err = w.m.cfg.Runtime.Exec(ctx, r.id, h.Exec.Command, grace)
		if err == nil && code != 0 {
			err = fmt.Errorf("command %q exited with %d: %s", h.Exec.Command, code, out)
		}
	case h.HTTPGet != nil:
		err = httpGet(ctx, c, h.HTTPGet, w.podIP, grace)
	case h.Sleep != nil:
		w.m.clock.Sleep(time.Duration(h.Sleep.Seconds) * time.Second)
	}
	if err != nil {
		w.event(pod, corev1.EventTypeWarning, "FailedPreStopHook", "PreStopHook failed: %v", err)
	}
	left := grace - w.m.clock.Since(start)
	if left < minStopGrace {
		left = minStopGrace
	}
	return left
}

// killAll stops every running container of the pod in parallel.
func (w *podWorker) killAll(ctx context.Context, pod *corev1.Pod, grace time.Duration, format string) {
	var wg sync.WaitGroup
	for _, r := range w.ctrs {
		if r.id == "" || r.status.State == StateExited {
			continue
		}
		wg.Add(1)
		go func(r *ctrRun) {
			defer wg.Done()
			w.killContainer(ctx, pod, r, grace, fmt.Sprintf(format, r.name))
		}(r)
	}
	wg.Wait()
	for _, r := range w.ctrs {
		r.waiting = nil // nothing restarts any more
	}
}

// terminate stops the pod for good: containers stopped gracefully (in parallel), then removed,
// then the network torn down and the pod's directory deleted. It finds the containers through
// the runtime's labels, so it also cleans up pods deleted while the agent was down.
func (w *podWorker) terminate(ctx context.Context, pod *corev1.Pod) error {
	all, err := w.m.cfg.Runtime.ListContainers(ctx)
	if err != nil {
		return fmt.Errorf("listing containers: %w", err)
	}
	known := map[string]bool{}
	for _, r := range w.ctrs {
		known[r.id] = true
	}
	for _, st := range all {
		if st.Labels[LabelPodUID] != string(w.uid) || known[st.ID] {
			continue
		}
		name := st.Labels[LabelContainerName]
		r := &ctrRun{name: name, id: st.ID, status: st, probes: map[probeKind]*probeState{}}
		if _, ok := w.ctrs[name]; ok {
			name = st.ID
		}
		w.ctrs[name] = r
	}
	for _, r := range w.ctrs {
		if r.id != "" && !r.startFailed {
			if st, err := w.m.cfg.Runtime.ContainerStatus(ctx, r.id); err == nil {
				r.status = st
			}
		}
	}
	w.killAll(ctx, pod, gracePeriod(pod), "Stopping container %s")
	var errs []error
	for _, r := range w.ctrs {
		if r.id == "" {
			continue
		}
		if err := w.m.cfg.Runtime.RemoveContainer(ctx, r.id); err != nil {
			errs = append(errs, fmt.Errorf("removing container %s: %w", r.id, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if !pod.Spec.HostNetwork {
		if err := w.m.cfg.Network.TeardownPod(ctx, podRef(pod)); err != nil {
			return fmt.Errorf("tearing down pod network: %w", err)
		}
	}
	w.netReady = false
	if err := w.volumes.teardown(); err != nil {
		return err
	}
	w.log.Info("pod cleaned up")
	return nil
}
