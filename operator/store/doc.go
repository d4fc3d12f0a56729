// Package store keeps Bosun's objects in etcd the way the Kubernetes API server does: one value
// per object under /bosun/registry/<group>/<resource>/[<namespace>/]<name> (protobuf for
// Kubernetes' kinds, JSON for Bosun's own; see codec.go), the etcd
// ModRevision as resourceVersion, optimistic concurrency through transaction compares, and
// watches that resume from a revision and ask for a re-list ("410 Gone") after compaction.
//
//	gitsync ──Batch──┐
//	apiserver ─CRUD──┼─> Store ──txn/range/watch──> etcd (StartEtcd: embedded, or Connect)
//	controllers ─────┘        └─ RunCompactor keeps the last N revisions; an embedded member
//	                             defragments its file and recovers from a full one (defrag.go)
//
// Errors are k8s.io/apimachinery/pkg/api/errors StatusErrors (NotFound, AlreadyExists,
// Conflict, Invalid, RequestEntityTooLarge, ResourceExpired), ready to be served as
// metav1.Status. Objects passed in are never mutated; objects returned are fresh copies carrying
// their new resourceVersion, except those of watch events: every watch of a resource receives the
// same events, so the store decodes each event's value once and hands all of them the same
// object, which they must not modify (as client-go asks of the objects in an informer's cache).
//
// The store does what Kubernetes' pod registry and defaulting do to every pod written, whoever
// writes it: a new pod without a phase is Pending, and a container's limit without a request
// becomes its request (package poddefaults), so that controllers' pods, created from templates
// that keep no such default, are scheduled as in Kubernetes.
//
// A minimal single-member setup:
//
//	etcd, err := store.StartEtcd(ctx, store.EtcdConfig{Name: "bosun", DataDir: dir, Logger: log})
//	if err != nil { ... }
//	defer etcd.Close()
//	s := store.New(etcd.Client(), store.Options{Logger: log})
//	pod, err := s.Create(ctx, resource.Pods, &corev1.Pod{...})
package store
