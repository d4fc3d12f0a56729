package gitsync

import (
	"maps"
	"strconv"
	"strings"

	"github.com/bosun-gitops/bosun/internal/resource"
	corev1 "k8s.io/api/core/v1"
)

// keepAnnotationPrefixes are annotation keys that controllers write on Git-managed objects; a
// re-apply keeps them although the manifest does not declare them.
var keepAnnotationPrefixes = []string{
	"deployment.kubernetes.io/",
	"bosun.dev/controller-",
}

// keepLiveFields is the per-kind table of hooks that copy controller-allocated fields from the
// live object into the desired one when the manifest leaves them empty.
var keepLiveFields = map[*resource.Resource]func(want, live resource.Object){
	resource.Services:   keepServiceAllocations,
	resource.Pods:       keepPodBinding,
	resource.Namespaces: keepNamespaceFinalizers,
}

// prepare returns a copy of the desired object (the loader's objects are shared across syncs)
// with the Bosun annotations stamped and, when it replaces a live object, it
// carries over what Git does not own: identity, ownerReferences, finalizers, controller
// annotations and the per-kind allocated fields. Status is left to the store (Update keeps it).
func prepare(d *desired, live resource.Object, commit string) resource.Object {
	return stamp(d.obj.DeepCopyObject().(resource.Object), d, live, commit) // the loader's objects are shared
}

// prepareCreate is prepare for an object that Git creates and that only Store.Batch sees: the
// copy is shallow, sharing the nested fields of the loader's object, because Batch never
// modifies an op's object (it writes a copy of it). A deep copy here would be thrown away at
// once, and a large first sync makes thousands.
func prepareCreate(d *desired, commit string) resource.Object {
	return stamp(resource.ShallowCopy(d.obj), d, nil, commit)
}

// stamp makes prepare's changes to obj, a copy of d.obj. Without live it sets top-level fields
// only and replaces the annotations map rather than writing to it, so obj may share d.obj's
// nested fields; with live, the per-kind hooks write nested fields: obj must be a deep copy.
func stamp(obj resource.Object, d *desired, live resource.Object, commit string) resource.Object {
	d.res.SetTypeMeta(obj)
	ann := make(map[string]string, len(obj.GetAnnotations())+4)
	maps.Copy(ann, obj.GetAnnotations())
	ann[resource.AnnotationSource] = d.file
	ann[resource.AnnotationSourceLine] = strconv.Itoa(d.line)
	ann[resource.AnnotationCommit] = commit
	ann[resource.AnnotationAppliedHash] = d.hash
	if live != nil {
		for k, v := range live.GetAnnotations() {
			if _, set := ann[k]; !set && keepAnnotation(k) {
				ann[k] = v
			}
		}
		obj.SetResourceVersion(live.GetResourceVersion())
		obj.SetUID(live.GetUID())
		obj.SetCreationTimestamp(live.GetCreationTimestamp())
		obj.SetGeneration(live.GetGeneration())
		if len(obj.GetOwnerReferences()) == 0 {
			obj.SetOwnerReferences(live.GetOwnerReferences())
		}
		if len(obj.GetFinalizers()) == 0 {
			obj.SetFinalizers(live.GetFinalizers())
		}
		if hook := keepLiveFields[d.res]; hook != nil {
			hook(obj, live)
		}
	} else {
		obj.SetResourceVersion("")
	}
	obj.SetAnnotations(ann)
	return obj
}

func keepAnnotation(k string) bool {
	for _, p := range keepAnnotationPrefixes {
		if strings.HasPrefix(k, p) {
			return true
		}
	}
	return false
}

func keepServiceAllocations(want, live resource.Object) {
	w, ok1 := want.(*corev1.Service)
	l, ok2 := live.(*corev1.Service)
	if !ok1 || !ok2 {
		return
	}
	if w.Spec.ClusterIP == "" {
		w.Spec.ClusterIP = l.Spec.ClusterIP
	}
	if len(w.Spec.ClusterIPs) == 0 && (w.Spec.ClusterIP == "" || w.Spec.ClusterIP == l.Spec.ClusterIP) {
		w.Spec.ClusterIPs = l.Spec.ClusterIPs
	}
	if len(w.Spec.IPFamilies) == 0 {
		w.Spec.IPFamilies = l.Spec.IPFamilies
	}
	if w.Spec.IPFamilyPolicy == nil {
		w.Spec.IPFamilyPolicy = l.Spec.IPFamilyPolicy
	}
	if w.Spec.HealthCheckNodePort == 0 {
		w.Spec.HealthCheckNodePort = l.Spec.HealthCheckNodePort
	}
	for i := range w.Spec.Ports {
		wp := &w.Spec.Ports[i]
		if wp.NodePort != 0 {
			continue
		}
		for _, lp := range l.Spec.Ports {
			if lp.Port == wp.Port && lp.Protocol == wp.Protocol && lp.Name == wp.Name {
				wp.NodePort = lp.NodePort
				break
			}
		}
	}
}

func keepPodBinding(want, live resource.Object) {
	w, ok1 := want.(*corev1.Pod)
	l, ok2 := live.(*corev1.Pod)
	if ok1 && ok2 && w.Spec.NodeName == "" {
		w.Spec.NodeName = l.Spec.NodeName
	}
}

func keepNamespaceFinalizers(want, live resource.Object) {
	w, ok1 := want.(*corev1.Namespace)
	l, ok2 := live.(*corev1.Namespace)
	if ok1 && ok2 && len(w.Spec.Finalizers) == 0 {
		w.Spec.Finalizers = l.Spec.Finalizers
	}
}
