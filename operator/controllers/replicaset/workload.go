package replicaset

import (
	"fmt"

	"github.com/bosun-gitops/bosun/internal/resource"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// workload is the part of a ReplicaSet or ReplicationController that the controller reads: the
// two kinds differ only in how their selector is spelled and in their status types.
type workload struct {
	obj             resource.Object
	selector        labels.Selector
	replicas        int32
	template        *corev1.PodTemplateSpec
	minReadySeconds int32
	status          Status
}

// Status is the kind-neutral status the controller computes.
type Status struct {
	Replicas             int32
	FullyLabeledReplicas int32
	ReadyReplicas        int32
	AvailableReplicas    int32
	ObservedGeneration   int64
	// Failure is the ReplicaFailure condition, nil when there is none.
	Failure *Failure
}

// Failure is a ReplicaFailure condition.
type Failure struct {
	Reason, Message    string
	LastTransitionTime metav1.Time
}

// kind adapts one of the two workload kinds.
type kind struct {
	res *resource.Resource
	// view reads an informer object; ok is false for other types.
	view func(obj any) (*workload, bool, error)
	// withStatus returns a copy of obj carrying st.
	withStatus func(obj resource.Object, st Status) resource.Object
}

var replicaSetKind = &kind{
	res: resource.ReplicaSets,
	view: func(obj any) (*workload, bool, error) {
		rs, ok := obj.(*appsv1.ReplicaSet)
		if !ok {
			return nil, false, nil
		}
		w := &workload{obj: rs, replicas: 1, template: &rs.Spec.Template, minReadySeconds: rs.Spec.MinReadySeconds}
		if rs.Spec.Replicas != nil {
			w.replicas = *rs.Spec.Replicas
		}
		if rs.Spec.Selector == nil || (len(rs.Spec.Selector.MatchLabels) == 0 && len(rs.Spec.Selector.MatchExpressions) == 0) {
			return w, true, fmt.Errorf("replica set %s/%s has an empty selector", rs.Namespace, rs.Name)
		}
		sel, err := metav1.LabelSelectorAsSelector(rs.Spec.Selector)
		if err != nil {
			return w, true, fmt.Errorf("replica set %s/%s: invalid selector: %w", rs.Namespace, rs.Name, err)
		}
		w.selector = sel
		s := rs.Status
		w.status = Status{Replicas: s.Replicas, FullyLabeledReplicas: s.FullyLabeledReplicas, ReadyReplicas: s.ReadyReplicas,
			AvailableReplicas: s.AvailableReplicas, ObservedGeneration: s.ObservedGeneration}
		for _, c := range s.Conditions {
			if c.Type == appsv1.ReplicaSetReplicaFailure && c.Status == corev1.ConditionTrue {
				w.status.Failure = &Failure{Reason: c.Reason, Message: c.Message, LastTransitionTime: c.LastTransitionTime}
			}
		}
		return w, true, nil
	},
	withStatus: func(obj resource.Object, st Status) resource.Object {
		rs := obj.(*appsv1.ReplicaSet).DeepCopy()
		var conds []appsv1.ReplicaSetCondition
		for _, c := range rs.Status.Conditions {
			if c.Type != appsv1.ReplicaSetReplicaFailure {
				conds = append(conds, c)
			}
		}
		if f := st.Failure; f != nil {
			conds = append(conds, appsv1.ReplicaSetCondition{Type: appsv1.ReplicaSetReplicaFailure, Status: corev1.ConditionTrue,
				Reason: f.Reason, Message: f.Message, LastTransitionTime: f.LastTransitionTime})
		}
		rs.Status = appsv1.ReplicaSetStatus{Replicas: st.Replicas, FullyLabeledReplicas: st.FullyLabeledReplicas,
			ReadyReplicas: st.ReadyReplicas, AvailableReplicas: st.AvailableReplicas, ObservedGeneration: st.ObservedGeneration,
			Conditions: conds, TerminatingReplicas: rs.Status.TerminatingReplicas}
		return rs
	},
}

var replicationControllerKind = &kind{
	res: resource.ReplicationControllers,
	view: func(obj any) (*workload, bool, error) {
		rc, ok := obj.(*corev1.ReplicationController)
		if !ok {
			return nil, false, nil
		}
		w := &workload{obj: rc, replicas: 1, template: rc.Spec.Template, minReadySeconds: rc.Spec.MinReadySeconds}
		if rc.Spec.Replicas != nil {
			w.replicas = *rc.Spec.Replicas
		}
		if w.template == nil {
			return w, true, fmt.Errorf("replication controller %s/%s has no pod template", rc.Namespace, rc.Name)
		}
		sel := rc.Spec.Selector
		if len(sel) == 0 {
			sel = w.template.Labels // the API server's defaulting
		}
		if len(sel) == 0 {
			return w, true, fmt.Errorf("replication controller %s/%s has an empty selector", rc.Namespace, rc.Name)
		}
		w.selector = labels.SelectorFromSet(sel)
		s := rc.Status
		w.status = Status{Replicas: s.Replicas, FullyLabeledReplicas: s.FullyLabeledReplicas, ReadyReplicas: s.ReadyReplicas,
			AvailableReplicas: s.AvailableReplicas, ObservedGeneration: s.ObservedGeneration}
		for _, c := range s.Conditions {
			if c.Type == corev1.ReplicationControllerReplicaFailure && c.Status == corev1.ConditionTrue {
				w.status.Failure = &Failure{Reason: c.Reason, Message: c.Message, LastTransitionTime: c.LastTransitionTime}
			}
		}
		return w, true, nil
	},
	withStatus: func(obj resource.Object, st Status) resource.Object {
		rc := obj.(*corev1.ReplicationController).DeepCopy()
		var conds []corev1.ReplicationControllerCondition
		for _, c := range rc.Status.Conditions {
			if c.Type != corev1.ReplicationControllerReplicaFailure {
				conds = append(conds, c)
			}
		}
		if f := st.Failure; f != nil {
			conds = append(conds, corev1.ReplicationControllerCondition{Type: corev1.ReplicationControllerReplicaFailure,
				Status: corev1.ConditionTrue, Reason: f.Reason, Message: f.Message, LastTransitionTime: f.LastTransitionTime})
		}
		rc.Status = corev1.ReplicationControllerStatus{Replicas: st.Replicas, FullyLabeledReplicas: st.FullyLabeledReplicas,
			ReadyReplicas: st.ReadyReplicas, AvailableReplicas: st.AvailableReplicas, ObservedGeneration: st.ObservedGeneration,
			Conditions: conds}
		return rc
	},
}

// statusEqual compares two statuses, ignoring the failure's timestamp.
func statusEqual(a, b Status) bool {
	fa, fb := a.Failure, b.Failure
	a.Failure, b.Failure = nil, nil
	if a != b || (fa == nil) != (fb == nil) {
		return false
	}
	return fa == nil || (fa.Reason == fb.Reason && fa.Message == fb.Message)
}
