package plugins

import (
	"context"
	"fmt"

	"github.com/bosun-gitops/bosun/operator/scheduler/framework"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/klog/v2"
)

// Taint keys that Kubernetes' node lifecycle puts on nodes (and pods tolerate).
const (
	TaintNodeNotReady      = "node.kubernetes.io/not-ready"
	TaintNodeUnschedulable = "node.kubernetes.io/unschedulable"
)

// tolerates reports whether a toleration of tols tolerates taint (corev1's rules, without the
// alpha numeric operators).
func tolerates(tols []corev1.Toleration, taint *corev1.Taint) bool {
	for i := range tols {
		if tols[i].ToleratesTaint(klog.Background(), taint, false) {
			return true
		}
	}
	return false
}

// TaintToleration rejects nodes with a NoSchedule or NoExecute taint the pod does not tolerate
// and prefers nodes with fewer untolerated PreferNoSchedule taints.
type TaintToleration struct{}

var (
	_ framework.FilterPlugin    = (*TaintToleration)(nil)
	_ framework.ScorePlugin     = (*TaintToleration)(nil)
	_ framework.ScoreExtensions = (*TaintToleration)(nil)
)

// Name implements framework.Plugin.
func (*TaintToleration) Name() string { return TaintTolerationName }

// Filter implements framework.FilterPlugin.
func (*TaintToleration) Filter(_ context.Context, _ *framework.CycleState, pod *corev1.Pod, node *framework.NodeInfo) *framework.Status {
	for i := range node.Node.Spec.Taints {
		taint := &node.Node.Spec.Taints[i]
		if taint.Effect != corev1.TaintEffectNoSchedule && taint.Effect != corev1.TaintEffectNoExecute {
			continue
		}
		if !tolerates(pod.Spec.Tolerations, taint) {
			return framework.NewStatus(framework.UnschedulableAndUnresolvable,
				fmt.Sprintf("node(s) had untolerated taint {%s: %s}", taint.Key, taint.Value))
		}
	}
	return nil
}

// Score implements framework.ScorePlugin: the number of PreferNoSchedule taints the pod does not
// tolerate (fewer is better after normalising).
func (*TaintToleration) Score(_ context.Context, _ *framework.CycleState, pod *corev1.Pod, node *framework.NodeInfo) (int64, *framework.Status) {
	var n int64
	for i := range node.Node.Spec.Taints {
		taint := &node.Node.Spec.Taints[i]
		if taint.Effect == corev1.TaintEffectPreferNoSchedule && !tolerates(pod.Spec.Tolerations, taint) {
			n++
		}
	}
	return n, nil
}

// NormalizeScore implements framework.ScoreExtensions.
func (*TaintToleration) NormalizeScore(_ context.Context, _ *framework.CycleState, _ *corev1.Pod, scores framework.NodeScoreList) *framework.Status {
	return framework.DefaultNormalizeScore(framework.MaxNodeScore, true, scores)
}

// NodeUnschedulable rejects nodes with spec.unschedulable unless the pod tolerates the
// node.kubernetes.io/unschedulable:NoSchedule taint (as DaemonSet pods do).
type NodeUnschedulable struct{}

var _ framework.FilterPlugin = (*NodeUnschedulable)(nil)

// Name implements framework.Plugin.
func (*NodeUnschedulable) Name() string { return NodeUnschedulableName }

// ErrReasonUnschedulable is kube-scheduler's reason for a cordoned node.
const ErrReasonUnschedulable = "node(s) were unschedulable"

// Filter implements framework.FilterPlugin.
func (*NodeUnschedulable) Filter(_ context.Context, _ *framework.CycleState, pod *corev1.Pod, node *framework.NodeInfo) *framework.Status {
	if !node.Node.Spec.Unschedulable {
		return nil
	}
	if tolerates(pod.Spec.Tolerations, &corev1.Taint{Key: TaintNodeUnschedulable, Effect: corev1.TaintEffectNoSchedule}) {
		return nil
	}
	return framework.NewStatus(framework.UnschedulableAndUnresolvable, ErrReasonUnschedulable)
}

// NodeReady rejects nodes whose Ready condition is not True unless the pod tolerates the
// node.kubernetes.io/not-ready:NoSchedule taint that Kubernetes puts on such nodes.
type NodeReady struct{}

var _ framework.FilterPlugin = (*NodeReady)(nil)

// Name implements framework.Plugin.
func (*NodeReady) Name() string { return NodeReadyName }

// ErrReasonNotReady is the reason for a node that is not Ready (kube-scheduler's former
// CheckNodeCondition predicate).
const ErrReasonNotReady = "node(s) were not ready"

// Filter implements framework.FilterPlugin.
func (*NodeReady) Filter(_ context.Context, _ *framework.CycleState, pod *corev1.Pod, node *framework.NodeInfo) *framework.Status {
	if node.Ready {
		return nil
	}
	if tolerates(pod.Spec.Tolerations, &corev1.Taint{Key: TaintNodeNotReady, Effect: corev1.TaintEffectNoSchedule}) {
		return nil
	}
	return framework.NewStatus(framework.Unschedulable, ErrReasonNotReady)
}
