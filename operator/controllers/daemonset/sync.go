package daemonset

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/bosun-gitops/bosun/internal/resource"
	"github.com/bosun-gitops/bosun/operator/store"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// slowStartInitialBatch is the first batch of pod creations; batches double while they succeed.
const slowStartInitialBatch = 1

// syncNodes deletes pods and creates one pod per node in creates.
func (dc *Controller) syncNodes(ctx context.Context, key string, ds *appsv1.DaemonSet, deletes []*corev1.Pod, creates []string, hash string, now time.Time) error {
	var errs []error
	for _, p := range deletes {
		uid := p.UID
		opts := store.DeleteOptions{}
		if uid != "" {
			opts.Preconditions = &metav1.Preconditions{UID: &uid}
		}
		_, err := dc.c.Store.Delete(ctx, resource.Pods, p.Namespace, p.Name, opts)
		if err != nil && !apierrors.IsNotFound(err) {
			dc.c.Recorder.Eventf(ds, corev1.EventTypeWarning, "FailedDelete", "Error deleting: %v", err)
			errs = append(errs, fmt.Errorf("deleting pod %s/%s: %w", p.Namespace, p.Name, err))
			continue
		}
		dc.expectDeleted(key, p.Name, now)
		if err == nil {
			dc.log.Info("deleted daemon pod", "daemonset", key, "pod", p.Name, "node", TargetNode(p))
			dc.c.Recorder.Eventf(ds, corev1.EventTypeNormal, "SuccessfulDelete", "Deleted pod: %s", p.Name)
		}
	}
	created, err := slowStart(len(creates), slowStartInitialBatch, func(i int) error {
		pod := newPod(ds, creates[i], hash)
		out, err := dc.c.Store.Create(ctx, resource.Pods, pod)
		if err != nil {
			dc.c.Recorder.Eventf(ds, corev1.EventTypeWarning, "FailedCreate", "Error creating: %v", err)
			return fmt.Errorf("creating daemon pod for node %s: %w", creates[i], err)
		}
		dc.expectCreated(key, out.(*corev1.Pod), now)
		dc.c.Recorder.Eventf(ds, corev1.EventTypeNormal, "SuccessfulCreate", "Created pod: %s", out.GetName())
		return nil
	})
	if created > 0 {
		dc.log.Info("created daemon pods", "daemonset", key, "count", created)
	}
	if err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// slowStart runs fn for 0..n-1 in batches of 1, 2, 4, ... concurrent calls, stopping after the
// first batch with a failure (Kubernetes' slowStartBatch): a systematic error, such as a quota
// or an invalid template, costs one call instead of n. It returns how many calls succeeded.
func slowStart(n, initial int, fn func(i int) error) (int, error) {
	done := 0
	for batch := min(n, initial); done < n; batch = min(2*batch, n-done) {
		var wg sync.WaitGroup
		errc := make(chan error, batch)
		for i := done; i < done+batch; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := fn(i); err != nil {
					errc <- err
				}
			}()
		}
		wg.Wait()
		close(errc)
		var errs []error
		for err := range errc {
			errs = append(errs, err)
		}
		done += batch - len(errs)
		if len(errs) > 0 {
			return done, errors.Join(errs...)
		}
	}
	return done, nil
}

// newPod is the daemon pod of ds for node: the template with the revision labels, the
// controller reference, the automatic daemon tolerations and the affinity pinning it to node.
func newPod(ds *appsv1.DaemonSet, node, hash string) *corev1.Pod {
	t := ds.Spec.Template.DeepCopy()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: ds.Namespace, GenerateName: ds.Name + "-",
			Labels: map[string]string{}, Annotations: t.Annotations,
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion: resource.DaemonSets.APIVersion(), Kind: resource.DaemonSets.Kind,
				Name: ds.Name, UID: ds.UID, Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true),
			}},
		},
		Spec: t.Spec,
	}
	for k, v := range t.Labels {
		pod.Labels[k] = v
	}
	pod.Labels[appsv1.DefaultDaemonSetUniqueLabelKey] = hash
	pod.Labels[appsv1.DeprecatedTemplateGeneration] = fmt.Sprint(ds.Generation)
	pod.Spec.Affinity = pinnedAffinity(pod.Spec.Affinity, node)
	pod.Spec.Tolerations = withDaemonTolerations(pod.Spec.Tolerations, pod.Spec.HostNetwork)
	return pod
}
