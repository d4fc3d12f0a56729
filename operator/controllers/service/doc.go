// Package service is the Service allocation controller: it gives every Service a cluster IP from
// the cluster's service CIDR and every NodePort port a node port in 30000-32767, the job
// Kubernetes' API server does with its IP and port allocators.
//
// Each IP and port is claimed with a create-if-absent key in etcd, outside the object registry:
//
//	/bosun/allocations/serviceips/<ip>    -> {"namespace","name","uid"} of the owning Service
//	/bosun/allocations/nodeports/<port>   -> same
//
// etcd's transaction makes the claim atomic, so two allocators (two operators, or one restarted
// while the old one still runs) never hand out the same value, and the claims survive restarts.
// A claim is written before the Service is updated with resourceVersion as a precondition; a
// claim that never made it into the Service is released later only if its ModRevision is older
// than the Service's resourceVersion, which proves that the write that claim was made for has
// failed. Claims of deleted Services are released at once (from the informer's final state) and
// by a repair pass at start and every RepairInterval, which also catches deletions that happened
// while no operator ran.
//
// Policy, Kubernetes' where it has one:
//   - The network and (IPv4) broadcast addresses are never used. The first address (.1) is
//     reserved for the API service: only Service default/kubernetes gets it, dynamically or on
//     request; anybody else asking for it is refused. IPv6 ranges are capped at 2^20 addresses.
//   - A requested spec.clusterIP or nodePort is honoured when free; when it is taken by another
//     Service or outside the range, nothing is allocated instead: a Warning event is recorded and
//     the status condition "Allocated" turns False, and the Service is retried when claims are
//     released. Consumers (proxy, DNS) should ignore a Service whose Allocated condition is False.
//   - clusterIP "None" is headless: no IP. type ExternalName has no IP either.
//   - NodePort and LoadBalancer ports get node ports; a port number may repeat within one Service
//     (TCP and UDP on the same node port), never across Services. When the type changes away
//     from NodePort the node ports are cleared from the spec and released.
//
// Writing spec.clusterIP, clusterIPs, ipFamilies, ipFamilyPolicy and ports[].nodePort of a
// Git-managed Service is allowed: Git sync keeps these fields when the manifest leaves them empty.
package service
