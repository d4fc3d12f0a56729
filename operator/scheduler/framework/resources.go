package framework

import (
	corev1 "k8s.io/api/core/v1"
)

// Default requests assumed, for scoring only, for containers that request nothing (as
// kube-scheduler's non-zero requests): without them a node full of request-less pods would look
// empty.
const (
	DefaultMilliCPURequest int64 = 100               // 0.1 core
	DefaultMemoryRequest   int64 = 200 * 1024 * 1024 // 200 MiB
)

// Resource is an amount of the resources the scheduler accounts: cpu in millicores, memory in
// bytes and a number of pods.
type Resource struct {
	MilliCPU int64
	Memory   int64
	Pods     int64
}

// Add adds r2 to r.
func (r *Resource) Add(r2 Resource) {
	r.MilliCPU += r2.MilliCPU
	r.Memory += r2.Memory
	r.Pods += r2.Pods
}

// Sub subtracts r2 from r.
func (r *Resource) Sub(r2 Resource) {
	r.MilliCPU -= r2.MilliCPU
	r.Memory -= r2.Memory
	r.Pods -= r2.Pods
}

func (r *Resource) setMax(r2 Resource) {
	r.MilliCPU = max(r.MilliCPU, r2.MilliCPU)
	r.Memory = max(r.Memory, r2.Memory)
}

// ResourceFromList reads cpu, memory and pods from a ResourceList (allocatable or requests).
func ResourceFromList(rl corev1.ResourceList) Resource {
	var r Resource
	if q, ok := rl[corev1.ResourceCPU]; ok {
		r.MilliCPU = q.MilliValue()
	}
	if q, ok := rl[corev1.ResourceMemory]; ok {
		r.Memory = q.Value()
	}
	if q, ok := rl[corev1.ResourcePods]; ok {
		r.Pods = q.Value()
	}
	return r
}

func nonZero(rl corev1.ResourceList) Resource {
	r := ResourceFromList(rl)
	if _, ok := rl[corev1.ResourceCPU]; !ok {
		r.MilliCPU = DefaultMilliCPURequest
	}
	if _, ok := rl[corev1.ResourceMemory]; !ok {
		r.Memory = DefaultMemoryRequest
	}
	return r
}

// PodRequests returns a pod's effective requests as Kubernetes computes them
// (k8s.io/component-helpers resource.PodRequests): the sum of the containers' requests, raised
// to the largest init container's (each init container counted together with the restartable
// "sidecar" init containers started before it; sidecars also add to the running sum), plus the
// pod overhead. Pod-level resources, when set, replace the container sum for cpu and memory.
// nonZero is the same with DefaultMilliCPURequest / DefaultMemoryRequest for a container that
// requests nothing, used by the score plugins.
func PodRequests(pod *corev1.Pod) (reqs, nonZeroReqs Resource) {
	sum := func(f func(corev1.ResourceList) Resource) Resource {
		var total Resource
		for i := range pod.Spec.Containers {
			total.Add(f(pod.Spec.Containers[i].Resources.Requests))
		}
		var sidecars, initMax Resource
		for i := range pod.Spec.InitContainers {
			c := &pod.Spec.InitContainers[i]
			r := f(c.Resources.Requests)
			if c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways {
				total.Add(r)
				sidecars.Add(r)
				r = sidecars
			} else {
				r.Add(sidecars)
			}
			initMax.setMax(r)
		}
		total.setMax(initMax)
		return total
	}
	reqs = sum(ResourceFromList)
	nonZeroReqs = sum(nonZero)
	if pr := pod.Spec.Resources; pr != nil {
		if q, ok := pr.Requests[corev1.ResourceCPU]; ok {
			reqs.MilliCPU, nonZeroReqs.MilliCPU = q.MilliValue(), q.MilliValue()
		}
		if q, ok := pr.Requests[corev1.ResourceMemory]; ok {
			reqs.Memory, nonZeroReqs.Memory = q.Value(), q.Value()
		}
	}
	if pod.Spec.Overhead != nil {
		o := ResourceFromList(pod.Spec.Overhead)
		o.Pods = 0
		reqs.Add(o)
		nonZeroReqs.Add(o)
	}
	reqs.Pods, nonZeroReqs.Pods = 1, 1
	return reqs, nonZeroReqs
}
