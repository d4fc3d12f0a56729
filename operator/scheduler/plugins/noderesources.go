package plugins

import (
	"context"

	"github.com/bosun-gitops/bosun/operator/scheduler/framework"
	corev1 "k8s.io/api/core/v1"
)

// Reasons of NodeResourcesFit, as kube-scheduler words them.
const (
	ErrReasonTooManyPods  = "Too many pods"
	ErrReasonInsufficient = "Insufficient "
)

// NodeResourcesFit rejects nodes whose allocatable resources cannot hold the pod next to the
// pods already bound or assumed there: cpu, memory, ephemeral-storage, the pod count and the
// scalar resources (extended resources such as nvidia.com/gpu, hugepages-*), as kube-scheduler's
// fitsRequest. A node that does not report a resource in status.allocatable has none of it.
type NodeResourcesFit struct{}

var _ framework.FilterPlugin = (*NodeResourcesFit)(nil)

// Name implements framework.Plugin.
func (*NodeResourcesFit) Name() string { return NodeResourcesFitName }

// Filter implements framework.FilterPlugin. Every insufficient resource is a reason
// ("Insufficient nvidia.com/gpu"), scalar resources in name order.
func (*NodeResourcesFit) Filter(_ context.Context, state *framework.CycleState, pod *corev1.Pod, node *framework.NodeInfo) *framework.Status {
	pi := framework.PodInfoFrom(state, pod)
	req := &pi.Requests
	alloc, used := &node.Allocatable, &node.Requested
	var reasons []string
	if int64(len(node.Pods))+1 > alloc.Pods {
		reasons = append(reasons, ErrReasonTooManyPods)
	}
	if req.MilliCPU > 0 && req.MilliCPU > alloc.MilliCPU-used.MilliCPU {
		reasons = append(reasons, ErrReasonInsufficient+string(corev1.ResourceCPU))
	}
	if req.Memory > 0 && req.Memory > alloc.Memory-used.Memory {
		reasons = append(reasons, ErrReasonInsufficient+string(corev1.ResourceMemory))
	}
	if req.EphemeralStorage > 0 && req.EphemeralStorage > alloc.EphemeralStorage-used.EphemeralStorage {
		reasons = append(reasons, ErrReasonInsufficient+string(corev1.ResourceEphemeralStorage))
	}
	for _, name := range pi.ScalarNames {
		if q := req.Scalar[name]; q > 0 && q > alloc.Scalar[name]-used.Scalar[name] {
			reasons = append(reasons, ErrReasonInsufficient+string(name))
		}
	}
	if len(reasons) > 0 {
		return framework.NewStatus(framework.Unschedulable, reasons...)
	}
	return nil
}

// fractions returns the share of allocatable cpu and memory that the node's pods plus pod
// requests with the pod's (non-zero requests), each capped at 1 (1 for a node without
// allocatable cpu or memory).
func fractions(state *framework.CycleState, pod *corev1.Pod, node *framework.NodeInfo) (cpu, mem float64) {
	req := framework.PodInfoFrom(state, pod).NonZeroRequests
	frac := func(requested, allocatable int64) float64 {
		if allocatable <= 0 {
			return 1
		}
		return min(float64(requested)/float64(allocatable), 1)
	}
	return frac(node.NonZeroRequested.MilliCPU+req.MilliCPU, node.Allocatable.MilliCPU),
		frac(node.NonZeroRequested.Memory+req.Memory, node.Allocatable.Memory)
}

// LeastAllocated prefers nodes with the most free cpu and memory after placing the pod:
// the mean over cpu and memory of (allocatable - requested) * 100 / allocatable. Like
// kube-scheduler's default scoring it weighs only cpu and memory: extended resources, ephemeral
// storage and hugepages are filtered on, never scored.
type LeastAllocated struct{}

var _ framework.ScorePlugin = (*LeastAllocated)(nil)

// Name implements framework.Plugin.
func (*LeastAllocated) Name() string { return LeastAllocatedName }

// Score implements framework.ScorePlugin.
func (*LeastAllocated) Score(_ context.Context, state *framework.CycleState, pod *corev1.Pod, node *framework.NodeInfo) (int64, *framework.Status) {
	req := framework.PodInfoFrom(state, pod).NonZeroRequests
	free := func(requested, allocatable int64) int64 {
		if allocatable <= 0 || requested > allocatable {
			return 0
		}
		return (allocatable - requested) * framework.MaxNodeScore / allocatable
	}
	cpu := free(node.NonZeroRequested.MilliCPU+req.MilliCPU, node.Allocatable.MilliCPU)
	mem := free(node.NonZeroRequested.Memory+req.Memory, node.Allocatable.Memory)
	return (cpu + mem) / 2, nil
}

// BalancedAllocation prefers nodes whose cpu and memory usage fractions stay close to each
// other after placing the pod: (1 - standard deviation of the fractions) * 100.
type BalancedAllocation struct{}

var _ framework.ScorePlugin = (*BalancedAllocation)(nil)

// Name implements framework.Plugin.
func (*BalancedAllocation) Name() string { return BalancedAllocationName }

// Score implements framework.ScorePlugin.
func (*BalancedAllocation) Score(_ context.Context, state *framework.CycleState, pod *corev1.Pod, node *framework.NodeInfo) (int64, *framework.Status) {
	cpu, mem := fractions(state, pod, node)
	d := cpu - mem
	if d < 0 {
		d = -d
	}
	// The standard deviation of two values is half their distance.
	return int64((1 - d/2) * float64(framework.MaxNodeScore)), nil
}

// NodePorts rejects nodes where a host port the pod asks for is taken.
type NodePorts struct{}

var _ framework.FilterPlugin = (*NodePorts)(nil)

// ErrReasonNodePorts is kube-scheduler's reason.
const ErrReasonNodePorts = "node(s) didn't have free ports for the requested pod ports"

// Name implements framework.Plugin.
func (*NodePorts) Name() string { return NodePortsName }

// Filter implements framework.FilterPlugin.
func (*NodePorts) Filter(_ context.Context, state *framework.CycleState, pod *corev1.Pod, node *framework.NodeInfo) *framework.Status {
	for _, p := range framework.PodInfoFrom(state, pod).HostPorts {
		if node.UsedPorts.Conflicts(p) {
			return framework.NewStatus(framework.Unschedulable, ErrReasonNodePorts)
		}
	}
	return nil
}

// SelectorSpread spreads the pods of one controller (ReplicaSet, ReplicationController,
// DaemonSet, ...) across nodes: nodes with fewer pods of the same owner score higher.
type SelectorSpread struct{}

var (
	_ framework.ScorePlugin     = (*SelectorSpread)(nil)
	_ framework.ScoreExtensions = (*SelectorSpread)(nil)
)

// Name implements framework.Plugin.
func (*SelectorSpread) Name() string { return SelectorSpreadName }

// Score implements framework.ScorePlugin: the number of pods of the same owner on the node.
func (*SelectorSpread) Score(_ context.Context, state *framework.CycleState, pod *corev1.Pod, node *framework.NodeInfo) (int64, *framework.Status) {
	owner := framework.PodInfoFrom(state, pod).OwnerUID
	if owner == "" {
		return 0, nil
	}
	return int64(node.OwnerCounts[owner]), nil
}

// NormalizeScore implements framework.ScoreExtensions: MaxNodeScore * (max - count) / max.
func (*SelectorSpread) NormalizeScore(_ context.Context, _ *framework.CycleState, _ *corev1.Pod, scores framework.NodeScoreList) *framework.Status {
	return framework.DefaultNormalizeScore(framework.MaxNodeScore, true, scores)
}
