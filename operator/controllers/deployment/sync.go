package deployment

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/bosun-gitops/bosun/internal/resource"
	"github.com/bosun-gitops/bosun/operator/controllers"
	"github.com/bosun-gitops/bosun/operator/controllers/replicaset"
	"github.com/bosun-gitops/bosun/operator/store"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
)

// Annotations the controller keeps on Deployments and ReplicaSets (Kubernetes' names).
const (
	RevisionAnnotation        = "deployment.kubernetes.io/revision"
	RevisionHistoryAnnotation = "deployment.kubernetes.io/revision-history"
	DesiredReplicasAnnotation = "deployment.kubernetes.io/desired-replicas"
	MaxReplicasAnnotation     = "deployment.kubernetes.io/max-replicas"
)

// Condition reasons (Kubernetes' names).
const (
	ReasonNewRSAvailable     = "NewReplicaSetAvailable"
	ReasonRSUpdated          = "ReplicaSetUpdated"
	ReasonNewRSCreated       = "NewReplicaSetCreated"
	ReasonFoundNewRS         = "FoundNewReplicaSet"
	ReasonFailedRSCreate     = "ReplicaSetCreateError"
	ReasonTimedOut           = "ProgressDeadlineExceeded"
	ReasonPaused             = "DeploymentPaused"
	ReasonResumed            = "DeploymentResumed"
	ReasonMinimumAvailable   = "MinimumReplicasAvailable"
	ReasonMinimumUnavailable = "MinimumReplicasUnavailable"
)

// withDefaults fills the fields the API server would default for objects written without them.
func withDefaults(d *appsv1.Deployment) {
	s := &d.Spec
	if s.Replicas == nil {
		s.Replicas = ptr.To[int32](1)
	}
	if s.Strategy.Type == "" {
		s.Strategy.Type = appsv1.RollingUpdateDeploymentStrategyType
	}
	if s.Strategy.Type == appsv1.RollingUpdateDeploymentStrategyType {
		if s.Strategy.RollingUpdate == nil {
			s.Strategy.RollingUpdate = &appsv1.RollingUpdateDeployment{}
		}
		quarter := intstr.FromString("25%")
		if s.Strategy.RollingUpdate.MaxSurge == nil {
			s.Strategy.RollingUpdate.MaxSurge = &quarter
		}
		if s.Strategy.RollingUpdate.MaxUnavailable == nil {
			s.Strategy.RollingUpdate.MaxUnavailable = &quarter
		}
	}
	if s.RevisionHistoryLimit == nil {
		s.RevisionHistoryLimit = ptr.To[int32](10)
	}
	if s.ProgressDeadlineSeconds == nil {
		s.ProgressDeadlineSeconds = ptr.To[int32](600)
	}
}

// reconcile is one pass of Kubernetes' syncDeployment.
func (dc *Controller) reconcile(ctx context.Context, key string) (controllers.Result, error) {
	obj, exists, err := dc.deployments.GetIndexer().GetByKey(key)
	if err != nil || !exists {
		return controllers.Result{}, err
	}
	d := obj.(*appsv1.Deployment).DeepCopy()
	withDefaults(d)
	if !dc.cacheCurrent(d.Namespace) {
		// A ReplicaSet write in this namespace is not in the cache yet. Its event re-enqueues only
		// the Deployment that owns it, so look again shortly: otherwise every other Deployment of
		// the namespace that arrived meanwhile would wait for an unrelated event.
		return controllers.Result{RequeueAfter: 100 * time.Millisecond}, nil
	}
	sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	if err != nil || sel.Empty() {
		dc.rec.Eventf(d, corev1.EventTypeWarning, "SelectingAll", "This deployment is selecting all pods. A non-empty selector is required.")
		if d.Status.ObservedGeneration < d.Generation {
			d.Status.ObservedGeneration = d.Generation
			_, err := dc.store.UpdateStatus(ctx, resource.Deployments, d)
			return controllers.Result{}, ignoreNotFound(err)
		}
		return controllers.Result{}, nil
	}
	rsList, err := dc.claimReplicaSets(ctx, d, sel)
	if err != nil {
		return controllers.Result{}, err
	}
	s := &syncer{dc: dc, d: d, stored: *d.Status.DeepCopy()}
	switch {
	case d.DeletionTimestamp != nil:
		err = s.syncStatusOnly(ctx, rsList)
	default:
		if err = s.checkPausedConditions(ctx); err != nil {
			break
		}
		switch {
		case d.Spec.Paused:
			err = s.sync(ctx, rsList)
		case s.isScalingEvent(rsList):
			err = s.sync(ctx, rsList)
		case d.Spec.Strategy.Type == appsv1.RecreateDeploymentStrategyType:
			err = s.rolloutRecreate(ctx, rsList)
		default:
			err = s.rolloutRolling(ctx, rsList)
		}
	}
	return controllers.Result{RequeueAfter: s.requeueAfter}, ignoreNotFound(err)
}

