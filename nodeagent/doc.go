// Package nodeagent is `bosun agent`: it turns a Linux machine into a node. It registers the Node
// and renews its Lease through the operator's API, runs the pods bound to it with containerd, one
// pinned network namespace per pod wired with CNI, reports their status, and serves their logs.
// Beside the pods it runs the node's share of the cluster network (NodeStack): the service proxy
// (iptables), the cluster DNS on the pod bridge's gateway address, and routes to other nodes' pod
// CIDRs with the cluster-wide masquerade.
//
//	operator API ──informer (spec.nodeName=me)──> pods.Manager ──> runtime (containerd)
//	      ^   │                                       │        └──> network (netns + CNI, ipMasq off)
//	      │   └─ Services, Endpoints, Nodes ──> proxy (iptables), dns (gateway:53), routes (+masquerade)
//	      └────────── Node, Lease, pod status ────────┘
//
// Its credentials come from the join (Join, with a bootstrap token): a client certificate from
// the cluster CA for the API, and a serving certificate from the node serving CA for its logs
// endpoint, which accepts only the operator's client certificate. The agent renews both through
// the join endpoint, at start and hourly, once a third of their validity remains (credentials.go).
package nodeagent
