package plugins

import (
	"context"
	"slices"
	"strconv"

	"github.com/bosun-gitops/bosun/operator/scheduler/framework"
	corev1 "k8s.io/api/core/v1"
)

// NodeName rejects every node but spec.nodeName when it is set.
type NodeName struct{}

var _ framework.FilterPlugin = (*NodeName)(nil)

// ErrReasonNodeName is kube-scheduler's reason.
const ErrReasonNodeName = "node(s) didn't match the requested node name"

// Name implements framework.Plugin.
func (*NodeName) Name() string { return NodeNameName }

// Filter implements framework.FilterPlugin.
func (*NodeName) Filter(_ context.Context, _ *framework.CycleState, pod *corev1.Pod, node *framework.NodeInfo) *framework.Status {
	if pod.Spec.NodeName == "" || pod.Spec.NodeName == node.Node.Name {
		return nil
	}
	return framework.NewStatus(framework.UnschedulableAndUnresolvable, ErrReasonNodeName)
}

// NodeAffinity rejects nodes that do not match spec.nodeSelector or the required node affinity
// (node selector terms are ORed, their requirements ANDed; matchFields supports metadata.name,
// which DaemonSet pods use to pin themselves to a node).
type NodeAffinity struct{}

var (
	_ framework.PreFilterPlugin = (*NodeAffinity)(nil)
	_ framework.FilterPlugin    = (*NodeAffinity)(nil)
)

// ErrReasonAffinity is kube-scheduler's reason.
const ErrReasonAffinity = "node(s) didn't match Pod's node affinity/selector"

// Name implements framework.Plugin.
func (*NodeAffinity) Name() string { return NodeAffinityName }

// PreFilter implements framework.PreFilterPlugin: a required term with a matchFields
// requirement other than metadata.name can match no node, so the pod is rejected at once.
func (*NodeAffinity) PreFilter(_ context.Context, _ *framework.CycleState, pod *corev1.Pod) *framework.Status {
	sel := requiredTerms(pod)
	if sel == nil || len(sel.NodeSelectorTerms) == 0 {
		return nil
	}
	for _, t := range sel.NodeSelectorTerms {
		usable := len(t.MatchExpressions) > 0 || len(t.MatchFields) > 0
		for _, r := range t.MatchFields {
			usable = usable && r.Key == "metadata.name"
		}
		if usable {
			return nil
		}
	}
	return framework.NewStatus(framework.UnschedulableAndUnresolvable, ErrReasonAffinity)
}

func requiredTerms(pod *corev1.Pod) *corev1.NodeSelector {
	if a := pod.Spec.Affinity; a != nil && a.NodeAffinity != nil {
		return a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution
	}
	return nil
}

// Filter implements framework.FilterPlugin.
func (*NodeAffinity) Filter(_ context.Context, _ *framework.CycleState, pod *corev1.Pod, node *framework.NodeInfo) *framework.Status {
	if len(pod.Spec.NodeSelector) == 0 && pod.Spec.Affinity == nil {
		return nil
	}
	if !MatchesNode(pod, node.Node) {
		return framework.NewStatus(framework.UnschedulableAndUnresolvable, ErrReasonAffinity)
	}
	return nil
}

// MatchesNode reports whether node satisfies pod's node selector and required node affinity.
func MatchesNode(pod *corev1.Pod, node *corev1.Node) bool {
	for k, v := range pod.Spec.NodeSelector {
		if lv, ok := node.Labels[k]; !ok || lv != v {
			return false
		}
	}
	sel := requiredTerms(pod)
	if sel == nil {
		return true
	}
	for i := range sel.NodeSelectorTerms {
		if termMatches(&sel.NodeSelectorTerms[i], node) {
			return true
		}
	}
	return false
}

// termMatches: an empty term matches no node, as in Kubernetes.
func termMatches(t *corev1.NodeSelectorTerm, node *corev1.Node) bool {
	if len(t.MatchExpressions) == 0 && len(t.MatchFields) == 0 {
		return false
	}
	for _, r := range t.MatchExpressions {
		v, ok := node.Labels[r.Key]
		if !requirementMatches(r, v, ok) {
			return false
		}
	}
	for _, r := range t.MatchFields {
		if r.Key != "metadata.name" {
			return false // the only field Kubernetes supports
		}
		if !requirementMatches(r, node.Name, true) {
			return false
		}
	}
	return true
}

func requirementMatches(r corev1.NodeSelectorRequirement, v string, ok bool) bool {
	switch r.Operator {
	case corev1.NodeSelectorOpIn:
		return ok && slices.Contains(r.Values, v)
	case corev1.NodeSelectorOpNotIn:
		return !ok || !slices.Contains(r.Values, v)
	case corev1.NodeSelectorOpExists:
		return ok
	case corev1.NodeSelectorOpDoesNotExist:
		return !ok
	case corev1.NodeSelectorOpGt, corev1.NodeSelectorOpLt:
		if !ok || len(r.Values) != 1 {
			return false
		}
		have, err1 := strconv.ParseInt(v, 10, 64)
		want, err2 := strconv.ParseInt(r.Values[0], 10, 64)
		if err1 != nil || err2 != nil {
			return false
		}
		if r.Operator == corev1.NodeSelectorOpGt {
			return have > want
		}
		return have < want
	}
	return false
}
