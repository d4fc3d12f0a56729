package replicaset

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/bosun-gitops/bosun/internal/resource"
	"github.com/bosun-gitops/bosun/operator/controllers"
	"github.com/bosun-gitops/bosun/operator/store"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
)

func labelSet(m map[string]string) labels.Set { return labels.Set(m) }

// reconcile brings one owner's pods to spec.replicas and writes its status.
func (rc *Controller) reconcile(ctx context.Context, key string) (controllers.Result, error) {
	obj, exists, err := rc.owners.GetIndexer().GetByKey(key)
	if err != nil {
		return controllers.Result{}, err
	}
	if !exists {
		rc.expected.forget(key)
		return controllers.Result{}, nil
	}
	w, _, err := rc.kind.view(obj)
	if err != nil {
		// An invalid spec is not retried: the next spec change enqueues the owner again.
		rc.log.Warn("not reconciling", "key", key, "err", err)
		return controllers.Result{}, nil
	}
	satisfied := rc.expected.satisfied(key)

	var active []*corev1.Pod
	for _, p := range rc.podsOf(w.obj.GetNamespace(), w.obj.GetUID()) {
		if isActive(p) {
			active = append(active, p)
		}
	}
	owned, err := rc.claim(ctx, w, active)
	if err != nil {
		return controllers.Result{}, err
	}

	var manageErr error
	var deleted map[types.UID]bool
	if satisfied && w.obj.GetDeletionTimestamp() == nil {
		deleted, manageErr = rc.manage(ctx, key, w, owned)
	}
	remaining := owned[:0:0]
	for _, p := range owned {
		if !deleted[p.UID] {
			remaining = append(remaining, p)
		}
	}
	st := rc.calculateStatus(w, remaining, manageErr)
	if !statusEqual(st, w.status) {
		if _, err := rc.store.UpdateStatus(ctx, rc.kind.res, rc.kind.withStatus(w.obj, st)); err != nil && !apierrors.IsNotFound(err) {
			return controllers.Result{}, fmt.Errorf("updating status of %s %s: %w", rc.kind.res.Kind, key, err)
		}
	}
	if manageErr != nil {
		return controllers.Result{}, manageErr
	}
	var res controllers.Result
	if w.minReadySeconds > 0 && st.ReadyReplicas != st.AvailableReplicas {
		res.RequeueAfter = time.Duration(w.minReadySeconds) * time.Second
	}
	return res, nil
}

// claim adopts active orphans that match the selector and releases owned pods that no longer
// match; it returns the pods the owner controls afterwards. Before the first adoption the owner
// is read again from the store (controllers.AdoptionCheck): an owner deleted or replaced there
// while the cache still shows it adopts nothing, and the reconcile fails, so it creates no pods
// either until the cache catches up.
func (rc *Controller) claim(ctx context.Context, w *workload, pods []*corev1.Pod) ([]*corev1.Pod, error) {
	var owned []*corev1.Pod
	var errs []error
	deleting := w.obj.GetDeletionTimestamp() != nil
	check := controllers.NewAdoptionCheck(rc.store, rc.kind.res, w.obj)
	for _, p := range pods {
		matches := w.selector.Matches(labelSet(p.Labels))
		ref := metav1.GetControllerOfNoCopy(p)
		switch {
		case ref != nil && ref.UID == w.obj.GetUID():
			if matches {
				owned = append(owned, p)
				continue
			}
			if deleting {
				continue
			}
			if err := rc.release(ctx, w, p); err != nil {
				errs = append(errs, err)
			}
		case ref == nil && matches && !deleting:
			adopted, err := rc.adopt(ctx, check, w, p)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			if adopted != nil {
				owned = append(owned, adopted)
			}
		}
	}
	return owned, errors.Join(errs...)
}

func (rc *Controller) adopt(ctx context.Context, check *controllers.AdoptionCheck, w *workload, p *corev1.Pod) (*corev1.Pod, error) {
	if err := check.CanAdopt(ctx); err != nil {
		return nil, fmt.Errorf("can't adopt pod %s/%s: %w", p.Namespace, p.Name, err)
	}
	pod := p.DeepCopy()
	pod.OwnerReferences = append(pod.OwnerReferences, controllerRef(rc.kind.res, w.obj))
	out, err := rc.store.Update(ctx, resource.Pods, pod) // resourceVersion: no lost updates
	switch {
	case apierrors.IsNotFound(err):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("adopting pod %s/%s: %w", p.Namespace, p.Name, err)
	}
	rc.log.Info("adopted pod", "owner", w.obj.GetName(), "pod", p.Name)
	return out.(*corev1.Pod), nil
}

func (rc *Controller) release(ctx context.Context, w *workload, p *corev1.Pod) error {
	pod := p.DeepCopy()
	refs := pod.OwnerReferences[:0]
	for _, r := range pod.OwnerReferences {
		if r.UID != w.obj.GetUID() {
			refs = append(refs, r)
		}
	}
	pod.OwnerReferences = refs
	_, err := rc.store.Update(ctx, resource.Pods, pod)
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("releasing pod %s/%s: %w", p.Namespace, p.Name, err)
	}
	rc.log.Info("released pod", "owner", w.obj.GetName(), "pod", p.Name)
	return nil
}