func ignoreNotFound(err error) error {
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

// claimReplicaSets returns the ReplicaSets d controls, adopting matching orphans and releasing
// owned ones that no longer match. Before the first adoption d is read again from the store
// (controllers.AdoptionCheck): a Deployment deleted or replaced there while the cache still
// shows it adopts nothing.
func (dc *Controller) claimReplicaSets(ctx context.Context, d *appsv1.Deployment, sel labels.Selector) ([]*appsv1.ReplicaSet, error) {
	var out []*appsv1.ReplicaSet
	var errs []error
	check := controllers.NewAdoptionCheck(dc.store, resource.Deployments, d)
	for _, idx := range []string{string(d.UID), replicaset.OrphanIndexKey(d.Namespace)} {
		objs, _ := dc.replicaSets.GetIndexer().ByIndex(replicaset.ControllerIndex, idx)
		for _, o := range objs {
			rs := o.(*appsv1.ReplicaSet)
			if rs.Namespace != d.Namespace {
				continue
			}
			matches := sel.Matches(labels.Set(rs.Labels))
			owned := metav1.GetControllerOfNoCopy(rs) != nil
			switch {
			case owned && matches:
				out = append(out, rs)
			case owned && d.DeletionTimestamp == nil:
				cp := rs.DeepCopy()
				refs := cp.OwnerReferences[:0]
				for _, r := range cp.OwnerReferences {
					if r.UID != d.UID {
						refs = append(refs, r)
					}
				}
				cp.OwnerReferences = refs
				if _, err := dc.store.Update(ctx, resource.ReplicaSets, cp); ignoreNotFound(err) != nil {
					errs = append(errs, fmt.Errorf("releasing replica set %s: %w", rs.Name, err))
				}
			case !owned && matches && d.DeletionTimestamp == nil && rs.DeletionTimestamp == nil:
				if err := check.CanAdopt(ctx); err != nil {
					errs = append(errs, fmt.Errorf("can't adopt replica set %s: %w", rs.Name, err))
					continue
				}
				cp := rs.DeepCopy()
				cp.OwnerReferences = append(cp.OwnerReferences, controllerRef(d))
				got, err := dc.store.Update(ctx, resource.ReplicaSets, cp)
				if err != nil {
					if ignoreNotFound(err) != nil {
						errs = append(errs, fmt.Errorf("adopting replica set %s: %w", rs.Name, err))
					}
					continue
				}
				dc.wrote(got)
				out = append(out, got.(*appsv1.ReplicaSet))
			}
		}
	}
	return out, errors.Join(errs...)
}

func controllerRef(d *appsv1.Deployment) metav1.OwnerReference {
	return metav1.OwnerReference{APIVersion: "apps/v1", Kind: "Deployment", Name: d.Name, UID: d.UID,
		Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true)}
}

// syncer holds one reconcile's Deployment as it is updated.
type syncer struct {
	dc           *Controller
	d            *appsv1.Deployment
	stored       appsv1.DeploymentStatus // the status as last read or written
	requeueAfter time.Duration
}

// replicas of a ReplicaSet, defaulted.
func replicas(rs *appsv1.ReplicaSet) int32 {
	if rs == nil {
		return 0
	}
	return ptr.Deref(rs.Spec.Replicas, 1)
}

// state reads a ReplicaSet for the rollout arithmetic, conservatively: its status may lag its
// spec, and a scaled-down ReplicaSet keeps at most spec available pods (the RS controller deletes
// unavailable pods first).
func state(rs *appsv1.ReplicaSet) rsState {
	if rs == nil {
		return rsState{}
	}
	st := rsState{Spec: replicas(rs), Pods: max(replicas(rs), rs.Status.Replicas), Available: rs.Status.AvailableReplicas}
	if rs.Status.ObservedGeneration < rs.Generation {
		st.Available = min(st.Available, st.Spec)
	}
	return st
}

