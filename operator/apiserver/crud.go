package apiserver

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/bosun-gitops/bosun/internal/resource"
	"github.com/bosun-gitops/bosun/operator/store"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

func (s *Server) handleGet(w http.ResponseWriter, r *http.Request, ri *requestInfo) {
	obj, err := s.cfg.Store.Get(r.Context(), ri.Resource, ri.Namespace, ri.Name)
	if err != nil {
		writeError(w, err)
		return
	}
	s.writeObject(w, r, http.StatusOK, ri.Resource, obj)
}

// selectors parses labelSelector and fieldSelector.
func selectors(r *http.Request) (labels.Selector, fields.Selector, error) {
	q := r.URL.Query()
	var ls labels.Selector
	var fs fields.Selector
	if v := q.Get("labelSelector"); v != "" {
		sel, err := labels.Parse(v)
		if err != nil {
			return nil, nil, apierrors.NewBadRequest(fmt.Sprintf("labelSelector %q: %v", v, err))
		}
		ls = sel
	}
	if v := q.Get("fieldSelector"); v != "" {
		sel, err := fields.ParseSelector(v)
		if err != nil {
			return nil, nil, apierrors.NewBadRequest(fmt.Sprintf("fieldSelector %q: %v", v, err))
		}
		fs = sel // the store refuses fields it does not index, naming the ones it does
	}
	return ls, fs, nil
}

func (s *Server) handleList(w http.ResponseWriter, r *http.Request, ri *requestInfo) {
	ls, fs, err := selectors(r)
	if err != nil {
		writeError(w, err)
		return
	}
	q := r.URL.Query()
	opts := store.ListOptions{LabelSelector: ls, FieldSelector: fs, Continue: q.Get("continue")}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			writeError(w, apierrors.NewBadRequest(fmt.Sprintf("limit %q: must be a non-negative integer", v)))
			return
		}
		opts.Limit = n
	}
	lr, err := s.cfg.Store.List(r.Context(), ri.Resource, ri.Namespace, opts)
	if err != nil {
		writeError(w, err)
		return
	}
	s.writeList(w, r, ri.Resource, lr)
}

// dryRun reports whether the request asks for dryRun=All; other values are refused.
func dryRun(r *http.Request) (bool, error) {
	vals := r.URL.Query()["dryRun"]
	for _, v := range vals {
		if v != metav1.DryRunAll {
			return false, apierrors.NewBadRequest(fmt.Sprintf("dryRun %q: only All is supported", v))
		}
	}
	return len(vals) > 0, nil
}

func (s *Server) handleCreate(w http.ResponseWriter, r *http.Request, ri *requestInfo, u *userInfo) {
	res := ri.Resource
	dry, err := dryRun(r)
	if err != nil {
		writeError(w, err)
		return
	}
	data, err := readBody(r)
	if err != nil {
		writeError(w, err)
		return
	}
	obj, err := s.codec.decode(r, res, data)
	if err != nil {
		writeError(w, err)
		return
	}
	if res.Namespaced {
		if ns := obj.GetNamespace(); ns != "" && ns != ri.Namespace {
			writeError(w, apierrors.NewBadRequest("the namespace of the provided object does not match the namespace sent on the request"))
			return
		}
		if ri.Namespace == "" {
			writeError(w, apierrors.NewBadRequest(fmt.Sprintf("%s is namespaced: POST to /namespaces/{namespace}/%s", res, res.Resource)))
			return
		}
		obj.SetNamespace(ri.Namespace)
	} else {
		obj.SetNamespace("")
	}
	if obj.GetName() == "" && obj.GetGenerateName() == "" {
		writeError(w, apierrors.NewInvalid(res.GroupVersionKind().GroupKind(), "", field.ErrorList{
			field.Required(field.NewPath("metadata", "name"), "name or generateName is required")}))
		return
	}
	if err := reservedMetadata(res, obj, nil); err != nil {
		writeError(w, err)
		return
	}
	if node, ok := u.nodeName(); ok && !u.inGroup(groupMasters) && (res == resource.Nodes || res == resource.Leases) && obj.GetName() != node {
		writeError(w, forbidden(u, &requestInfo{Resource: res, Namespace: ri.Namespace, Name: obj.GetName(), Verb: verbCreate}))
		return
	}
	if res.Namespaced {
		ns, err := s.cfg.Store.Get(r.Context(), resource.Namespaces, "", ri.Namespace)
		if err != nil {
			writeError(w, err) // NotFound names the namespace, as Kubernetes does
			return
		}
		if ns.GetDeletionTimestamp() != nil {
			writeError(w, apierrors.NewForbidden(res.GroupResource(), obj.GetName(),
				fmt.Errorf("unable to create new content in namespace %s because it is being terminated", ri.Namespace)))
			return
		}
	}
	if dry {
		if obj.GetName() != "" {
			if _, err := s.cfg.Store.Get(r.Context(), res, obj.GetNamespace(), obj.GetName()); err == nil {
				writeError(w, apierrors.NewAlreadyExists(res.GroupResource(), obj.GetName()))
				return
			} else if !apierrors.IsNotFound(err) {
				writeError(w, err)
				return
			}
		}
		s.writeObject(w, r, http.StatusCreated, res, obj)
		return
	}
	created, err := s.cfg.Store.Create(r.Context(), res, obj)
	if err != nil {
		writeError(w, err)
		return
	}
	s.writeObject(w, r, http.StatusCreated, res, created)
}