// manage creates or deletes pods to reach spec.replicas; it returns the UIDs of deleted pods.
func (rc *Controller) manage(ctx context.Context, key string, w *workload, pods []*corev1.Pod) (map[types.UID]bool, error) {
	diff := len(pods) - int(w.replicas)
	switch {
	case diff < 0:
		n := min(-diff, BurstReplicas)
		rc.expected.expectCreations(key, n)
		created, err := SlowStartBatch(n, 1, func(batch int) (int, error) { return rc.createPods(ctx, w, batch) })
		if skipped := n - created; skipped > 0 {
			// These will never show up in the informer.
			rc.expected.creationObserved(key, skipped)
		}
		return nil, err
	case diff > 0:
		n := min(diff, BurstReplicas)
		victims := append([]*corev1.Pod(nil), pods...)
		sortForDeletion(victims)
		victims = victims[:n]
		keys := make([]string, len(victims))
		for i, p := range victims {
			keys[i] = p.Namespace + "/" + p.Name
		}
		rc.expected.expectDeletions(key, keys)
		return rc.deletePods(ctx, key, w, victims)
	}
	return nil, nil
}

// createPods creates n pods from the template in one store batch.
func (rc *Controller) createPods(ctx context.Context, w *workload, n int) (int, error) {
	ops := make([]store.Op, n)
	for i := range ops {
		ops[i] = store.Op{Type: store.OpCreate, Resource: resource.Pods, Object: rc.podFromTemplate(w)}
	}
	var firstErr error
	ok := 0
	for _, r := range rc.store.Batch(ctx, ops) {
		if r.Err != nil {
			if firstErr == nil {
				firstErr = r.Err
			}
			rc.rec.Eventf(w.obj, corev1.EventTypeWarning, "FailedCreate", "Error creating: %v", r.Err)
			continue
		}
		ok++
		rc.rec.Eventf(w.obj, corev1.EventTypeNormal, "SuccessfulCreate", "Created pod: %s", r.Object.GetName())
	}
	if firstErr != nil {
		return ok, fmt.Errorf("creating pods for %s %s/%s: %w", rc.kind.res.Kind, w.obj.GetNamespace(), w.obj.GetName(), firstErr)
	}
	return ok, nil
}

func (rc *Controller) podFromTemplate(w *workload) *corev1.Pod {
	t := w.template.DeepCopy()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			GenerateName: w.obj.GetName() + "-", Namespace: w.obj.GetNamespace(),
			Labels: t.Labels, Annotations: t.Annotations, Finalizers: t.Finalizers,
			OwnerReferences: []metav1.OwnerReference{controllerRef(rc.kind.res, w.obj)},
		},
		Spec: t.Spec,
	}
	return pod
}

// deletePods deletes the victims in one store batch, with a UID precondition so that a pod
// recreated under the same name is not hit.
func (rc *Controller) deletePods(ctx context.Context, key string, w *workload, victims []*corev1.Pod) (map[types.UID]bool, error) {
	ops := make([]store.Op, len(victims))
	for i, p := range victims {
		ops[i] = store.Op{Type: store.OpDelete, Resource: resource.Pods, Object: &corev1.Pod{ObjectMeta: metav1.ObjectMeta{
			Namespace: p.Namespace, Name: p.Name, UID: p.UID}}}
	}
	deleted := map[types.UID]bool{}
	var errs []error
	for i, r := range rc.store.Batch(ctx, ops) {
		p := victims[i]
		if r.Err != nil && !apierrors.IsNotFound(r.Err) {
			// Never going to be observed.
			rc.expected.deletionObserved(key, p.Namespace+"/"+p.Name)
			rc.rec.Eventf(w.obj, corev1.EventTypeWarning, "FailedDelete", "Error deleting: %v", r.Err)
			errs = append(errs, fmt.Errorf("deleting pod %s/%s: %w", p.Namespace, p.Name, r.Err))
			continue
		}
		deleted[p.UID] = true
		rc.rec.Eventf(w.obj, corev1.EventTypeNormal, "SuccessfulDelete", "Deleted pod: %s", p.Name)
	}
	return deleted, errors.Join(errs...)
}

// calculateStatus counts the owner's pods (without the ones just deleted: the status must never
// overstate what exists, as the Deployment controller decides from it).
func (rc *Controller) calculateStatus(w *workload, pods []*corev1.Pod, manageErr error) Status {
	now := rc.clock.Now()
	templateLabels := labels.SelectorFromSet(w.template.Labels)
	st := Status{Replicas: int32(len(pods)), ObservedGeneration: w.obj.GetGeneration(), Failure: w.status.Failure}
	for _, p := range pods {
		if templateLabels.Matches(labelSet(p.Labels)) {
			st.FullyLabeledReplicas++
		}
		if IsPodReady(p) {
			st.ReadyReplicas++
			if IsPodAvailable(p, w.minReadySeconds, now) {
				st.AvailableReplicas++
			}
		}
	}
	switch {
	case manageErr != nil && st.Failure == nil:
		reason := "FailedCreate"
		if len(pods) > int(w.replicas) {
			reason = "FailedDelete"
		}
		st.Failure = &Failure{Reason: reason, Message: manageErr.Error(), LastTransitionTime: metav1.NewTime(now)}
	case manageErr == nil && st.Failure != nil && len(pods) == int(w.replicas):
		st.Failure = nil
	}
	return st
}