func states(rss []*appsv1.ReplicaSet) []rsState {
	out := make([]rsState, 0, len(rss))
	for _, rs := range rss {
		if rs != nil {
			out = append(out, state(rs))
		}
	}
	return out
}

func active(rss []*appsv1.ReplicaSet) []*appsv1.ReplicaSet {
	var out []*appsv1.ReplicaSet
	for _, rs := range rss {
		if rs != nil && replicas(rs) > 0 {
			out = append(out, rs)
		}
	}
	return out
}

func byCreation(rss []*appsv1.ReplicaSet) {
	sort.SliceStable(rss, func(i, j int) bool {
		a, b := rss[i], rss[j]
		if a.CreationTimestamp.Equal(&b.CreationTimestamp) {
			return a.Name < b.Name
		}
		return a.CreationTimestamp.Before(&b.CreationTimestamp)
	})
}

func revision(obj metav1.Object) int64 {
	v, err := strconv.ParseInt(obj.GetAnnotations()[RevisionAnnotation], 10, 64)
	if err != nil {
		return 0
	}
	return v
}

// findNewReplicaSet is the oldest ReplicaSet whose template equals the Deployment's.
func findNewReplicaSet(d *appsv1.Deployment, rsList []*appsv1.ReplicaSet) (*appsv1.ReplicaSet, []*appsv1.ReplicaSet) {
	sorted := append([]*appsv1.ReplicaSet(nil), rsList...)
	byCreation(sorted)
	var newRS *appsv1.ReplicaSet
	var old []*appsv1.ReplicaSet
	for _, rs := range sorted {
		if newRS == nil && EqualIgnoreHash(&rs.Spec.Template, &d.Spec.Template) {
			newRS = rs
			continue
		}
		old = append(old, rs)
	}
	return newRS, old
}

// getAllReplicaSetsAndSyncRevision returns the new ReplicaSet (created when create is set and
// none exists) and the old ones, and brings revision annotations up to date.
func (s *syncer) getAllReplicaSetsAndSyncRevision(ctx context.Context, rsList []*appsv1.ReplicaSet, create bool) (*appsv1.ReplicaSet, []*appsv1.ReplicaSet, error) {
	existing, old := findNewReplicaSet(s.d, rsList)
	newRS, err := s.getNewReplicaSet(ctx, existing, old, create)
	return newRS, old, err
}

func maxRevision(rss []*appsv1.ReplicaSet) int64 {
	var m int64
	for _, rs := range rss {
		m = max(m, revision(rs))
	}
	return m
}

func skipCopyAnnotation(k string) bool {
	switch k {
	case corev1.LastAppliedConfigAnnotation, RevisionAnnotation, RevisionHistoryAnnotation,
		DesiredReplicasAnnotation, MaxReplicasAnnotation, "deprecated.deployment.rollback.to":
		return true
	}
	// Bosun's own markers say the Deployment is Git-managed; the ReplicaSet is not.
	return strings.HasPrefix(k, "bosun.dev/")
}

// setNewReplicaSetAnnotations copies the Deployment's annotations and sets the revision (and,
// for a ReplicaSet being created, the replicas annotations); it reports a change.
func (s *syncer) setNewReplicaSetAnnotations(rs *appsv1.ReplicaSet, newRevision int64, exists bool) bool {
	changed := false
	if rs.Annotations == nil {
		rs.Annotations = map[string]string{}
	}
	for k, v := range s.d.Annotations {
		if skipCopyAnnotation(k) || rs.Annotations[k] == v {
			continue
		}
		rs.Annotations[k] = v
		changed = true
	}
	oldRevision := rs.Annotations[RevisionAnnotation]
	old := revision(rs)
	if old < newRevision {
		rs.Annotations[RevisionAnnotation] = strconv.FormatInt(newRevision, 10)
		changed = true
		if exists && oldRevision != "" {
			if h := rs.Annotations[RevisionHistoryAnnotation]; h != "" {
				rs.Annotations[RevisionHistoryAnnotation] = h + "," + oldRevision
			} else {
				rs.Annotations[RevisionHistoryAnnotation] = oldRevision
			}
		}
	}
	if !exists && s.setReplicasAnnotations(rs) {
		changed = true
	}
	return changed
}

