package store

import (
	"bytes"
	"context"
	"fmt"
	"reflect"
	"strconv"
	"time"

	"github.com/bosun-gitops/bosun/internal/poddefaults"
	"github.com/bosun-gitops/bosun/internal/resource"
	clientv3 "go.etcd.io/etcd/client/v3"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/apimachinery/pkg/util/uuid"
)

// plan is one prepared write: the compares that must hold, the etcd operation and the object
// to return once it is committed (its resourceVersion is set from the commit's revision).
type plan struct {
	key     string
	cmps    []clientv3.Cmp
	op      clientv3.Op
	obj     resource.Object
	deleted bool // op deletes the key; the Batch result carries no object
	noop    bool // nothing to write: obj is the stored object, unchanged
	size    int  // approximate request bytes
}

// commit runs one plan as its own transaction. ok is false when a compare failed.
func (s *Store) commit(ctx context.Context, res *resource.Resource, p *plan) (ok bool, err error) {
	if p.noop {
		return true, nil
	}
	resp, err := s.client.Txn(ctx).If(p.cmps...).Then(p.op).Commit()
	if err != nil {
		return false, etcdError(fmt.Sprintf("writing %s %q", res, p.obj.GetName()), err)
	}
	if !resp.Succeeded {
		return false, nil
	}
	p.obj.SetResourceVersion(strconv.FormatInt(resp.Header.Revision, 10))
	return true, nil
}

// Create stores a new object and returns it with uid, creationTimestamp, generation and
// resourceVersion set. It fails with AlreadyExists when the name is taken. When the name is
// empty and metadata.generateName is set, a random 5-character suffix is appended. obj is not
// modified, but the returned object shares its maps, slices and pointers (labels, spec): the
// caller hands obj over and modifies neither afterwards.
func (s *Store) Create(ctx context.Context, res *resource.Resource, obj resource.Object) (resource.Object, error) {
	for attempt := 0; ; attempt++ {
		p, err := s.planCreate(res, obj)
		if err != nil {
			return nil, err
		}
		ok, err := s.commit(ctx, res, p)
		if err != nil {
			return nil, err
		}
		if ok {
			return p.obj, nil
		}
		// A generated name may collide; draw another, as Kubernetes clients would.
		if obj.GetName() == "" && attempt < 8 {
			continue
		}
		return nil, apierrors.NewAlreadyExists(res.GroupResource(), p.obj.GetName())
	}
}

func (s *Store) planCreate(res *resource.Resource, in resource.Object) (*plan, error) {
	// A copy of the top-level struct: only metadata's scalar fields and a pod's phase are set
	// below, and a deep copy of every object was a third of the CPU of a large Git sync's apply.
	obj := resource.ShallowCopy(in)
	if obj.GetName() == "" && obj.GetGenerateName() != "" {
		base := obj.GetGenerateName()
		if len(base) > generateNameMaxBaseLen {
			base = base[:generateNameMaxBaseLen]
		}
		obj.SetName(base + rand.String(generateNameSuffixLen))
	}
	if !res.Namespaced {
		obj.SetNamespace("")
	}
	key, err := s.objectKey(res, obj.GetNamespace(), obj.GetName())
	if err != nil {
		return nil, err
	}
	if obj.GetResourceVersion() != "" {
		return nil, apierrors.NewBadRequest(fmt.Sprintf("%s %q: resourceVersion should not be set on objects to be created", res, obj.GetName()))
	}
	obj.SetUID(uuid.NewUUID())
	obj.SetCreationTimestamp(now())
	obj.SetGeneration(1)
	obj.SetDeletionTimestamp(nil)
	obj.SetDeletionGracePeriodSeconds(nil)
	if pod, ok := obj.(*corev1.Pod); ok {
		if pod.Status.Phase == "" {
			pod.Status.Phase = corev1.PodPending // as the API server's pod strategy does on create
		}
		defaultPodRequests(pod)
	}
	data, err := s.encode(res, key, obj)
	if err != nil {
		return nil, err
	}
	return &plan{
		key:  key,
		cmps: []clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(key), "=", 0)},
		op:   clientv3.OpPut(key, string(data)),
		obj:  obj,
		size: 2*len(key) + len(data) + 32,
	}, nil
}