// checkIdentity makes a body's name and namespace agree with the path; empty ones are filled in.
func checkIdentity(ri *requestInfo, obj resource.Object) error {
	if obj.GetName() == "" {
		obj.SetName(ri.Name)
	}
	if obj.GetName() != ri.Name {
		return apierrors.NewBadRequest(fmt.Sprintf("the name of the object (%s) does not match the name on the URL (%s)", obj.GetName(), ri.Name))
	}
	if ri.Resource.Namespaced {
		if ns := obj.GetNamespace(); ns != "" && ns != ri.Namespace {
			return apierrors.NewBadRequest("the namespace of the provided object does not match the namespace sent on the request")
		}
		obj.SetNamespace(ri.Namespace)
	} else {
		obj.SetNamespace("")
	}
	return nil
}

func (s *Server) handleUpdate(w http.ResponseWriter, r *http.Request, ri *requestInfo) {
	dry, err := dryRun(r)
	if err != nil {
		writeError(w, err)
		return
	}
	data, err := readBody(r)
	if err != nil {
		writeError(w, err)
		return
	}
	obj, err := s.codec.decode(r, ri.Resource, data)
	if err != nil {
		writeError(w, err)
		return
	}
	if err := checkIdentity(ri, obj); err != nil {
		writeError(w, err)
		return
	}
	existing, err := s.cfg.Store.Get(r.Context(), ri.Resource, ri.Namespace, ri.Name)
	if err != nil {
		writeError(w, err)
		return
	}
	if ri.Subresource == "" {
		if err := gitRule(ri.Resource, existing); err != nil {
			writeError(w, err)
			return
		}
		if err := reservedMetadata(ri.Resource, obj, existing); err != nil {
			writeError(w, err)
			return
		}
	}
	if dry {
		if rv := obj.GetResourceVersion(); rv != "" && rv != existing.GetResourceVersion() {
			writeError(w, conflictStale(ri))
			return
		}
		s.writeObject(w, r, http.StatusOK, ri.Resource, obj)
		return
	}
	updated, err := s.write(r, ri, obj)
	if err != nil {
		writeError(w, err)
		return
	}
	s.writeObject(w, r, http.StatusOK, ri.Resource, updated)
}

// write stores obj as a spec update or, for the status subresource, a status update.
func (s *Server) write(r *http.Request, ri *requestInfo, obj resource.Object) (resource.Object, error) {
	if ri.Subresource == "status" {
		return s.cfg.Store.UpdateStatus(r.Context(), ri.Resource, obj)
	}
	return s.cfg.Store.Update(r.Context(), ri.Resource, obj)
}

func conflictStale(ri *requestInfo) error {
	return apierrors.NewConflict(ri.Resource.GroupResource(), ri.Name,
		fmt.Errorf("the object has been modified; please apply your changes to the latest version and try again"))
}

