// Package namespace deletes what a deleted namespace contained, as Kubernetes' namespace
// controller does.
//
// Kubernetes keeps a deleted namespace in phase Terminating until its content is gone: the API
// server puts the "kubernetes" finalizer in spec.finalizers. Bosun's store honours only
// metadata.finalizers, so the controller gives every live namespace the finalizer "kubernetes" in
// both lists; deleting it then marks it (deletionTimestamp), the controller sets status.phase
// Terminating, deletes every object of every namespaced kind in it, and removes the finalizer
// from both lists once nothing is left, which completes the deletion.
//
//	Namespace deleted ──> phase Terminating ──> delete pods, services, ... (every namespaced kind)
//	  ──> nothing left ──> finalizer "kubernetes" removed ──> namespace gone
//
// A namespace deleted while it had no finalizer (created before the controller added one) just
// disappears; the controller then deletes its content when it sees the deletion.
package namespace
