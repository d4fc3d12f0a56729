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
// renewTime change), so agent clock skew does not matter; only on first sight (new node, operator
// restart) is a past renewTime taken at its word, so a node that died while no operator was
// running is noticed one grace period after its last heartbeat. A node whose agent reports
// Ready=False gets the not-ready taints instead, with the same eviction rules.
package nodelifecycle