func (s *syncer) setReplicasAnnotations(rs *appsv1.ReplicaSet) bool {
	desired := strconv.Itoa(int(*s.d.Spec.Replicas))
	maxR := strconv.Itoa(int(*s.d.Spec.Replicas + MaxSurge(s.d)))
	if rs.Annotations == nil {
		rs.Annotations = map[string]string{}
	}
	if rs.Annotations[DesiredReplicasAnnotation] == desired && rs.Annotations[MaxReplicasAnnotation] == maxR {
		return false
	}
	rs.Annotations[DesiredReplicasAnnotation] = desired
	rs.Annotations[MaxReplicasAnnotation] = maxR
	return true
}

// annotatedInt reads an integer annotation as Kubernetes' getIntFromAnnotation.
func annotatedInt(rs *appsv1.ReplicaSet, key string) (int32, bool) {
	v, ok := rs.Annotations[key]
	if !ok {
		return 0, false
	}
	n, err := strconv.Atoi(v)
	return int32(n), err == nil
}

// maxReplicasBeforeScale is the Deployment size (replicas + maxSurge) rs was last sized for, from
// its max-replicas annotation. When someone removed the annotation or set it to something that is
// not a number or to 0, it is the Deployment's status.replicas instead, as in Kubernetes'
// getReplicaSetFraction; proportion gives nothing to a ReplicaSet for which that is 0 as well.
func maxReplicasBeforeScale(rs *appsv1.ReplicaSet, d *appsv1.Deployment) int32 {
	if n, ok := annotatedInt(rs, MaxReplicasAnnotation); ok && n != 0 {
		return n
	}
	return d.Status.Replicas
}

// setDeploymentRevision writes the revision annotation on the Deployment (metadata only).
func (s *syncer) setDeploymentRevision(ctx context.Context, rev int64) error {
	want := strconv.FormatInt(rev, 10)
	if s.d.Annotations[RevisionAnnotation] == want {
		return nil
	}
	cur, err := s.dc.store.Get(ctx, resource.Deployments, s.d.Namespace, s.d.Name)
	if err != nil {
		return err
	}
	if cur.GetUID() != s.d.UID {
		return apierrors.NewNotFound(resource.Deployments.GroupResource(), s.d.Name)
	}
	ann := cur.GetAnnotations()
	if ann == nil {
		ann = map[string]string{}
	}
	ann[RevisionAnnotation] = want
	cur.SetAnnotations(ann)
	out, err := s.dc.store.Update(ctx, resource.Deployments, cur)
	if err != nil {
		return fmt.Errorf("setting the revision of deployment %s: %w", s.d.Name, err)
	}
	s.d.Annotations = out.GetAnnotations()
	s.d.ResourceVersion = out.GetResourceVersion()
	return nil
}

