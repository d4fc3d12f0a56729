package framework

import (
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"
)

// Default requests assumed, for scoring only, for containers that request nothing (as
// kube-scheduler's non-zero requests): without them a node full of request-less pods would look
// empty.
const (
	DefaultMilliCPURequest int64 = 100               // 0.1 core
	DefaultMemoryRequest   int64 = 200 * 1024 * 1024 // 200 MiB
)

// Resource is an amount of the resources the scheduler accounts, as kube-scheduler's
// framework.Resource: cpu in millicores, memory and ephemeral storage in bytes, a number of pods,
// and the scalar resources by name.
type Resource struct {
	MilliCPU         int64
	Memory           int64
	EphemeralStorage int64
	Pods             int64
	// Scalar holds extended resources (nvidia.com/gpu), hugepages-* and the other resources
	// kube-scheduler accounts by name (see IsScalarResourceName). It is nil when there are none:
	// pods that ask only for cpu and memory, the common case, cost no map.
	Scalar map[corev1.ResourceName]int64
}

// Add adds r2 to r.
func (r *Resource) Add(r2 Resource) {
	r.MilliCPU += r2.MilliCPU
	r.Memory += r2.Memory
	r.EphemeralStorage += r2.EphemeralStorage
	r.Pods += r2.Pods
	for name, v := range r2.Scalar {
		r.addScalar(name, v)
	}
}

// Sub subtracts r2 from r.
func (r *Resource) Sub(r2 Resource) {
	r.MilliCPU -= r2.MilliCPU
	r.Memory -= r2.Memory
	r.EphemeralStorage -= r2.EphemeralStorage
	r.Pods -= r2.Pods
	for name, v := range r2.Scalar {
		r.addScalar(name, -v)
		if r.Scalar[name] == 0 {
			delete(r.Scalar, name) // a node whose GPU pods left holds no map entries for them
		}
	}
}

func (r *Resource) addScalar(name corev1.ResourceName, v int64) {
	if r.Scalar == nil {
		r.Scalar = make(map[corev1.ResourceName]int64, 1)
	}
	r.Scalar[name] += v
}

func (r *Resource) setScalar(name corev1.ResourceName, v int64) {
	if r.Scalar == nil {
		r.Scalar = make(map[corev1.ResourceName]int64, 1)
	}
	r.Scalar[name] = v
}

// setMax raises every resource of r but Pods to r2's where r2's is larger.
func (r *Resource) setMax(r2 Resource) {
	r.MilliCPU = max(r.MilliCPU, r2.MilliCPU)
	r.Memory = max(r.Memory, r2.Memory)
	r.EphemeralStorage = max(r.EphemeralStorage, r2.EphemeralStorage)
	for name, v := range r2.Scalar {
		if cur, ok := r.Scalar[name]; !ok || v > cur {
			r.setScalar(name, v)
		}
	}
}

// ResourceFromList reads a ResourceList (allocatable or requests) as kube-scheduler's
// Resource.Add does: cpu, memory, ephemeral-storage, pods and the scalar resources; other names
// are ignored. A resource missing from the list is 0, so a node that does not report a resource
// has none of it to give.
func ResourceFromList(rl corev1.ResourceList) Resource {
	var r Resource
	for name, q := range rl {
		switch name {
		case corev1.ResourceCPU:
			r.MilliCPU = q.MilliValue()
		case corev1.ResourceMemory:
			r.Memory = q.Value()
		case corev1.ResourceEphemeralStorage:
			r.EphemeralStorage = q.Value()
		case corev1.ResourcePods:
			r.Pods = q.Value()
		default:
			if IsScalarResourceName(name) {
				r.addScalar(name, q.Value())
			}
		}
	}
	return r
}

