package machine

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/bosun-gitops/bosun/bootstrap"
	"github.com/bosun-gitops/bosun/internal/resource"
	"github.com/bosun-gitops/bosun/operator/store"
	bosunv1 "github.com/bosun-gitops/bosun/repo-layout/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// retire drains and removes a deleted machine: cordon, evict pods, wait for them to stop, stop
// and remove the agent (packages stay), delete the Node, mark the Machine Retired and drop the
// finalizer. Each part is idempotent; a failure is retried with backoff.
func (mc *Controller) retire(ctx context.Context, name string, _ bool) error {
	obj, exists, err := mc.machines.GetStore().GetByKey(name)
	if err != nil || !exists {
		return err
	}
	m := obj.(*bosunv1.Machine).DeepCopy()
	log := mc.log.With("machine", name)
	if m.Status.Phase != bosunv1.MachineRetired {
		if err := mc.drainAndRemove(ctx, m); err != nil {
			return mc.recordRetireFailure(ctx, m, err)
		}
		if _, err := mc.updateStatus(ctx, name, func(s *bosunv1.MachineStatus) {
			s.Phase, s.Step, s.LastError, s.NextRetry = bosunv1.MachineRetired, "", "", nil
			setCondition(s, ConditionNodeReady, metav1.ConditionFalse, "Retired", "the node was drained and removed")
		}); err != nil {
			return err
		}
		mc.c.Recorder.Eventf(m, corev1.EventTypeNormal, "Retired", "machine retired: node drained and deleted, agent removed (packages kept)")
		log.Info("machine retired")
	}
	return mc.updateMachine(ctx, name, func(m *bosunv1.Machine) bool {
		i := slices.Index(m.Finalizers, Finalizer)
		if i < 0 {
			return false
		}
		m.Finalizers = slices.Delete(m.Finalizers, i, i+1)
		return true
	})
}

func (mc *Controller) drainAndRemove(ctx context.Context, m *bosunv1.Machine) error {
	name := m.Name
	_, _ = mc.updateStatus(ctx, name, func(s *bosunv1.MachineStatus) { s.Phase, s.Step = bosunv1.MachineDraining, "cordon" })
	if err := mc.cordon(ctx, name); err != nil {
		return err
	}
	_, _ = mc.updateStatus(ctx, name, func(s *bosunv1.MachineStatus) { s.Step = "evict" })
	if err := mc.evict(ctx, m); err != nil {
		return err
	}
	// The agent stops the evicted pods' containers; wait for that before stopping the agent.
	_, _ = mc.updateStatus(ctx, name, func(s *bosunv1.MachineStatus) { s.Step = "teardown" })
	client, err := mc.dial(ctx, m)
	if err != nil {
		return err
	}
	defer client.Close()
	p := &progress{ctx: ctx, mc: mc, m: m, name: name}
	if err := mc.waitContainersGone(ctx, client, p); err != nil {
		return err
	}
	if err := bootstrap.Teardown(ctx, client, mc.o.Layout, p); err != nil {
		return err
	}
	_, err = mc.c.Store.Delete(ctx, resource.Nodes, "", name, store.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("deleting node %s: %w", name, err)
	}
	return nil
}

func (mc *Controller) cordon(ctx context.Context, name string) error {
	for range 5 {
		obj, err := mc.c.Store.Get(ctx, resource.Nodes, "", name)
		if apierrors.IsNotFound(err) {
			return nil
		}
		if err != nil {
			return err
		}
		n := obj.(*corev1.Node).DeepCopy()
		if n.Spec.Unschedulable {
			return nil
		}
		n.Spec.Unschedulable = true
		_, err = mc.c.Store.Update(ctx, resource.Nodes, n)
		if apierrors.IsConflict(err) {
			continue
		}
		if err != nil {
			return fmt.Errorf("cordoning node %s: %w", name, err)
		}
		return nil
	}
	return fmt.Errorf("cordoning node %s: too many conflicts", name)
}

// evict deletes the node's pods (the agent stops their containers gracefully; their controllers
// recreate them elsewhere) and waits until none is left.
func (mc *Controller) evict(ctx context.Context, m *bosunv1.Machine) error {
	ctx, cancel := context.WithTimeout(ctx, mc.o.DrainTimeout)
	defer cancel()
	evicted := map[string]bool{}
	for {
		var left []string
		for _, obj := range mc.pods.GetStore().List() {
			pod := obj.(*corev1.Pod)
			if pod.Spec.NodeName != m.Name {
				continue
			}
			key := pod.Namespace + "/" + pod.Name
			left = append(left, key)
			if evicted[string(pod.UID)] {
				continue
			}
			uid := pod.UID
			_, err := mc.c.Store.Delete(ctx, resource.Pods, pod.Namespace, pod.Name,
				store.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}})
			if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
				return fmt.Errorf("evicting pod %s: %w", key, err)
			}
			evicted[string(uid)] = true
			mc.c.Recorder.Eventf(m, corev1.EventTypeNormal, "Evict", "evicted pod %s from node %s", key, m.Name)
		}
		if len(left) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("draining node %s: pods still present: %s", m.Name, strings.Join(left, ", "))
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// waitContainersGone waits until containerd on the machine has no Bosun task left.
func (mc *Controller) waitContainersGone(ctx context.Context, r bootstrap.Remote, p *progress) error {
	ctx, cancel := context.WithTimeout(ctx, mc.o.DrainTimeout)
	defer cancel()
	const cmd = `command -v ctr >/dev/null 2>&1 || exit 0; ctr -n bosun tasks ls -q 2>/dev/null | grep -c . || true`
	for {
		out, err := r.Run(ctx, cmd, nil)
		n := strings.TrimSpace(string(out))
		if err == nil && (n == "" || n == "0") {
			p.Output("teardown", "no containers left on the machine", nil)
			return nil
		}
		select {
		case <-ctx.Done():
			return errors.Join(fmt.Errorf("teardown: %s containers still running on the machine after the pods were evicted", n), err)
		case <-time.After(time.Second):
		}
	}
}

func (mc *Controller) recordRetireFailure(ctx context.Context, m *bosunv1.Machine, err error) error {
	if errors.Is(err, context.Canceled) {
		return err
	}
	d := mc.o.RetryBase << min(m.Status.Failures, 16)
	if d > mc.o.RetryMax || d <= 0 {
		d = mc.o.RetryMax
	}
	next := metav1.NewTime(mc.c.Clock.Now().Add(d))
	_, _ = mc.updateStatus(ctx, m.Name, func(s *bosunv1.MachineStatus) {
		s.LastError, s.NextRetry, s.Failures = err.Error(), &next, s.Failures+1
	})
	mc.c.Recorder.Eventf(m, corev1.EventTypeWarning, "RetireFailed", "%v (retrying at %s)", err, next.Format(time.RFC3339))
	mc.block(m.Name, "retire", next.Time)
	return err
}
