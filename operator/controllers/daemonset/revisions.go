package daemonset

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"sort"
	"strconv"

	"github.com/bosun-gitops/bosun/internal/resource"
	"github.com/bosun-gitops/bosun/operator/store"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/utils/ptr"
)

// defaultRevisionHistoryLimit is apps/v1's default for DaemonSets.
const defaultRevisionHistoryLimit = 10

// templateHash is the controller-revision-hash of a pod template: a hash of its JSON (with
// collisionCount mixed in), encoded as Kubernetes encodes it.
func templateHash(t *corev1.PodTemplateSpec, collisionCount *int32) string {
	h := fnv.New32a()
	data, _ := json.Marshal(t)
	h.Write(data)
	if collisionCount != nil {
		h.Write([]byte(strconv.FormatInt(int64(*collisionCount), 10)))
	}
	return rand.SafeEncodeString(fmt.Sprint(h.Sum32()))
}

// revisionData is what a DaemonSet ControllerRevision stores: the template as a patch.
func revisionData(ds *appsv1.DaemonSet) ([]byte, error) {
	return json.Marshal(map[string]any{"spec": map[string]any{"template": map[string]any{
		"$patch": "replace", "metadata": ds.Spec.Template.ObjectMeta, "spec": ds.Spec.Template.Spec,
	}}})
}

// syncRevisions makes sure the current template has a ControllerRevision with the highest
// revision number, prunes old unused ones beyond revisionHistoryLimit, and returns the hash.
func (dc *Controller) syncRevisions(ctx context.Context, ds *appsv1.DaemonSet) (string, error) {
	hash := templateHash(&ds.Spec.Template, ds.Status.CollisionCount)
	name := ds.Name + "-" + hash
	objs, err := dc.revisions.GetIndexer().ByIndex(byControllerIndex, string(ds.UID))
	if err != nil {
		return "", err
	}
	var revs []*appsv1.ControllerRevision
	var current *appsv1.ControllerRevision
	maxRev := int64(0)
	for _, o := range objs {
		r := o.(*appsv1.ControllerRevision)
		revs = append(revs, r)
		maxRev = max(maxRev, r.Revision)
		if r.Name == name {
			current = r
		}
	}
	switch {
	case current == nil:
		data, err := revisionData(ds)
		if err != nil {
			return "", err
		}
		labels := map[string]string{appsv1.DefaultDaemonSetUniqueLabelKey: hash}
		for k, v := range ds.Spec.Template.Labels {
			labels[k] = v
		}
		cr := &appsv1.ControllerRevision{
			ObjectMeta: metav1.ObjectMeta{Namespace: ds.Namespace, Name: name, Labels: labels,
				OwnerReferences: []metav1.OwnerReference{{APIVersion: resource.DaemonSets.APIVersion(), Kind: resource.DaemonSets.Kind,
					Name: ds.Name, UID: ds.UID, Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true)}}},
			Data:     runtime.RawExtension{Raw: data},
			Revision: maxRev + 1,
		}
		if _, err := dc.c.Store.Create(ctx, resource.ControllerRevisions, cr); err != nil && !apierrors.IsAlreadyExists(err) {
			return "", fmt.Errorf("creating controller revision %s: %w", name, err)
		}
	case current.Revision < maxRev:
		// Back to an older template (a Git revert): it becomes the newest revision.
		next := current.DeepCopy()
		next.Revision = maxRev + 1
		if _, err := dc.c.Store.Update(ctx, resource.ControllerRevisions, next); err != nil {
			return "", fmt.Errorf("updating controller revision %s: %w", name, err)
		}
	}
	return hash, dc.pruneRevisions(ctx, ds, revs, name)
}

func (dc *Controller) pruneRevisions(ctx context.Context, ds *appsv1.DaemonSet, revs []*appsv1.ControllerRevision, current string) error {
	limit := int(ptr.Deref(ds.Spec.RevisionHistoryLimit, defaultRevisionHistoryLimit))
	inUse := map[string]bool{}
	pods, _ := dc.pods.GetIndexer().ByIndex(byControllerIndex, string(ds.UID))
	for _, o := range pods {
		inUse[o.(*corev1.Pod).Labels[appsv1.DefaultDaemonSetUniqueLabelKey]] = true
	}
	var old []*appsv1.ControllerRevision
	for _, r := range revs {
		if r.Name != current && !inUse[r.Labels[appsv1.DefaultDaemonSetUniqueLabelKey]] {
			old = append(old, r)
		}
	}
	if len(old) <= limit {
		return nil
	}
	sort.Slice(old, func(i, j int) bool { return old[i].Revision < old[j].Revision })
	for _, r := range old[:len(old)-limit] {
		if _, err := dc.c.Store.Delete(ctx, resource.ControllerRevisions, r.Namespace, r.Name, store.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("deleting old controller revision %s: %w", r.Name, err)
		}
	}
	return nil
}