// defaultPodRequests gives pod's containers the requests Kubernetes defaults from their limits
// (see package poddefaults), on every spec write, as the API server defaults every pod it
// decodes: pods created by controllers from templates, which keep no such defaults, get them
// here. pod may share its spec with the caller's object: the spec is copied before it changes.
func defaultPodRequests(pod *corev1.Pod) {
	if poddefaults.NeedsRequests(&pod.Spec) {
		pod.Spec = *pod.Spec.DeepCopy()
		poddefaults.SetRequests(&pod.Spec)
	}
}

// Update writes spec and metadata. With a resourceVersion it fails with Conflict unless that is
// the stored revision; without one it overwrites whatever is stored (last writer wins). uid,
// creationTimestamp and deletionTimestamp are kept; for kinds with a status subresource the
// stored status is kept. generation is bumped when the spec (everything outside metadata and
// status) changes. An update that removes the last finalizer of an object being deleted
// deletes it. An update that changes nothing writes nothing and returns the stored object.
func (s *Store) Update(ctx context.Context, res *resource.Resource, obj resource.Object) (resource.Object, error) {
	return s.update(ctx, res, obj, false, false)
}

// UpdateStatus writes only the status of a kind with a status subresource; spec and metadata
// stay as stored. The resourceVersion precondition is as for Update.
func (s *Store) UpdateStatus(ctx context.Context, res *resource.Resource, obj resource.Object) (resource.Object, error) {
	if !res.HasStatus {
		return nil, apierrors.NewMethodNotSupported(res.GroupResource(), "update status")
	}
	return s.update(ctx, res, obj, true, false)
}

// update writes in over the stored object: only its status (statusOnly), or spec and metadata
// keeping the stored status, or everything (withStatus).
func (s *Store) update(ctx context.Context, res *resource.Resource, in resource.Object, statusOnly, withStatus bool) (resource.Object, error) {
	namespace := in.GetNamespace()
	if !res.Namespaced {
		namespace = ""
	}
	key, err := s.objectKey(res, namespace, in.GetName())
	if err != nil {
		return nil, err
	}
	for attempt := 0; attempt < maxUpdateAttempts; attempt++ {
		cur, raw, err := s.read(ctx, res, key, in.GetName())
		if err != nil {
			return nil, err
		}
		if withStatus && res.HasStatus {
			setStatus(cur, in)
		}
		p, err := s.planUpdate(res, key, cur, raw, in, statusOnly)
		if err != nil {
			return nil, err
		}
		ok, err := s.commit(ctx, res, p)
		if err != nil {
			return nil, err
		}
		if ok {
			return p.obj, nil
		}
		// Someone wrote in between; a resourceVersion precondition fails on the next read.
	}
	return nil, conflict(res, in.GetName())
}

// planUpdate prepares writing in over cur (stored as raw at cur's resourceVersion).
func (s *Store) planUpdate(res *resource.Resource, key string, cur resource.Object, raw []byte, in resource.Object, statusOnly bool) (*plan, error) {
	name := in.GetName()
	curRev, err := parseRV(res, name, cur.GetResourceVersion())
	if err != nil {
		return nil, err
	}
	wantRev, err := parseRV(res, name, in.GetResourceVersion())
	if err != nil {
		return nil, err
	}
	if wantRev != 0 && wantRev != curRev {
		return nil, conflict(res, name)
	}
	if uid := in.GetUID(); uid != "" && uid != cur.GetUID() {
		return nil, apierrors.NewConflict(res.GroupResource(), name,
			fmt.Errorf("Precondition failed: UID in precondition: %v, UID in object meta: %v", uid, cur.GetUID()))
	}

	var next resource.Object
	if statusOnly {
		next = copyObject(cur)
		setStatus(next, in)
	} else {
		next = copyObject(in)
		if pod, ok := next.(*corev1.Pod); ok {
			defaultPodRequests(pod)
		}
		next.SetNamespace(cur.GetNamespace())
		next.SetUID(cur.GetUID())
		next.SetCreationTimestamp(cur.GetCreationTimestamp())
		next.SetDeletionTimestamp(cur.GetDeletionTimestamp())
		next.SetDeletionGracePeriodSeconds(cur.GetDeletionGracePeriodSeconds())
		if res.HasStatus {
			setStatus(next, cur)
		}
		gen := cur.GetGeneration()
		if !specEqual(cur, next) {
			gen++
		}
		next.SetGeneration(gen)
	}

	cmps := []clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(key), "=", curRev)}
	if cur.GetDeletionTimestamp() != nil && len(next.GetFinalizers()) == 0 && !gracePending(cur) {
		// The last finalizer is gone: the deletion completes now.
		next.SetResourceVersion("")
		return &plan{key: key, cmps: cmps, op: clientv3.OpDelete(key), obj: next, deleted: true, size: 2*len(key) + 32}, nil
	}
	data, err := s.encode(res, key, next)
	if err != nil {
		return nil, err
	}
	if bytes.Equal(data, raw) {
		return &plan{key: key, obj: cur, noop: true}, nil
	}
	return &plan{key: key, cmps: cmps, op: clientv3.OpPut(key, string(data)), obj: next, size: 2*len(key) + len(data) + 32}, nil
}

