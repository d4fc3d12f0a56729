// Package plugins holds the scheduler's filter and score plugins, each the Bosun counterpart of
// the kube-scheduler plugin of the same name, with the same rejection reasons:
//
//	filters: NodeUnschedulable, NodeReady, NodeName, TaintToleration, NodeAffinity (node selector
//	         and required node affinity), NodePorts, NodeResourcesFit
//	scores:  NodeResourcesLeastAllocated, NodeResourcesBalancedAllocation, SelectorSpread,
//	         TaintToleration (PreferNoSchedule)
//
// NewRegistry registers them all; DefaultPlugins is the enabled set with kube-scheduler's
// weights.
package plugins

import "github.com/bosun-gitops/bosun/operator/scheduler/framework"

// Plugin names.
const (
	NodeUnschedulableName  = "NodeUnschedulable"
	NodeReadyName          = "NodeReady"
	NodeNameName           = "NodeName"
	TaintTolerationName    = "TaintToleration"
	NodeAffinityName       = "NodeAffinity"
	NodePortsName          = "NodePorts"
	NodeResourcesFitName   = "NodeResourcesFit"
	LeastAllocatedName     = "NodeResourcesLeastAllocated"
	BalancedAllocationName = "NodeResourcesBalancedAllocation"
	SelectorSpreadName     = "SelectorSpread"
)

// NewRegistry returns a registry of every plugin of this package.
func NewRegistry() framework.Registry {
	plugin := func(p framework.Plugin) framework.Factory {
		return func() (framework.Plugin, error) { return p, nil }
	}
	return framework.Registry{
		NodeUnschedulableName:  plugin(&NodeUnschedulable{}),
		NodeReadyName:          plugin(&NodeReady{}),
		NodeNameName:           plugin(&NodeName{}),
		TaintTolerationName:    plugin(&TaintToleration{}),
		NodeAffinityName:       plugin(&NodeAffinity{}),
		NodePortsName:          plugin(&NodePorts{}),
		NodeResourcesFitName:   plugin(&NodeResourcesFit{}),
		LeastAllocatedName:     plugin(&LeastAllocated{}),
		BalancedAllocationName: plugin(&BalancedAllocation{}),
		SelectorSpreadName:     plugin(&SelectorSpread{}),
	}
}

// DefaultPlugins is the default plugin set in filter order (cheap and unresolvable checks first,
// as kube-scheduler orders them) with kube-scheduler's default score weights.
func DefaultPlugins() []framework.PluginConfig {
	return []framework.PluginConfig{
		{Name: NodeUnschedulableName},
		{Name: NodeNameName},
		{Name: TaintTolerationName, Weight: 3},
		{Name: NodeReadyName},
		{Name: NodeAffinityName},
		{Name: NodePortsName},
		{Name: NodeResourcesFitName},
		{Name: LeastAllocatedName, Weight: 1},
		{Name: BalancedAllocationName, Weight: 1},
		{Name: SelectorSpreadName, Weight: 2},
	}
}
