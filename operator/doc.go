// Package operator wires Bosun's control plane into one process: the etcd-backed store (embedded
// or external), the Kubernetes-shaped API server, and — on the elected leader only — Git sync.
//
//	git remote ──fetch──> gitsync ──Batch──> store <──> etcd (embedded or --etcd-endpoints)
//	                                           ^
//	 bosun CLI, client-go, agents ──HTTPS──> apiserver
//
// Several operators may share one etcd cluster: all of them serve the API, and leader election
// through etcd decides which one reconciles.
package operator
