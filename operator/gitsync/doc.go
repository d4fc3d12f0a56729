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
// The remote: every fetch has a deadline (Config.FetchTimeout; for ssh it is also set on the
// connection, see deadline.go), so a hung remote fails the sync instead of stalling the loop. A
// head that does not descend from the applied commit (a force-push) is refused, the last good
// commit staying live, until the GitSync's spec.acceptRewrite names it (`bosun sync
// --accept-rewrite`) or unless Config.FollowRewrites follows rewrites as Flux does; the status
// then says "history rewritten". Credentials, known_hosts and the CA bundle (Config.CAFile) are
// read again before each fetch.
//
// Secrets: the address may name a user but never carry a password, and a token goes over https
// only (plain http to loopback alone); Validate refuses the rest. What is printed or stored
// (logs, status messages, the GitSync spec that every node may read) names the address through
// RedactURL, and every fetch error has the token masked (redact.go): a remote's answer may
// quote the credentials it was sent.
//
// Cost per sync: a repolayout.Loader kept across syncs re-parses only the files whose git blob
// changed (the checks across files still run on the whole set); what is live is read as
// metadata only (Store.ListMetadata: names, applied hashes, resourceVersions), and only the
// objects the plan updates or adopts are read in full. A commit that changes one object costs
// a fetch, a walk of the tree, one parsed file, a metadata list and one write.
//
// Ownership of metadata: labels and annotations of a managed object are exactly what the manifest
// says (as Argo CD and Flux do), plus Bosun's own annotations and the annotations that
// controllers are known to write (see keepAnnotationPrefixes). ownerReferences and finalizers set
// by others are kept when the manifest sets none, and per-kind hooks keep controller-allocated
// spec fields (a Service's clusterIP, nodePorts, ...) that the manifest leaves empty. Status is
// never written by Git sync. An unmanaged object that Git declares is adopted, unless a
// controller owns it (a ReplicaSet's pod): then the commit is refused at the manifest's line.
package gitsync
