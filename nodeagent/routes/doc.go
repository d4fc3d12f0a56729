// Package routes gives pods on different nodes a flat network, host-gw style: the agent routes
// every other node's pod CIDR via that node's InternalIP, enables IPv4 forwarding, and
// masquerades pod traffic that leaves the cluster pod network (pod-to-pod traffic keeps its
// source address, so the CNI bridge must run with ipMasq: false).
//
//	node A (10.244.1.0/24)                              node B (10.244.2.0/24)
//	pod 10.244.1.2 ─ cni0 ─ eth0 192.168.77.1 ═══ L2 ═══ 192.168.77.2 eth0 ─ cni0 ─ pod 10.244.2.2
//	route 10.244.2.0/24 via 192.168.77.2 proto bosun    route 10.244.1.0/24 via 192.168.77.1 proto bosun
//
// The reconciler is level-triggered: Sync computes the wanted routes from the Node list and
// diffs them against the kernel's routes carrying Bosun's protocol number (Protocol), so routes
// that anyone else made are never touched. Nodes must share an L2 network (the gateway is the
// peer itself), as with flannel's host-gw backend.
package routes