// Delete removes an object and returns its last state (with the deletion's revision as
// resourceVersion). An object with finalizers, including the propagation finalizer that
// opts.PropagationPolicy adds, is only marked: deletionTimestamp is set and the marked object
// returned; it disappears when an Update removes the last finalizer. Deleting a marked object
// again may change its propagation finalizer (Orphan to Foreground, say); a Background delete of
// an object that only a propagation finalizer holds removes it at once, as in Kubernetes.
//
// A pod bound to a node and not finished is deleted gracefully, as Kubernetes does: it is marked
// with deletionTimestamp = now + its grace period (opts.GracePeriodSeconds, else the pod's
// terminationGracePeriodSeconds) and deletionGracePeriodSeconds; its node's agent stops its
// containers and then deletes it with a grace period of 0, which removes it.
func (s *Store) Delete(ctx context.Context, res *resource.Resource, namespace, name string, opts DeleteOptions) (resource.Object, error) {
	if !res.Namespaced {
		namespace = ""
	}
	key, err := s.objectKey(res, namespace, name)
	if err != nil {
		return nil, err
	}
	for attempt := 0; attempt < maxUpdateAttempts; attempt++ {
		cur, _, err := s.read(ctx, res, key, name)
		if err != nil {
			return nil, err
		}
		p, err := s.planDelete(res, key, cur, opts)
		if err != nil {
			return nil, err
		}
		ok, err := s.commit(ctx, res, p)
		if err != nil {
			return nil, err
		}
		if ok {
			return p.obj, nil
		}
	}
	return nil, conflict(res, name)
}

func (s *Store) planDelete(res *resource.Resource, key string, cur resource.Object, opts DeleteOptions) (*plan, error) {
	name := cur.GetName()
	if pre := opts.Preconditions; pre != nil {
		if pre.UID != nil && *pre.UID != cur.GetUID() {
			return nil, apierrors.NewConflict(res.GroupResource(), name,
				fmt.Errorf("Precondition failed: UID in precondition: %v, UID in object meta: %v", *pre.UID, cur.GetUID()))
		}
		if pre.ResourceVersion != nil && *pre.ResourceVersion != cur.GetResourceVersion() {
			return nil, apierrors.NewConflict(res.GroupResource(), name,
				fmt.Errorf("Precondition failed: ResourceVersion in precondition: %v, ResourceVersion in object meta: %v", *pre.ResourceVersion, cur.GetResourceVersion()))
		}
	}
	curRev, err := parseRV(res, name, cur.GetResourceVersion())
	if err != nil {
		return nil, err
	}
	cmps := []clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(key), "=", curRev)}
	finalizers, changed := propagationFinalizers(res, cur.GetFinalizers(), opts.PropagationPolicy)
	grace := deletionGrace(cur, opts.GracePeriodSeconds)
	if len(finalizers) == 0 && grace == 0 {
		return &plan{key: key, cmps: cmps, op: clientv3.OpDelete(key), obj: copyObject(cur), deleted: true, size: 2*len(key) + 32}, nil
	}
	// The deletion's deadline is set by the first delete and may only be brought forward: by a
	// shorter grace period, down to 0 (its node confirming, or a forced delete), which leaves an
	// object that finalizers still hold marked with no grace pending.
	dt := cur.GetDeletionTimestamp()
	pending := int64(0)
	if g := cur.GetDeletionGracePeriodSeconds(); dt != nil && g != nil {
		pending = *g
	}
	shorter := dt == nil || grace < pending
	if !changed && !shorter {
		return &plan{key: key, obj: cur, noop: true}, nil
	}
	next := copyObject(cur)
	next.SetFinalizers(finalizers)
	if shorter {
		// A graceful pod deletion (grace > 0): the pod's node stops its containers within
		// grace, then deletes it for good (grace 0).
		ts := metav1.NewTime(now().Add(time.Duration(grace) * time.Second))
		if dt != nil && dt.Before(&ts) {
			ts = *dt
		}
		next.SetDeletionTimestamp(&ts)
		next.SetDeletionGracePeriodSeconds(&grace)
	}
	data, err := s.encode(res, key, next)
	if err != nil {
		return nil, err
	}
	return &plan{key: key, cmps: cmps, op: clientv3.OpPut(key, string(data)), obj: next, size: 2*len(key) + len(data) + 32}, nil
}

