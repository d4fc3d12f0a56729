// Package controllers is the runtime shared by the operator's reconcilers: the Context they are
// built from (store, shared informers, event recorder, cluster settings), the Controller contract,
// a rate-limited work-queue runner, and the AdoptionCheck that re-reads an owner from the store
// before it adopts orphans (the cache may be behind on its deletion). Each controller lives in its own sub-package and is
// level-triggered: it reads the desired and observed state from informer caches, writes the
// difference through the store, and is safe to run again at any moment.
//
//	store ──watch──> informer.Factory ──handlers──> workqueue ──workers──> Reconcile(key)
//	  ^                                                                      │
//	  └──────────────────────── Create/Update/Delete/UpdateStatus ───────────┘
//
// Only the elected leader runs controllers (see package operator).
package controllers
