package framework

import (
	"maps"
	"slices"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// PodInfo is a pod with what the plugins need from it computed once.
type PodInfo struct {
	Pod *corev1.Pod
	// Requests are the effective requests; NonZeroRequests count request-less containers at the
	// scoring defaults.
	Requests, NonZeroRequests Resource
	// ScalarNames are the names in Requests.Scalar, sorted: the order in which NodeResourcesFit
	// reports them.
	ScalarNames []corev1.ResourceName
	// HostPorts are the host ports the pod's containers claim.
	HostPorts []HostPort
	// OwnerUID is the UID of the pod's controller (ReplicaSet, DaemonSet, ...), empty if none.
	OwnerUID types.UID
}

// NewPodInfo computes a PodInfo.
func NewPodInfo(pod *corev1.Pod) *PodInfo {
	pi := &PodInfo{Pod: pod, HostPorts: PodHostPorts(pod)}
	pi.Requests, pi.NonZeroRequests = PodRequests(pod)
	if len(pi.Requests.Scalar) > 0 {
		pi.ScalarNames = slices.Sorted(maps.Keys(pi.Requests.Scalar))
	}
	if ref := metav1.GetControllerOfNoCopy(pod); ref != nil {
		pi.OwnerUID = ref.UID
	}
	return pi
}

// NodeInfo is a node with the pods bound (or assumed bound) to it and their totals.
type NodeInfo struct {
	Node *corev1.Node
	// Pods are keyed by UID.
	Pods map[types.UID]*PodInfo
	// Allocatable is the node's status.allocatable.
	Allocatable Resource
	// Requested is the sum of the pods' effective requests (Pods counts them);
	// NonZeroRequested the same with the scoring defaults.
	Requested, NonZeroRequested Resource
	// UsedPorts are the host ports taken on the node.
	UsedPorts HostPortSet
	// OwnerCounts counts the pods on the node per controller UID (for spreading).
	OwnerCounts map[types.UID]int
	// Ready is the node's Ready condition being True.
	Ready bool
}

// NewNodeInfo returns a NodeInfo for node (which may be nil while only pods are known).
func NewNodeInfo(node *corev1.Node) *NodeInfo {
	ni := &NodeInfo{Pods: map[types.UID]*PodInfo{}, UsedPorts: HostPortSet{}, OwnerCounts: map[types.UID]int{}}
	ni.SetNode(node)
	return ni
}

// SetNode replaces the node object.
func (n *NodeInfo) SetNode(node *corev1.Node) {
	n.Node = node
	if node == nil {
		return
	}
	n.Allocatable = ResourceFromList(node.Status.Allocatable)
	n.Ready = false
	for _, c := range node.Status.Conditions {
		if c.Type == corev1.NodeReady {
			n.Ready = c.Status == corev1.ConditionTrue
		}
	}
}

// Name is the node's name ("" when the node object is not known).
func (n *NodeInfo) Name() string {
	if n.Node == nil {
		return ""
	}
	return n.Node.Name
}

// AddPod accounts pi on the node.
func (n *NodeInfo) AddPod(pi *PodInfo) {
	if old, ok := n.Pods[pi.Pod.UID]; ok {
		n.RemovePod(old.Pod.UID)
	}
	n.Pods[pi.Pod.UID] = pi
	n.Requested.Add(pi.Requests)
	n.NonZeroRequested.Add(pi.NonZeroRequests)
	n.UsedPorts.Add(pi.HostPorts)
	if pi.OwnerUID != "" {
		n.OwnerCounts[pi.OwnerUID]++
	}
}

// RemovePod forgets the pod with uid; it reports whether it was there.
func (n *NodeInfo) RemovePod(uid types.UID) bool {
	pi, ok := n.Pods[uid]
	if !ok {
		return false
	}
	delete(n.Pods, uid)
	n.Requested.Sub(pi.Requests)
	n.NonZeroRequested.Sub(pi.NonZeroRequests)
	n.UsedPorts.Remove(pi.HostPorts)
	if pi.OwnerUID != "" {
		if n.OwnerCounts[pi.OwnerUID]--; n.OwnerCounts[pi.OwnerUID] <= 0 {
			delete(n.OwnerCounts, pi.OwnerUID)
		}
	}
	return true
}
