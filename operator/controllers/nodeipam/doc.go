// Package nodeipam gives every node a pod CIDR: one /nodeCIDRMaskSize (bosun.yaml, default 24;
// IPv6: /64) of the cluster's pod CIDR, the lowest free one, written to the node's spec.podCIDR and spec.podCIDRs, as Kubernetes'
// range allocator does.
//
//	Cluster.spec.podCIDR 10.244.0.0/16 ──split──> 10.244.0.0/24, 10.244.1.0/24, ...
//	Node without spec.podCIDR ──> Machine.spec.podCIDR if pinned, else lowest free subnet
//
// The allocator is rebuilt from the stored nodes (and pinned machines) whenever the controller
// starts, so assignments survive restarts without duplicates; a node keeps a podCIDR it already
// has. When the range is full the node gets a CIDRNotAvailable event and the condition
// NetworkUnavailable=True, and is retried when a node goes away. Allocation runs on one worker.
package nodeipam