func (s *syncer) getNewReplicaSet(ctx context.Context, existing *appsv1.ReplicaSet, old []*appsv1.ReplicaSet, create bool) (*appsv1.ReplicaSet, error) {
	d := s.d
	newRevision := maxRevision(old) + 1
	if existing != nil {
		rs := existing.DeepCopy()
		changed := s.setNewReplicaSetAnnotations(rs, newRevision, true)
		if rs.Spec.MinReadySeconds != d.Spec.MinReadySeconds {
			rs.Spec.MinReadySeconds = d.Spec.MinReadySeconds
			changed = true
		}
		if changed {
			out, err := s.dc.store.Update(ctx, resource.ReplicaSets, rs)
			if err != nil {
				return nil, fmt.Errorf("updating replica set %s: %w", rs.Name, err)
			}
			s.dc.wrote(out)
			rs = out.(*appsv1.ReplicaSet)
		}
		if err := s.setDeploymentRevision(ctx, revision(rs)); err != nil {
			return nil, err
		}
		if getCondition(d.Status, appsv1.DeploymentProgressing) == nil {
			s.setCondition(appsv1.DeploymentProgressing, corev1.ConditionTrue, ReasonFoundNewRS, fmt.Sprintf("Found new replica set %q", rs.Name))
		}
		return rs, nil
	}
	if !create {
		return nil, nil
	}

	hash := ComputeHash(&d.Spec.Template, d.Status.CollisionCount)
	tmpl := d.Spec.Template.DeepCopy()
	tmpl.Labels = withLabel(tmpl.Labels, appsv1.DefaultDeploymentUniqueLabelKey, hash)
	selector := d.Spec.Selector.DeepCopy()
	selector.MatchLabels = withLabel(selector.MatchLabels, appsv1.DefaultDeploymentUniqueLabelKey, hash)
	rs := &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{
			Name: d.Name + "-" + hash, Namespace: d.Namespace, Labels: tmpl.Labels,
			OwnerReferences: []metav1.OwnerReference{controllerRef(d)},
		},
		Spec: appsv1.ReplicaSetSpec{Replicas: ptr.To[int32](0), MinReadySeconds: d.Spec.MinReadySeconds, Selector: selector, Template: *tmpl},
	}
	n := NewRSNewReplicas(d, append(states(old), rsState{}), rsState{})
	rs.Spec.Replicas = ptr.To(n)
	s.setNewReplicaSetAnnotations(rs, newRevision, false)

	out, err := s.dc.store.Create(ctx, resource.ReplicaSets, rs)
	alreadyExists := false
	switch {
	case apierrors.IsAlreadyExists(err):
		got, gerr := s.dc.store.Get(ctx, resource.ReplicaSets, d.Namespace, rs.Name)
		if gerr != nil {
			return nil, gerr
		}
		cur := got.(*appsv1.ReplicaSet)
		if ref := metav1.GetControllerOfNoCopy(cur); ref != nil && ref.UID == d.UID && EqualIgnoreHash(&d.Spec.Template, &cur.Spec.Template) {
			// Ours, and the cache had not shown it yet.
			out, err, alreadyExists = cur, nil, true
			break
		}
		// A hash collision with someone else's ReplicaSet: bump collisionCount and retry.
		d.Status.CollisionCount = ptr.To(ptr.Deref(d.Status.CollisionCount, 0) + 1)
		if _, uerr := s.dc.store.UpdateStatus(ctx, resource.Deployments, d); uerr != nil {
			return nil, uerr
		}
		return nil, fmt.Errorf("replica set %s exists and is not this deployment's; collision count now %d", rs.Name, *d.Status.CollisionCount)
	case err != nil:
		msg := fmt.Sprintf("Failed to create new replica set %q: %v", rs.Name, err)
		s.setCondition(appsv1.DeploymentProgressing, corev1.ConditionFalse, ReasonFailedRSCreate, msg)
		s.dc.rec.Eventf(d, corev1.EventTypeWarning, ReasonFailedRSCreate, "%s", msg)
		_, _ = s.dc.store.UpdateStatus(ctx, resource.Deployments, d)
		return nil, fmt.Errorf("creating replica set %s: %w", rs.Name, err)
	}
	s.dc.wrote(out)
	created := out.(*appsv1.ReplicaSet)
	if !alreadyExists && n > 0 {
		s.dc.rec.Eventf(d, corev1.EventTypeNormal, "ScalingReplicaSet", "Scaled up replica set %s from 0 to %d", created.Name, n)
	}
	if err := s.setDeploymentRevision(ctx, newRevision); err != nil {
		return nil, err
	}
	if !alreadyExists {
		s.setCondition(appsv1.DeploymentProgressing, corev1.ConditionTrue, ReasonNewRSCreated, fmt.Sprintf("Created new replica set %q", created.Name))
	}
	return created, nil
}

func withLabel(m map[string]string, k, v string) map[string]string {
	out := make(map[string]string, len(m)+1)
	for a, b := range m {
		out[a] = b
	}
	out[k] = v
	return out
}

// scaleReplicaSet sets a ReplicaSet's size (and replicas annotations) and records the event.
func (s *syncer) scaleReplicaSet(ctx context.Context, rs *appsv1.ReplicaSet, size int32, op string) (bool, *appsv1.ReplicaSet, error) {
	sizeChanged := replicas(rs) != size
	cp := rs.DeepCopy()
	annChanged := s.setReplicasAnnotations(cp)
	if !sizeChanged && !annChanged {
		return false, rs, nil
	}
	cp.Spec.Replicas = ptr.To(size)
	out, err := s.dc.store.Update(ctx, resource.ReplicaSets, cp)
	if err != nil {
		return false, rs, fmt.Errorf("scaling replica set %s to %d: %w", rs.Name, size, err)
	}
	s.dc.wrote(out)
	if sizeChanged {
		s.dc.rec.Eventf(s.d, corev1.EventTypeNormal, "ScalingReplicaSet", "Scaled %s replica set %s from %d to %d", op, rs.Name, replicas(rs), size)
	}
	return sizeChanged, out.(*appsv1.ReplicaSet), nil
}