// deletionGrace is how long a delete leaves obj's node to stop it, as the Kubernetes API server's
// pod strategy decides: for a pod bound to a node and not finished, the grace period asked for,
// else its spec's terminationGracePeriodSeconds (30 s by default); 0 (delete at once) for
// anything else, an unscheduled or finished pod, or a grace period of 0 (a forced delete).
func deletionGrace(obj resource.Object, asked *int64) int64 {
	pod, ok := obj.(*corev1.Pod)
	if !ok || pod.Spec.NodeName == "" || pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
		return 0
	}
	grace := int64(corev1.DefaultTerminationGracePeriodSeconds)
	switch {
	case asked != nil:
		grace = *asked
	case pod.Spec.TerminationGracePeriodSeconds != nil:
		grace = *pod.Spec.TerminationGracePeriodSeconds
	}
	return max(grace, 0)
}

// gracePending reports whether obj is being deleted gracefully: its node has yet to confirm.
func gracePending(obj resource.Object) bool {
	g := obj.GetDeletionGracePeriodSeconds()
	return obj.GetDeletionTimestamp() != nil && g != nil && *g > 0
}

// propagationFinalizers returns the finalizers an object keeps when it is deleted with policy,
// as Kubernetes' API server computes them: the policy's propagation finalizer replaces any other
// one; nil keeps what the object has. changed reports whether the set differs from fs.
func propagationFinalizers(res *resource.Resource, fs []string, policy *metav1.DeletionPropagation) (out []string, changed bool) {
	if policy == nil || res == resource.Events {
		return fs, false
	}
	var want string
	switch *policy {
	case metav1.DeletePropagationOrphan:
		want = metav1.FinalizerOrphanDependents
	case metav1.DeletePropagationForeground:
		want = metav1.FinalizerDeleteDependents
	}
	had := false
	for _, f := range fs {
		switch f {
		case metav1.FinalizerOrphanDependents, metav1.FinalizerDeleteDependents:
			if f == want {
				had = true
			} else {
				changed = true
			}
			continue
		}
		out = append(out, f)
	}
	if want != "" {
		out = append(out, want)
		changed = changed || !had
	}
	return out, changed
}

// setStatus copies the Status field of from into to (both of the same Go type).
func setStatus(to, from resource.Object) {
	dst := reflect.ValueOf(to).Elem().FieldByName("Status")
	src := reflect.ValueOf(from).Elem().FieldByName("Status")
	if dst.IsValid() && src.IsValid() && dst.CanSet() {
		dst.Set(reflect.ValueOf(copyValue(src)))
	}
}

// copyValue deep-copies a struct value through its DeepCopy method when it has one.
func copyValue(v reflect.Value) any {
	if v.CanAddr() {
		if m := v.Addr().MethodByName("DeepCopy"); m.IsValid() {
			return m.Call(nil)[0].Elem().Interface()
		}
	}
	return v.Interface()
}

// specEqual reports whether a and b agree on everything outside metadata and status: the spec
// and, for kinds without one (ConfigMap, Secret), their data fields.
func specEqual(a, b resource.Object) bool {
	va, vb := reflect.ValueOf(a).Elem(), reflect.ValueOf(b).Elem()
	t := va.Type()
	for i := 0; i < t.NumField(); i++ {
		switch t.Field(i).Name {
		case "TypeMeta", "ObjectMeta", "Status":
			continue
		}
		if !equality.Semantic.DeepEqual(va.Field(i).Interface(), vb.Field(i).Interface()) {
			return false
		}
	}
	return true
}
