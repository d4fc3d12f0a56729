package gc

import (
	"context"
	"sort"

	"github.com/bosun-gitops/bosun/internal/resource"
	"github.com/bosun-gitops/bosun/operator/store"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// runPodGC deletes finished pods beyond the threshold and pods of vanished nodes, every
// PodGCPeriod on the context's clock.
func (gc *Collector) runPodGC(ctx context.Context) {
	ticker := gc.c.Clock.NewTicker(gc.opts.PodGCPeriod)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C():
			gc.collectPods(ctx)
		}
	}
}

func (gc *Collector) collectPods(ctx context.Context) {
	var pods, all []*corev1.Pod
	for _, o := range gc.pods.GetStore().List() {
		p := o.(*corev1.Pod)
		all = append(all, p)
		if p.DeletionTimestamp == nil {
			pods = append(pods, p)
		}
	}
	for _, p := range TerminatedPodsToDelete(pods, gc.opts.TerminatedPodThreshold) {
		if gc.deletePod(ctx, p, nil) {
			gc.log.Info("deleted terminated pod", "pod", p.Namespace+"/"+p.Name, "phase", p.Status.Phase)
		}
	}
	// Pods of a node that no longer exists, terminating ones included: no agent will stop them,
	// so they are deleted at once (forced, as Kubernetes' pod GC does).
	force := int64(0)
	for _, p := range all {
		if p.Spec.NodeName == "" {
			continue
		}
		if _, exists, _ := gc.nodes.GetStore().GetByKey(p.Spec.NodeName); exists {
			continue
		}
		// The cache may not have a node that just joined: only the store's NotFound counts.
		if _, err := gc.c.Store.Get(ctx, resource.Nodes, "", p.Spec.NodeName); !apierrors.IsNotFound(err) {
			continue
		}
		if gc.deletePod(ctx, p, &force) {
			gc.log.Info("deleted orphaned pod", "pod", p.Namespace+"/"+p.Name, "node", p.Spec.NodeName)
			gc.c.Recorder.Eventf(p, corev1.EventTypeNormal, "PodGCOrphaned", "Deleted pod bound to node %s, which no longer exists", p.Spec.NodeName)
		}
	}
}

// deletePod deletes p (if it is still the same pod) with the grace period given, nil = its own.
func (gc *Collector) deletePod(ctx context.Context, p *corev1.Pod, grace *int64) bool {
	uid := p.UID
	_, err := gc.c.Store.Delete(ctx, resource.Pods, p.Namespace, p.Name,
		store.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}, GracePeriodSeconds: grace})
	if err != nil && !apierrors.IsNotFound(err) {
		gc.log.Warn("deleting pod", "pod", p.Namespace+"/"+p.Name, "err", err)
		return false
	}
	return err == nil
}

// TerminatedPodsToDelete returns the Succeeded and Failed pods beyond threshold, oldest first
// (by creation time, then namespace and name); none when threshold is negative.
func TerminatedPodsToDelete(pods []*corev1.Pod, threshold int) []*corev1.Pod {
	if threshold < 0 {
		return nil
	}
	var done []*corev1.Pod
	for _, p := range pods {
		if p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			done = append(done, p)
		}
	}
	if len(done) <= threshold {
		return nil
	}
	sort.Slice(done, func(i, j int) bool {
		a, b := done[i], done[j]
		if !a.CreationTimestamp.Equal(&b.CreationTimestamp) {
			return a.CreationTimestamp.Before(&b.CreationTimestamp)
		}
		if a.Namespace != b.Namespace {
			return a.Namespace < b.Namespace
		}
		return a.Name < b.Name
	})
	return done[:len(done)-threshold]
}