func (s *syncer) scaleAndRecord(ctx context.Context, rs *appsv1.ReplicaSet, size int32) (bool, *appsv1.ReplicaSet, error) {
	if replicas(rs) == size {
		return false, rs, nil
	}
	op := "down"
	if replicas(rs) < size {
		op = "up"
	}
	return s.scaleReplicaSet(ctx, rs, size, op)
}

// isScalingEvent reports whether spec.replicas changed since the active ReplicaSets were sized.
func (s *syncer) isScalingEvent(rsList []*appsv1.ReplicaSet) bool {
	newRS, old := findNewReplicaSet(s.d, rsList)
	for _, rs := range active(append(old, newRS)) {
		if desired, ok := annotatedInt(rs, DesiredReplicasAnnotation); ok && desired != *s.d.Spec.Replicas {
			return true
		}
	}
	return false
}

// syncStatusOnly is all a Deployment being deleted gets (Kubernetes' syncStatusOnly): its status
// follows its ReplicaSets, which neither scale nor roll out while they wait to go with it.
func (s *syncer) syncStatusOnly(ctx context.Context, rsList []*appsv1.ReplicaSet) error {
	newRS, old, err := s.getAllReplicaSetsAndSyncRevision(ctx, rsList, false)
	if err != nil {
		return err
	}
	return s.syncStatus(ctx, append(old, newRS), newRS)
}

// sync scales without rolling out (paused deployments and scaling events) and updates status.
func (s *syncer) sync(ctx context.Context, rsList []*appsv1.ReplicaSet) error {
	newRS, old, err := s.getAllReplicaSetsAndSyncRevision(ctx, rsList, false)
	if err != nil {
		return err
	}
	if err := s.scale(ctx, newRS, old); err != nil {
		return err
	}
	if s.d.Spec.Paused {
		if err := s.cleanup(ctx, old); err != nil {
			return err
		}
	}
	return s.syncStatus(ctx, append(old, newRS), newRS)
}

// scale brings the ReplicaSets' sizes in line with spec.replicas, proportionally during a
// rollout so that a scale-up mid-rollout does not all land on one ReplicaSet.
func (s *syncer) scale(ctx context.Context, newRS *appsv1.ReplicaSet, old []*appsv1.ReplicaSet) error {
	d := s.d
	if rs := findActiveOrLatest(newRS, old); rs != nil {
		if replicas(rs) == *d.Spec.Replicas {
			return nil
		}
		_, _, err := s.scaleAndRecord(ctx, rs, *d.Spec.Replicas)
		return err
	}
	if newRS != nil {
		if desired, ok := annotatedInt(newRS, DesiredReplicasAnnotation); ok && desired == *d.Spec.Replicas &&
			newRS.Status.AvailableReplicas == *d.Spec.Replicas && replicas(newRS) == *d.Spec.Replicas {
			for _, rs := range active(old) {
				if _, _, err := s.scaleAndRecord(ctx, rs, 0); err != nil {
					return err
				}
			}
			return nil
		}
	}
	if !isRollingUpdate(d) {
		return nil
	}
	all := active(append(append([]*appsv1.ReplicaSet(nil), old...), newRS))
	var total int32
	for _, rs := range all {
		total += replicas(rs)
	}
	allowed := *d.Spec.Replicas
	if allowed > 0 {
		allowed += MaxSurge(d)
	}
	toAdd := allowed - total
	op := ""
	switch {
	case toAdd > 0:
		op = "up"
		sortBySize(all, true)
	case toAdd < 0:
		op = "down"
		sortBySize(all, false)
	}
	sizes := make([]int32, len(all))
	var added int32
	for i, rs := range all {
		sizes[i] = replicas(rs)
		if toAdd != 0 {
			p := proportion(replicas(rs), maxReplicasBeforeScale(rs, d), d, toAdd, added)
			sizes[i] += p
			added += p
		}
	}
	for i, rs := range all {
		if i == 0 && toAdd != 0 {
			sizes[i] = max(sizes[i]+toAdd-added, 0)
		}
		if _, _, err := s.scaleReplicaSet(ctx, rs, sizes[i], op); err != nil {
			return err
		}
	}
	return nil
}

