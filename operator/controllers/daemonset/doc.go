// Package daemonset runs one pod of each DaemonSet on every eligible node, with the semantics of
// kube-controller-manager's DaemonSet controller.
//
//	node eligible (nodeSelector, required nodeAffinity, NoSchedule/NoExecute taints vs the
//	template's tolerations plus the automatic daemon tolerations)
//	  ── no pod ──> create one pinned to the node
//	node no longer eligible (untolerated NoExecute taint, selector/affinity mismatch, node gone)
//	  ──> delete its pods
//	template changed ──> new ControllerRevision (hash in the pods' controller-revision-hash
//	  label) ──> rolling update: maxUnavailable old pods at a time (default 1), or with maxSurge
//	  a new pod beside the old one, the old one deleted once the new one is available
//
// Pinning: like Kubernetes (since 1.12), a daemon pod is not bound by the controller; it gets a
// required node affinity term `matchFields: metadata.name In [<node>]` that replaces the
// template's required terms (already evaluated here), and the scheduler binds it, so resource
// fit and host ports are checked as for any pod. The pod's target node is read back from that
// term (or from spec.nodeName once bound).
//
// Pods created or deleted but not yet seen in the informer cache are remembered (Kubernetes'
// "expectations"), so a lagging cache never makes a second pod. Pods are created in slow-start
// batches (1, 2, 4, ...). With the OnDelete strategy, old pods are replaced only when deleted.
package daemonset
