// Package nodelifecycle watches node heartbeats and reacts to nodes that stop posting them, the
// way kube-controller-manager's node lifecycle controller and taint manager do.
//
//	Lease kube-node-lease/<node> ──renewTime changes──> probe time = now
//	now - probe > nodeMonitorGracePeriod ──> Ready=Unknown, taints unreachable:NoSchedule+NoExecute,
//	                                         pods Ready=False, event NodeNotReady
//	taint age > pod's tolerationSeconds (or podEvictionTimeout) ──> pod deleted (TaintManagerEviction)
//	lease renewed again ──> taints removed, Ready=True, event NodeReady
//
// Like Kubernetes, the controller measures lease age on its own clock (the moment it saw
// renewTime change), so agent clock skew does not matter. On first sight (a new node, an operator
// restart or failover) every node gets a fresh grace period from that moment, whatever its
// renewTime says: an operator that was down longer than the grace period does not mark every node
// NotReady at once, and a node that died meanwhile is noticed one grace period after the start. A
// node already marked NotReady (Unknown) before the restart keeps its condition and taints, and so
// its eviction schedule, until its lease is renewed while the controller watches. A node whose
// agent reports Ready=False gets the not-ready taints instead, with the same eviction rules.
package nodelifecycle
