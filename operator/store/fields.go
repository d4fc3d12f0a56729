package store

import (
	"fmt"
	"sort"
	"strconv"

	"github.com/bosun-gitops/bosun/internal/resource"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
)

// FieldSet returns the fields a field selector may test on obj, as Kubernetes defines them:
// metadata.name and metadata.namespace for every kind, plus per-kind fields (pods:
// spec.nodeName, status.phase, ...; events: involvedObject.*, reason, type, ...).
func FieldSet(res *resource.Resource, obj resource.Object) fields.Set {
	set := fields.Set{"metadata.name": obj.GetName()}
	if res.Namespaced {
		set["metadata.namespace"] = obj.GetNamespace()
	}
	switch o := obj.(type) {
	case *corev1.Pod:
		set["spec.nodeName"] = o.Spec.NodeName
		set["spec.restartPolicy"] = string(o.Spec.RestartPolicy)
		set["spec.schedulerName"] = o.Spec.SchedulerName
		set["spec.serviceAccountName"] = o.Spec.ServiceAccountName
		set["spec.hostNetwork"] = strconv.FormatBool(o.Spec.HostNetwork)
		set["status.phase"] = string(o.Status.Phase)
		set["status.podIP"] = o.Status.PodIP
		set["status.nominatedNodeName"] = o.Status.NominatedNodeName
	case *corev1.Event:
		set["involvedObject.kind"] = o.InvolvedObject.Kind
		set["involvedObject.namespace"] = o.InvolvedObject.Namespace
		set["involvedObject.name"] = o.InvolvedObject.Name
		set["involvedObject.uid"] = string(o.InvolvedObject.UID)
		set["involvedObject.apiVersion"] = o.InvolvedObject.APIVersion
		set["involvedObject.resourceVersion"] = o.InvolvedObject.ResourceVersion
		set["involvedObject.fieldPath"] = o.InvolvedObject.FieldPath
		set["reason"] = o.Reason
		set["reportingComponent"] = o.ReportingController
		set["source"] = o.Source.Component
		set["type"] = o.Type
	case *corev1.Node:
		set["spec.unschedulable"] = strconv.FormatBool(o.Spec.Unschedulable)
	case *corev1.Namespace:
		set["status.phase"] = string(o.Status.Phase)
	case *corev1.Secret:
		set["type"] = string(o.Type)
	case *corev1.ReplicationController:
		set["status.replicas"] = strconv.Itoa(int(o.Status.Replicas))
	}
	return set
}

// checkFieldSelector refuses selectors on fields FieldSet does not provide, with Kubernetes'
// message, instead of silently matching nothing.
func checkFieldSelector(res *resource.Resource, sel fields.Selector) error {
	if sel == nil || sel.Empty() {
		return nil
	}
	supported := FieldSet(res, res.New())
	for _, r := range sel.Requirements() {
		if _, ok := supported[r.Field]; !ok {
			names := make([]string, 0, len(supported))
			for k := range supported {
				names = append(names, k)
			}
			sort.Strings(names)
			return apierrors.NewBadRequest(fmt.Sprintf("field label not supported: %s (%s supports %v)", r.Field, res, names))
		}
	}
	return nil
}

// matcher tests objects against a label and a field selector; nil selectors match everything.
type matcher struct {
	res    *resource.Resource
	labels labels.Selector
	fields fields.Selector
}

func newMatcher(res *resource.Resource, ls labels.Selector, fs fields.Selector) (matcher, error) {
	if err := checkFieldSelector(res, fs); err != nil {
		return matcher{}, err
	}
	if ls != nil && ls.Empty() {
		ls = nil
	}
	if fs != nil && fs.Empty() {
		fs = nil
	}
	return matcher{res: res, labels: ls, fields: fs}, nil
}

func (m matcher) everything() bool { return m.labels == nil && m.fields == nil }

func (m matcher) matches(obj resource.Object) bool {
	if m.labels != nil && !m.labels.Matches(labels.Set(obj.GetLabels())) {
		return false
	}
	if m.fields != nil && !m.fields.Matches(FieldSet(m.res, obj)) {
		return false
	}
	return true
}
