// Package gc is Bosun's garbage collector: cascading deletion through ownerReferences and the
// pod garbage collector, with the semantics of kube-controller-manager's garbagecollector and
// podgc controllers.
//
//	owner deleted ──> dependents whose owners are all gone are deleted (background propagation);
//	                  dangling references next to a live owner are removed
//	owner with finalizer "orphan" (being deleted) ──> ownerReferences to it removed from its
//	                  dependents, then the finalizer, so the owner goes and they stay
//	owner with finalizer "foregroundDeletion" ──> dependents deleted (in foreground themselves
//	                  when they have dependents); the finalizer goes once no dependent with
//	                  blockOwnerDeletion=true remains
//	every PodGCPeriod ──> Succeeded/Failed pods beyond TerminatedPodThreshold deleted oldest
//	                  first; pods bound to a node that no longer exists deleted
//
// The propagation finalizers are what a Kubernetes API server adds for a DELETE with
// propagationPolicy Orphan or Foreground; the collector honours them whoever set them. An
// owner's absence is confirmed with a live read before a dependent is deleted, so a lagging
// cache never causes a deletion.
package gc
