package store

import (
	"github.com/bosun-gitops/bosun/internal/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/watch"
)

// ListOptions filter and page a List.
type ListOptions struct {
	// LabelSelector and FieldSelector filter objects; nil matches everything.
	LabelSelector labels.Selector
	// FieldSelector supports metadata.name, metadata.namespace and, for pods, spec.nodeName and
	// status.phase (see FieldSet).
	FieldSelector fields.Selector
	// Limit caps the number of objects returned (0 = no limit); Continue resumes a paged list.
	Limit    int64
	Continue string
}

// ListResult is one page of a List: the objects and the revision the list was read at.
type ListResult struct {
	Items []resource.Object
	// ResourceVersion is the etcd revision of the read; watch from it to see every later change.
	ResourceVersion int64
	// Continue is non-empty when more objects remain.
	Continue string
}

// Event is one change seen by Watch. Type is watch.Added, Modified, Deleted, Bookmark or Error.
// For Deleted, Object is the last state before deletion (with the deletion's revision as its
// resourceVersion). For Error, Err says why the watch ended; a compacted start revision gives an
// apierrors "410 Gone" (IsResourceExpired / IsGone) and the caller re-lists.
type Event struct {
	Type   watch.EventType
	Object resource.Object
	Err    error
}

// OpType is the kind of one write in a Batch.
type OpType int

// Batch operations.
const (
	OpCreate OpType = iota + 1 // fails if the object exists
	OpUpdate                   // full update; precondition on ResourceVersion when set
	OpDelete                   // precondition on ResourceVersion when set; "already gone" succeeds
	// OpUpdateWithStatus is OpUpdate that also writes the status, in the same write: what a pod
	// binding does (spec.nodeName and the PodScheduled condition together).
	OpUpdateWithStatus
)

// Op is one write in a Batch. Batch never modifies Object: what it writes and returns is a copy.
type Op struct {
	Type     OpType
	Resource *resource.Resource
	Object   resource.Object // for OpDelete only namespace, name and resourceVersion are read
	// Base, for an update, is the stored object that Object was made from, at Object's
	// resourceVersion (an informer's copy, which the store does not modify). With it the
	// store neither reads nor decodes the stored value: it writes with that resourceVersion as
	// the precondition, so a changed object still fails with Conflict. An update with a Base
	// is written even when it changes nothing.
	Base resource.Object
}

// base returns op's Base when the store can write op against it without reading.
func (op Op) base() resource.Object {
	if op.Base == nil || op.Type != OpUpdate && op.Type != OpUpdateWithStatus {
		return nil
	}
	rv := op.Object.GetResourceVersion()
	if rv == "" || op.Base.GetResourceVersion() != rv || op.Base.GetUID() == "" {
		return nil
	}
	return op.Base
}

// OpResult is the outcome of one Op of a Batch, in the same position.
type OpResult struct {
	Object resource.Object // the stored object (nil for deletes)
	Err    error           // an apierrors StatusError (Conflict, AlreadyExists, NotFound) or nil
}

// DeleteOptions carry the preconditions and propagation policy of a Delete, as in
// metav1.DeleteOptions.
type DeleteOptions struct {
	// Preconditions, when set, must match the stored object's UID and/or resourceVersion, or
	// Delete fails with Conflict.
	Preconditions *metav1.Preconditions
	// PropagationPolicy says what happens to the object's dependents, as in Kubernetes:
	// Orphan marks the object with the "orphan" finalizer and Foreground with
	// "foregroundDeletion" (the garbage collector then orphans or deletes the dependents and
	// removes the finalizer); Background removes both, so the object goes at once unless other
	// finalizers hold it, and its dependents are collected afterwards. nil is Background except
	// that a propagation finalizer already on the object is kept. Events take no propagation
	// finalizer: they have no dependents and the collector does not watch them.
	PropagationPolicy *metav1.DeletionPropagation
	// GracePeriodSeconds, for a pod bound to a node, is how long its containers get to stop
	// before its node deletes it for good; nil = the pod's terminationGracePeriodSeconds, 0 =
	// at once (a forced delete, which does not wait for the node). Other kinds ignore it.
	GracePeriodSeconds *int64
}

// WatchOptions select where a Watch starts and which objects it reports.
type WatchOptions struct {
	// ResourceVersion: events after this revision (exclusive). 0 means "unset" as in Kubernetes:
	// synthetic ADDED events for every current object first, then changes.
	ResourceVersion int64
	LabelSelector   labels.Selector
	FieldSelector   fields.Selector
	// Bookmarks asks for periodic watch.Bookmark events carrying only the current revision.
	Bookmarks bool
}
