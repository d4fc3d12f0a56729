// Package resource is the table of every kind Bosun stores and serves: its group, version,
// plural resource name, kind, scope and Go type. The store, the API server, Git sync, the repo
// loader and the CLI all look kinds up here, so adding a kind is one entry.
package resource

import (
	"fmt"
	"reflect"
	"sort"
	"strings"

	bosunv1 "github.com/bosun-gitops/bosun/repo-layout/v1alpha1"
	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// Object is what the store keeps: a typed Kubernetes-style object with metadata.
type Object interface {
	metav1.Object
	runtime.Object
}

// ProtobufObject is an object with Kubernetes' generated protobuf encoding, which the types of
// k8s.io/api have and Bosun's own kinds do not.
type ProtobufObject interface {
	Object
	runtime.ProtobufMarshaller
	runtime.ProtobufReverseMarshaller
	Unmarshal([]byte) error
}

// HasProtobuf reports whether r's objects have a protobuf encoding (see ProtobufObject).
func (r *Resource) HasProtobuf() bool { return r.protobuf }

// ShallowCopy returns a new object of obj's type holding obj's fields: its struct fields
// (metadata, a pod's status) are copies, its maps, slices and pointers shared, so setting a
// top-level or metadata scalar on the copy leaves obj as it was. Unstructured objects, whose
// metadata lives in a map, are deep-copied.
func ShallowCopy(obj Object) Object {
	v := reflect.ValueOf(obj)
	if _, unstructured := obj.(runtime.Unstructured); !unstructured && v.Kind() == reflect.Pointer && v.Elem().Kind() == reflect.Struct {
		c := reflect.New(v.Elem().Type())
		c.Elem().Set(v.Elem())
		if out, ok := c.Interface().(Object); ok {
			return out
		}
	}
	return obj.DeepCopyObject().(Object)
}

// Resource describes one kind.
type Resource struct {
	Group    string
	Version  string
	Resource string // plural, lower case: "pods"
	Singular string // "pod"
	Kind     string // "Pod"
	ListKind string // "PodList"
	// Namespaced objects live in a namespace; the others are cluster-scoped.
	Namespaced bool
	ShortNames []string
	// HasStatus means the kind has a status subresource: spec writes keep the stored status and
	// status writes keep the stored spec.
	HasStatus bool
	// InRepo means the kind may be declared in the Git repository.
	InRepo bool
	New    func() Object
	// NewList returns an empty typed list (for example *corev1.PodList).
	NewList func() runtime.Object

	protobuf bool // New's objects are ProtobufObjects
}

// GroupVersion returns the resource's API group and version.
func (r *Resource) GroupVersion() schema.GroupVersion {
	return schema.GroupVersion{Group: r.Group, Version: r.Version}
}

// APIVersion returns "v1" or "group/version".
func (r *Resource) APIVersion() string { return r.GroupVersion().String() }

// GroupVersionKind of the resource's objects.
func (r *Resource) GroupVersionKind() schema.GroupVersionKind {
	return r.GroupVersion().WithKind(r.Kind)
}

// GroupResource returns e.g. "deployments.apps", as Kubernetes prints it in errors.
func (r *Resource) GroupResource() schema.GroupResource {
	return schema.GroupResource{Group: r.Group, Resource: r.Resource}
}

func (r *Resource) String() string { return r.GroupResource().String() }

// SetTypeMeta stamps apiVersion and kind on obj.
func (r *Resource) SetTypeMeta(obj runtime.Object) {
	obj.GetObjectKind().SetGroupVersionKind(r.GroupVersionKind())
}

func res(group, version, plural, singular, kind string, namespaced, hasStatus, inRepo bool,
	short []string, newObj func() Object, newList func() runtime.Object) *Resource {
	_, protobuf := newObj().(ProtobufObject)
	return &Resource{
		Group: group, Version: version, Resource: plural, Singular: singular, Kind: kind,
		ListKind: kind + "List", Namespaced: namespaced, HasStatus: hasStatus, InRepo: inRepo,
		ShortNames: short, New: newObj, NewList: newList, protobuf: protobuf,
	}
}

// Well-known resources, for callers that name one directly.
var (
	Namespaces = res("", "v1", "namespaces", "namespace", "Namespace", false, true, true, []string{"ns"},
		func() Object { return &corev1.Namespace{} }, func() runtime.Object { return &corev1.NamespaceList{} })
	Pods = res("", "v1", "pods", "pod", "Pod", true, true, true, []string{"po"},
		func() Object { return &corev1.Pod{} }, func() runtime.Object { return &corev1.PodList{} })
	ReplicationControllers = res("", "v1", "replicationcontrollers", "replicationcontroller", "ReplicationController", true, true, true, []string{"rc"},
		func() Object { return &corev1.ReplicationController{} }, func() runtime.Object { return &corev1.ReplicationControllerList{} })
	Services = res("", "v1", "services", "service", "Service", true, true, true, []string{"svc"},
		func() Object { return &corev1.Service{} }, func() runtime.Object { return &corev1.ServiceList{} })
	ConfigMaps = res("", "v1", "configmaps", "configmap", "ConfigMap", true, false, true, []string{"cm"},
		func() Object { return &corev1.ConfigMap{} }, func() runtime.Object { return &corev1.ConfigMapList{} })
	Secrets = res("", "v1", "secrets", "secret", "Secret", true, false, true, nil,
		func() Object { return &corev1.Secret{} }, func() runtime.Object { return &corev1.SecretList{} })
	Nodes = res("", "v1", "nodes", "node", "Node", false, true, false, []string{"no"},
		func() Object { return &corev1.Node{} }, func() runtime.Object { return &corev1.NodeList{} })
	Endpoints = res("", "v1", "endpoints", "endpoints", "Endpoints", true, false, false, []string{"ep"},
		func() Object { return &corev1.Endpoints{} }, func() runtime.Object { return &corev1.EndpointsList{} })
	Events = res("", "v1", "events", "event", "Event", true, false, false, []string{"ev"},
		func() Object { return &corev1.Event{} }, func() runtime.Object { return &corev1.EventList{} })
	Deployments = res("apps", "v1", "deployments", "deployment", "Deployment", true, true, true, []string{"deploy"},
		func() Object { return &appsv1.Deployment{} }, func() runtime.Object { return &appsv1.DeploymentList{} })
	ReplicaSets = res("apps", "v1", "replicasets", "replicaset", "ReplicaSet", true, true, true, []string{"rs"},
		func() Object { return &appsv1.ReplicaSet{} }, func() runtime.Object { return &appsv1.ReplicaSetList{} })
	DaemonSets = res("apps", "v1", "daemonsets", "daemonset", "DaemonSet", true, true, true, []string{"ds"},
		func() Object { return &appsv1.DaemonSet{} }, func() runtime.Object { return &appsv1.DaemonSetList{} })
	ControllerRevisions = res("apps", "v1", "controllerrevisions", "controllerrevision", "ControllerRevision", true, false, false, nil,
		func() Object { return &appsv1.ControllerRevision{} }, func() runtime.Object { return &appsv1.ControllerRevisionList{} })
	Leases = res("coordination.k8s.io", "v1", "leases", "lease", "Lease", true, false, false, nil,
		func() Object { return &coordinationv1.Lease{} }, func() runtime.Object { return &coordinationv1.LeaseList{} })
	Clusters = res(bosunv1.Group, bosunv1.Version, "clusters", "cluster", "Cluster", false, false, true, nil,
		func() Object { return &bosunv1.Cluster{} }, func() runtime.Object { return &bosunv1.ClusterList{} })
	Machines = res(bosunv1.Group, bosunv1.Version, "machines", "machine", "Machine", false, true, true, []string{"mach"},
		func() Object { return &bosunv1.Machine{} }, func() runtime.Object { return &bosunv1.MachineList{} })
	GitSyncs = res(bosunv1.Group, bosunv1.Version, "gitsyncs", "gitsync", "GitSync", false, true, false, []string{"sync"},
		func() Object { return &bosunv1.GitSync{} }, func() runtime.Object { return &bosunv1.GitSyncList{} })
)

// All lists every resource, in a stable order (core first, then by group).
var All = []*Resource{
	Namespaces, Pods, ReplicationControllers, Services, ConfigMaps, Secrets, Nodes, Endpoints, Events,
	Deployments, ReplicaSets, DaemonSets, ControllerRevisions,
	Leases,
	Clusters, Machines, GitSyncs,
}

// ForKind finds the resource for apiVersion and kind, as written in a manifest.
func ForKind(apiVersion, kind string) (*Resource, bool) {
	for _, r := range All {
		if r.Kind == kind && r.APIVersion() == apiVersion {
			return r, true
		}
	}
	return nil, false
}

// KindKnown reports whether kind exists under any apiVersion, and which apiVersions it has; it
// lets errors say "use apiVersion apps/v1" instead of only "unknown".
func KindKnown(kind string) []string {
	var versions []string
	for _, r := range All {
		if r.Kind == kind {
			versions = append(versions, r.APIVersion())
		}
	}
	return versions
}

// ForResource finds a resource by group, version and plural name, as in an API path.
func ForResource(group, version, plural string) (*Resource, bool) {
	for _, r := range All {
		if r.Group == group && r.Version == version && r.Resource == plural {
			return r, true
		}
	}
	return nil, false
}

// Lookup resolves what a user types on the command line: a plural, singular, short name or kind,
// optionally qualified by group ("deployments.apps"), case-insensitively.
func Lookup(name string) (*Resource, error) {
	lname := strings.ToLower(name)
	var group string
	if i := strings.Index(lname, "."); i > 0 {
		lname, group = lname[:i], lname[i+1:]
	}
	for _, r := range All {
		if group != "" && r.Group != group {
			continue
		}
		if lname == r.Resource || lname == r.Singular || lname == strings.ToLower(r.Kind) {
			return r, nil
		}
		for _, s := range r.ShortNames {
			if lname == s {
				return r, nil
			}
		}
	}
	var names []string
	for _, r := range All {
		names = append(names, r.Resource)
	}
	sort.Strings(names)
	return nil, fmt.Errorf("unknown resource type %q; known types: %s", name, strings.Join(names, ", "))
}

// Groups returns the API group versions served, core ("v1") first.
func Groups() []schema.GroupVersion {
	seen := map[schema.GroupVersion]bool{}
	var out []schema.GroupVersion
	for _, r := range All {
		gv := r.GroupVersion()
		if !seen[gv] {
			seen[gv] = true
			out = append(out, gv)
		}
	}
	return out
}

// Annotations and labels that Bosun puts on objects.
const (
	// AnnotationSource is the repository file an object was declared in; its presence marks the
	// object as managed by Git (part of the inventory that Git sync prunes).
	AnnotationSource = "bosun.dev/source"
	// AnnotationSourceLine is the line of the object's document in that file.
	AnnotationSourceLine = "bosun.dev/source-line"
	// AnnotationCommit is the commit the object was last applied from.
	AnnotationCommit = "bosun.dev/commit"
	// AnnotationAppliedHash is a hash of the desired manifest as last applied, so that an unchanged
	// object is recognised without comparing defaulted fields.
	AnnotationAppliedHash = "bosun.dev/applied-hash"
	// LabelPreview marks what a pull request's preview environment owns (its namespace, the
	// objects deployed into it and its record) with the pull request's number: Git sync of the
	// tracked branch neither prunes nor adopts such objects.
	LabelPreview = "bosun.dev/preview"
)

// ForObject finds the resource of a typed object by its Go type (TypeMeta may be empty on
// objects decoded into a known type).
func ForObject(obj runtime.Object) (*Resource, bool) {
	t := reflect.TypeOf(obj)
	for _, r := range All {
		if reflect.TypeOf(r.New()) == t {
			return r, true
		}
	}
	return nil, false
}