// sortBySize orders larger ReplicaSets first; ties go newer first when scaling up and older
// first when scaling down (Kubernetes' ReplicaSetsBySizeNewer/Older).
func sortBySize(rss []*appsv1.ReplicaSet, newerFirst bool) {
	sort.SliceStable(rss, func(i, j int) bool {
		a, b := rss[i], rss[j]
		if replicas(a) != replicas(b) {
			return replicas(a) > replicas(b)
		}
		if a.CreationTimestamp.Equal(&b.CreationTimestamp) {
			return a.Name < b.Name
		}
		if newerFirst {
			return b.CreationTimestamp.Before(&a.CreationTimestamp)
		}
		return a.CreationTimestamp.Before(&b.CreationTimestamp)
	})
}

func findActiveOrLatest(newRS *appsv1.ReplicaSet, old []*appsv1.ReplicaSet) *appsv1.ReplicaSet {
	if newRS == nil && len(old) == 0 {
		return nil
	}
	sorted := append([]*appsv1.ReplicaSet(nil), old...)
	byCreation(sorted)
	for i, j := 0, len(sorted)-1; i < j; i, j = i+1, j-1 {
		sorted[i], sorted[j] = sorted[j], sorted[i]
	}
	all := active(append(sorted, newRS))
	switch len(all) {
	case 0:
		if newRS != nil {
			return newRS
		}
		return sorted[0]
	case 1:
		return all[0]
	}
	return nil
}

// cleanup deletes the oldest ReplicaSets with no pods beyond revisionHistoryLimit.
func (s *syncer) cleanup(ctx context.Context, old []*appsv1.ReplicaSet) error {
	var alive []*appsv1.ReplicaSet
	for _, rs := range old {
		if rs != nil && rs.DeletionTimestamp == nil {
			alive = append(alive, rs)
		}
	}
	diff := len(alive) - int(*s.d.Spec.RevisionHistoryLimit)
	if diff <= 0 {
		return nil
	}
	sort.SliceStable(alive, func(i, j int) bool {
		ri, rj := revision(alive[i]), revision(alive[j])
		if ri != rj {
			return ri < rj
		}
		return alive[i].CreationTimestamp.Before(&alive[j].CreationTimestamp)
	})
	for _, rs := range alive[:diff] {
		if rs.Status.Replicas != 0 || replicas(rs) != 0 || rs.Generation > rs.Status.ObservedGeneration {
			continue
		}
		_, err := s.dc.store.Delete(ctx, resource.ReplicaSets, rs.Namespace, rs.Name,
			store.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &rs.UID}})
		if ignoreNotFound(err) != nil {
			return fmt.Errorf("deleting old replica set %s: %w", rs.Name, err)
		}
		s.dc.forgetWrite(rs.Namespace, rs.Name)
		s.dc.log.Info("deleted old replica set", "deployment", s.d.Name, "replicaset", rs.Name)
	}
	return nil
}

// ---- status and conditions ----

func getCondition(st appsv1.DeploymentStatus, t appsv1.DeploymentConditionType) *appsv1.DeploymentCondition {
	for i := range st.Conditions {
		if st.Conditions[i].Type == t {
			return &st.Conditions[i]
		}
	}
	return nil
}

func removeCondition(st *appsv1.DeploymentStatus, t appsv1.DeploymentConditionType) {
	var out []appsv1.DeploymentCondition
	for _, c := range st.Conditions {
		if c.Type != t {
			out = append(out, c)
		}
	}
	st.Conditions = out
}

// setStatusCondition sets a condition as Kubernetes' SetDeploymentCondition: an unchanged status
// and reason leave it alone, an unchanged status keeps the transition time.
func setStatusCondition(st *appsv1.DeploymentStatus, c appsv1.DeploymentCondition) {
	cur := getCondition(*st, c.Type)
	if cur != nil && cur.Status == c.Status && cur.Reason == c.Reason {
		return
	}
	if cur != nil && cur.Status == c.Status {
		c.LastTransitionTime = cur.LastTransitionTime
	}
	removeCondition(st, c.Type)
	st.Conditions = append(st.Conditions, c)
}

