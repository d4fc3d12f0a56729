// Package poddefaults applies the defaulting that the Kubernetes API server gives a Pod but not
// a pod template (SetDefaults_Pod in k8s.io/kubernetes/pkg/apis/core/v1): a resource with a limit
// and no request is requested at its limit. The repository loader applies it to the Pods of a
// commit and the store to every pod written, whoever writes it (Git sync, the API, controllers
// creating pods from templates), so the scheduler sees the requests Kubernetes would have stored.
package poddefaults

import (
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

// NeedsRequests reports whether SetRequests may change spec: a container with a limit it does
// not request, or pod-level limits. It reads only, so that writers can skip copying the common
// pod.
func NeedsRequests(spec *corev1.PodSpec) bool {
	if spec.Resources != nil && len(spec.Resources.Limits) > 0 {
		return true
	}
	return missingRequest(spec.Containers) || missingRequest(spec.InitContainers)
}

func missingRequest(cs []corev1.Container) bool {
	for i := range cs {
		r := &cs[i].Resources
		for name := range r.Limits {
			if _, ok := r.Requests[name]; !ok {
				return true
			}
		}
	}
	return false
}

// SetRequests defaults requests in place as Kubernetes does: in every container and init
// container, each resource with a limit and no request gets request = limit; then, when the pod
// has pod-level limits, each pod-level resource (cpu, memory, hugepages-*) without a pod-level
// request gets the containers' aggregated request (cpu and memory only: hugepages cannot be
// overcommitted) or else the pod-level limit.
func SetRequests(spec *corev1.PodSpec) {
	for _, cs := range [][]corev1.Container{spec.Containers, spec.InitContainers} {
		for i := range cs {
			r := &cs[i].Resources
			for name, lim := range r.Limits {
				if _, ok := r.Requests[name]; ok {
					continue
				}
				if r.Requests == nil {
					r.Requests = make(corev1.ResourceList, len(r.Limits))
				}
				r.Requests[name] = lim.DeepCopy()
			}
		}
	}
	// Pod-level requests come after the containers', which they are computed from.
	pr := spec.Resources
	if pr == nil || len(pr.Limits) == 0 {
		return
	}
	reqs := pr.Requests
	if reqs == nil {
		reqs = corev1.ResourceList{}
	}
	for _, name := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		if _, ok := reqs[name]; ok {
			continue
		}
		if q, ok := aggregateRequest(spec, name); ok {
			reqs[name] = q
		}
	}
	for name, lim := range pr.Limits {
		if _, ok := reqs[name]; !ok && podLevelResource(name) {
			reqs[name] = lim.DeepCopy()
		}
	}
	if len(reqs) > 0 {
		pr.Requests = reqs
	}
}

// podLevelResource is Kubernetes' IsSupportedPodLevelResource.
func podLevelResource(name corev1.ResourceName) bool {
	return name == corev1.ResourceCPU || name == corev1.ResourceMemory ||
		strings.HasPrefix(string(name), corev1.ResourceHugePagesPrefix)
}

// aggregateRequest is the containers' effective request of one resource, as Kubernetes'
// AggregateContainerRequests: the sum of the containers' requests (restartable "sidecar" init
// containers included), raised to the largest init container step (an init container plus the
// sidecars started before it). ok is false when no container requests it.
func aggregateRequest(spec *corev1.PodSpec, name corev1.ResourceName) (q resource.Quantity, ok bool) {
	var sum, sidecars, initMax resource.Quantity
	for i := range spec.Containers {
		if v, found := spec.Containers[i].Resources.Requests[name]; found {
			sum.Add(v)
			ok = true
		}
	}
	for i := range spec.InitContainers {
		c := &spec.InitContainers[i]
		v, found := c.Resources.Requests[name]
		if !found {
			// Kubernetes adds nothing for the container but still counts the sidecars' step.
			if sidecars.Cmp(initMax) > 0 {
				initMax = sidecars.DeepCopy()
			}
			continue
		}
		ok = true
		step := v.DeepCopy()
		if c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways {
			sum.Add(v)
			sidecars.Add(v)
			step = sidecars.DeepCopy()
		} else {
			step.Add(sidecars)
		}
		if step.Cmp(initMax) > 0 {
			initMax = step
		}
	}
	if initMax.Cmp(sum) > 0 {
		sum = initMax
	}
	return sum, ok
}
