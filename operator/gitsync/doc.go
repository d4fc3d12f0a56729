// Package gitsync turns commits of the desired-state repository into objects in the store: it
// fetches the configured branch with go-git, loads and validates the whole tree with repolayout,
// diffs it against the objects Git manages and writes the difference with Store.Batch.
//
//	poll (Interval) ─┐
//	Trigger() ───────┼─> fetch ─> commit ─> LoadTree ─> plan (diff vs live) ─> Batch writes
//	spec.syncRequested┘                       │ invalid: nothing applied, status Failed
//	                                          └─> GitSync status (UpdateStatus) + metrics + log
//
// The loop is level-triggered: every sync recomputes the plan from what is live, so a process
// killed half-way through an apply converges on restart without losing or doubling anything.
//
// Ownership of metadata: labels and annotations of a managed object are exactly what the manifest
// says (as Argo CD and Flux do), plus Bosun's own annotations and the annotations that
// controllers are known to write (see keepAnnotationPrefixes). ownerReferences and finalizers set
// by others are kept when the manifest sets none, and per-kind hooks keep controller-allocated
// spec fields (a Service's clusterIP, nodePorts, ...) that the manifest leaves empty. Status is
// never written by Git sync.
package gitsync
