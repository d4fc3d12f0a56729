// Package machine is the operator's machine controller: it turns Machine objects (machines/*.yaml
// in Git) into nodes by bootstrapping them over SSH (package bootstrap), upgrades their agents
// when the operator's own binary changes, and retires them when their file is removed.
//
//	Machine added/changed ─> Pending ─> Connecting ─> Installing ─> Starting ─> Ready
//	                              ^            (error: Failed, retried with backoff)  │
//	operator binary digest ≠ status.agentDigest ─> upgrade (maxUnavailable at a time) ┘
//	Machine deleted (finalizer) ─> Draining: cordon, evict pods, stop and remove the agent,
//	                               delete the Node ─> Retired ─> finalizer removed
//
// Bootstraps run in goroutines bounded by Options.MaxParallel, outside the work queue, so a slow
// upload never holds up other machines' reconciles. A host key mismatch is not retried until the
// Machine's spec changes. A failed upgrade stops the rollout: no other machine starts its upgrade
// until that machine's bootstrap succeeds (retried with backoff, or re-run when its spec changes).
package machine
