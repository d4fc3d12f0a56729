// Package preview deploys pull requests into preview environments: a pull request into the
// tracked branch that carries the preview label (--preview-label, default "preview") is deployed
// into its own namespace pr-<number>, updated on every new head and removed (the namespace is
// deleted, which deletes everything in it) when the pull request is closed or merged, the label
// is removed or the pull request is retargeted. As Argo CD's pull-request generator and Flux
// preview setups do, the head is loaded with the normal loader at the operator's --path and
// rewritten (Rewrite):
//
//   - every namespaced object goes into pr-<number>; cluster-scoped objects (Namespace, Cluster,
//     Machine) are skipped: a preview shares the cluster with the tracked branch;
//   - Services become ClusterIP-only and lose their node ports and fixed cluster IPs, so that
//     nothing clashes with the tracked branch's copy;
//   - containers lose their hostPorts; a workload with hostNetwork is skipped (it would take
//     the node ports of the tracked branch's copy), and the status says so;
//   - every object and pod template carries the label bosun.dev/preview=<number>; objects
//     carry the source and commit annotations as synced objects do, so API writes to them are
//     refused as writes to any Git-managed object are, naming the pull request.
//
// The tracked branch's sync leaves objects with the preview label out of its inventory: it
// never prunes or adopts them.
//
//	webhook PR event ─> Manager.HandlePullRequest ─> desired state of the PR (newest event wins)
//	    ─> one worker per PR: record (ConfigMap kube-system/bosun-preview-<n>) ─> status pending
//	    ─> LoadRef(refs/pull/<n>/head, head) ─> Rewrite ─> namespace pr-<n>
//	    ─> gitsync.ApplyScope (diff against pr-<n>: create, update, prune, batched)
//	    ─> health of its workloads ─> bosun/preview success | failure, record Deployed
//	closed / unlabelled ─> record Removing ─> delete namespace pr-<n> ─> record deleted
//	leader start ─> every record resumed (a crash mid-way converges)
//
// An invalid head deploys nothing new: the environment keeps what it runs, and bosun/preview
// fails with the first errors (bosun/plan lists them all).
package preview