// IsScalarResourceName reports whether kube-scheduler accounts name as a scalar resource: an
// extended resource (domain-qualified outside kubernetes.io, such as nvidia.com/gpu), a
// hugepages-<size> resource, an attachable-volumes-* resource or another kubernetes.io/-prefixed
// one (k8s.io/kubernetes/pkg/scheduler/util.IsScalarResourceName).
func IsScalarResourceName(name corev1.ResourceName) bool {
	s := string(name)
	switch {
	case strings.HasPrefix(s, corev1.ResourceHugePagesPrefix), strings.HasPrefix(s, corev1.ResourceAttachableVolumesPrefix),
		strings.Contains(s, corev1.ResourceDefaultNamespacePrefix):
		return true
	}
	return isExtendedResourceName(name)
}

// isExtendedResourceName is Kubernetes' v1helper.IsExtendedResourceName: a name with a domain
// outside kubernetes.io that stays a qualified name behind the quota prefix "requests.".
func isExtendedResourceName(name corev1.ResourceName) bool {
	s := string(name)
	if !strings.Contains(s, "/") || strings.Contains(s, corev1.ResourceDefaultNamespacePrefix) ||
		strings.HasPrefix(s, corev1.DefaultResourceRequestsPrefix) {
		return false
	}
	return len(validation.IsQualifiedName(corev1.DefaultResourceRequestsPrefix+s)) == 0
}

// nonZero reads cpu and memory from a container's requests, each at its scoring default when
// not requested. The score plugins read only these two.
func nonZero(rl corev1.ResourceList) Resource {
	r := Resource{MilliCPU: DefaultMilliCPURequest, Memory: DefaultMemoryRequest}
	if q, ok := rl[corev1.ResourceCPU]; ok {
		r.MilliCPU = q.MilliValue()
	}
	if q, ok := rl[corev1.ResourceMemory]; ok {
		r.Memory = q.Value()
	}
	return r
}

// PodRequests returns a pod's effective requests as Kubernetes computes them
// (k8s.io/component-helpers resource.PodRequests): the sum of the containers' requests, raised
// to the largest init container's (each init container counted together with the restartable
// "sidecar" init containers started before it; sidecars also add to the running sum), plus the
// pod overhead. Pod-level requests, when set, replace the container sum for the resources that
// may be set at pod level (cpu, memory, hugepages-*). nonZero is the same for cpu and memory with
// DefaultMilliCPURequest / DefaultMemoryRequest for a container that requests nothing, used by
// the score plugins.
func PodRequests(pod *corev1.Pod) (reqs, nonZeroReqs Resource) {
	reqs = aggregateContainers(pod, ResourceFromList)
	nonZeroReqs = aggregateContainers(pod, nonZero)
	if pr := pod.Spec.Resources; pr != nil {
		for name, q := range pr.Requests {
			switch {
			case name == corev1.ResourceCPU:
				reqs.MilliCPU, nonZeroReqs.MilliCPU = q.MilliValue(), q.MilliValue()
			case name == corev1.ResourceMemory:
				reqs.Memory, nonZeroReqs.Memory = q.Value(), q.Value()
			case strings.HasPrefix(string(name), corev1.ResourceHugePagesPrefix):
				reqs.setScalar(name, q.Value())
			}
		}
	}
	if pod.Spec.Overhead != nil {
		o := ResourceFromList(pod.Spec.Overhead)
		o.Pods = 0
		reqs.Add(o)
		nonZeroReqs.Add(Resource{MilliCPU: o.MilliCPU, Memory: o.Memory})
	}
	reqs.Pods, nonZeroReqs.Pods = 1, 1
	return reqs, nonZeroReqs
}

// aggregateContainers is Kubernetes' AggregateContainerRequests with f reading each container's
// requests.
func aggregateContainers(pod *corev1.Pod, f func(corev1.ResourceList) Resource) Resource {
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
			r = sidecars // only read below
		} else {
			r.Add(sidecars)
		}
		initMax.setMax(r)
	}
	total.setMax(initMax)
	return total
}
