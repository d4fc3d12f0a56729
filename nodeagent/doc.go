// Package nodeagent is `bosun agent`: it turns a Linux machine into a node. It registers the Node
// and renews its Lease through the operator's API, runs the pods bound to it with containerd, one
// pinned network namespace per pod wired with CNI, reports their status, and serves their logs.
//
//	operator API ──informer (spec.nodeName=me)──> pods.Manager ──> runtime (containerd)
//	      ^                                           │        └──> network (netns + CNI)
//	      └────────── Node, Lease, pod status ────────┘
package nodeagent