func (s *Server) handleDelete(w http.ResponseWriter, r *http.Request, ri *requestInfo) {
	opts, err := s.codec.decodeDeleteOptions(r)
	if err != nil {
		writeError(w, err)
		return
	}
	for _, v := range opts.DryRun {
		if v != metav1.DryRunAll {
			writeError(w, apierrors.NewBadRequest(fmt.Sprintf("dryRun %q: only All is supported", v)))
			return
		}
	}
	existing, err := s.cfg.Store.Get(r.Context(), ri.Resource, ri.Namespace, ri.Name)
	if err != nil {
		writeError(w, err)
		return
	}
	// A Git-managed object already being deleted (a pod that Git sync removed, waiting for its
	// node to stop it) may be deleted for good: that finishes what Git asked for.
	if existing.GetDeletionTimestamp() == nil {
		if err := gitRule(ri.Resource, existing); err != nil {
			writeError(w, err)
			return
		}
	}
	if p := opts.Preconditions; p != nil {
		if p.UID != nil && *p.UID != existing.GetUID() {
			writeError(w, apierrors.NewConflict(ri.Resource.GroupResource(), ri.Name,
				fmt.Errorf("Precondition failed: UID in precondition: %v, UID in object meta: %v", *p.UID, existing.GetUID())))
			return
		}
		if p.ResourceVersion != nil && *p.ResourceVersion != existing.GetResourceVersion() {
			writeError(w, apierrors.NewConflict(ri.Resource.GroupResource(), ri.Name,
				fmt.Errorf("Precondition failed: ResourceVersion in precondition: %v, ResourceVersion in object meta: %v", *p.ResourceVersion, existing.GetResourceVersion())))
			return
		}
	}
	if len(opts.DryRun) > 0 {
		s.writeObject(w, r, http.StatusOK, ri.Resource, existing)
		return
	}
	// Orphan and Foreground leave the object marked with a propagation finalizer that the
	// garbage collector removes once it has orphaned or deleted the dependents.
	deleted, err := s.cfg.Store.Delete(r.Context(), ri.Resource, ri.Namespace, ri.Name,
		store.DeleteOptions{Preconditions: opts.Preconditions, PropagationPolicy: opts.PropagationPolicy,
			GracePeriodSeconds: opts.GracePeriodSeconds})
	if err != nil {
		writeError(w, err)
		return
	}
	if deleted == nil {
		deleted = existing
	}
	s.writeObject(w, r, http.StatusOK, ri.Resource, deleted)
}

// reservedAnnotations and reservedLabels are Bosun's own marks: Git sync and preview
// environments set them (through the store, never through the API); an object given them by
// hand would be taken for a Git-managed one and pruned by the next sync.
var (
	reservedAnnotations = []string{resource.AnnotationSource, resource.AnnotationSourceLine,
		resource.AnnotationCommit, resource.AnnotationAppliedHash}
	reservedLabels = []string{resource.LabelPreview}
)

// reservedMetadata refuses a create, or an update of existing, that sets or changes one of
// Bosun's reserved annotations or labels.
func reservedMetadata(res *resource.Resource, obj, existing metav1.Object) error {
	var errs field.ErrorList
	check := func(kind string, want map[string]string, keys []string, had map[string]string) {
		for _, k := range keys {
			v, ok := want[k]
			if !ok {
				continue
			}
			if old, was := had[k]; was && old == v {
				continue // unchanged: an update that sends back what it read
			}
			errs = append(errs, field.Forbidden(field.NewPath("metadata", kind).Key(k),
				"set by Bosun's Git sync, not through the API; remove it (an object carrying it would be taken for one declared in Git and pruned)"))
		}
	}
	var hadAnn, hadLabels map[string]string
	if existing != nil {
		hadAnn, hadLabels = existing.GetAnnotations(), existing.GetLabels()
	}
	check("annotations", obj.GetAnnotations(), reservedAnnotations, hadAnn)
	check("labels", obj.GetLabels(), reservedLabels, hadLabels)
	if len(errs) == 0 {
		return nil
	}
	return apierrors.NewInvalid(res.GroupVersionKind().GroupKind(), obj.GetName(), errs)
}

// gitRule refuses spec and metadata writes to objects that Git manages, naming the file to edit.
func gitRule(res *resource.Resource, existing metav1.Object) error {
	ann := existing.GetAnnotations()
	src, ok := ann[resource.AnnotationSource]
	if !ok {
		return nil
	}
	msg := fmt.Sprintf("%s %q is managed by Git: edit %s in the repository and push", res, existing.GetName(), src)
	if pr, ok := existing.GetLabels()[resource.LabelPreview]; ok {
		msg = fmt.Sprintf("%s %q belongs to the preview environment of pull request #%s", res, existing.GetName(), pr)
		if !strings.HasPrefix(src, "refs/") {
			msg += fmt.Sprintf(": edit %s on the pull request's branch and push", src)
		}
		msg += "; closing the pull request or removing its preview label deletes it"
	}
	if c := ann[resource.AnnotationCommit]; c != "" {
		if len(c) > 7 {
			c = c[:7]
		}
		msg += fmt.Sprintf(" (commit %s)", c)
	}
	return &apierrors.StatusError{ErrStatus: metav1.Status{
		Status: metav1.StatusFailure, Code: http.StatusConflict, Reason: metav1.StatusReasonConflict,
		Message: msg,
		Details: &metav1.StatusDetails{Name: existing.GetName(), Group: res.Group, Kind: res.Resource},
	}}
}