func (s *syncer) newCondition(t appsv1.DeploymentConditionType, status corev1.ConditionStatus, reason, msg string) appsv1.DeploymentCondition {
	now := metav1.NewTime(s.dc.clock.Now())
	return appsv1.DeploymentCondition{Type: t, Status: status, Reason: reason, Message: msg, LastUpdateTime: now, LastTransitionTime: now}
}

func (s *syncer) setCondition(t appsv1.DeploymentConditionType, status corev1.ConditionStatus, reason, msg string) {
	setStatusCondition(&s.d.Status, s.newCondition(t, status, reason, msg))
}

// checkPausedConditions records pausing and resuming in the Progressing condition.
func (s *syncer) checkPausedConditions(ctx context.Context) error {
	d := s.d
	cond := getCondition(d.Status, appsv1.DeploymentProgressing)
	if cond != nil && cond.Reason == ReasonTimedOut {
		return nil
	}
	pausedCond := cond != nil && cond.Reason == ReasonPaused
	switch {
	case d.Spec.Paused && !pausedCond:
		s.setCondition(appsv1.DeploymentProgressing, corev1.ConditionUnknown, ReasonPaused, "Deployment is paused")
	case !d.Spec.Paused && pausedCond:
		s.setCondition(appsv1.DeploymentProgressing, corev1.ConditionUnknown, ReasonResumed, "Deployment is resumed")
	default:
		return nil
	}
	return s.writeStatus(ctx, d.Status)
}

// calculateStatus derives the Deployment's status from its ReplicaSets.
func (s *syncer) calculateStatus(all []*appsv1.ReplicaSet, newRS *appsv1.ReplicaSet) appsv1.DeploymentStatus {
	d := s.d
	st := *d.Status.DeepCopy()
	st.ObservedGeneration = d.Generation
	st.Replicas, st.ReadyReplicas, st.AvailableReplicas, st.UpdatedReplicas = 0, 0, 0, 0
	for _, rs := range all {
		if rs == nil {
			continue
		}
		st.Replicas += rs.Status.Replicas
		st.ReadyReplicas += rs.Status.ReadyReplicas
		st.AvailableReplicas += rs.Status.AvailableReplicas
	}
	if newRS != nil {
		st.UpdatedReplicas = newRS.Status.Replicas
	}
	// As Kubernetes' calculateStatus: the pods all ReplicaSets should have (their spec.replicas,
	// not the Deployment's) less the available ones, never negative (after a scale-down).
	var total int32
	for _, rs := range all {
		total += replicas(rs)
	}
	st.UnavailableReplicas = max(total-st.AvailableReplicas, 0)
	if st.AvailableReplicas >= *d.Spec.Replicas-MaxUnavailable(d) {
		setStatusCondition(&st, s.newCondition(appsv1.DeploymentAvailable, corev1.ConditionTrue, ReasonMinimumAvailable, "Deployment has minimum availability."))
	} else {
		setStatusCondition(&st, s.newCondition(appsv1.DeploymentAvailable, corev1.ConditionFalse, ReasonMinimumUnavailable, "Deployment does not have minimum availability."))
	}
	return st
}

// syncStatus writes the calculated status when it changed.
func (s *syncer) syncStatus(ctx context.Context, all []*appsv1.ReplicaSet, newRS *appsv1.ReplicaSet) error {
	st := s.calculateStatus(all, newRS)
	return s.writeStatus(ctx, st)
}

func (s *syncer) writeStatus(ctx context.Context, st appsv1.DeploymentStatus) error {
	if equality.Semantic.DeepEqual(s.stored, st) {
		s.d.Status = st
		return nil
	}
	d := s.d.DeepCopy()
	d.Status = st
	out, err := s.dc.store.UpdateStatus(ctx, resource.Deployments, d)
	if err != nil {
		return fmt.Errorf("updating status of deployment %s: %w", d.Name, err)
	}
	s.d.Status = st
	s.stored = *st.DeepCopy()
	s.d.ResourceVersion = out.GetResourceVersion()
	return nil
}
