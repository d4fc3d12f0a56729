// Package scheduler binds pending pods to nodes, in the shape of kube-scheduler: informers feed
// an in-memory cache of nodes and their pods and a scheduling queue; one loop pops a pod, runs the
// framework's filter and score plugins over a sample of the nodes, assumes the pod on the best
// node (so the next pod already sees it there) and hands it to the binder, which writes
// spec.nodeName and the PodScheduled condition in batches, each pod with its resourceVersion as
// precondition (compare-and-swap).
//
//	node/pod informers ──> cache (nodes + bound/assumed pods)
//	         │                    ^ assume           │ forget on failure
//	         v                    │                  v
//	   schedulingQueue ──Pop──> scheduleOne ──> binder ──Store.Batch──> etcd
//	   active|backoff|unschedulable   │ fits nowhere: PodScheduled=False + FailedScheduling event
//	         ^────────────────────────┘
//
// A pod that fits no node is parked until a cluster event (a node added or updated, a bound pod
// deleted) might change that; a failed bind (a conflict) forgets the assumed pod and retries the
// pod after a backoff.
package scheduler
