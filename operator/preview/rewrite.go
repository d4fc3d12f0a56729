package preview

import (
	"encoding/json"
	"fmt"
	"path"
	"sort"
	"strconv"

	"github.com/bosun-gitops/bosun/internal/resource"
	repolayout "github.com/bosun-gitops/bosun/repo-layout"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
)

// Namespace is the namespace of pull request number's preview environment.
func Namespace(number int) string { return "pr-" + strconv.Itoa(number) }

// Skipped is an object of the pull request that its preview leaves out.
type Skipped struct {
	Kind, Namespace, Name string
	// File (relative to the repository root) and Line locate its manifest.
	File   string
	Line   int
	Reason string
}

// Skip reasons.
const (
	ReasonClusterScoped = "cluster-scoped"
	ReasonHostNetwork   = "hostNetwork"
)

// Environment is what a preview deploys.
type Environment struct {
	Namespace string
	// Objects are the rewritten objects, sorted by file and line; files are relative to the
	// repository root, and Raw is the rewritten object's JSON (the applied hash covers the
	// rewrite, so a changed rule re-applies).
	Objects []repolayout.Object
	Skipped []Skipped
}

// Rewrite turns the objects of a pull request's head (a loaded set of dir, the operator's
// --path) into its preview environment; see the package documentation for the rules. Two
// objects that land on the same name in the preview namespace (declared in two namespaces) are
// errors at their file:line: the preview of such a head is refused.
func Rewrite(set *repolayout.Set, dir string, number int) (*Environment, repolayout.ErrorList) {
	ns := Namespace(number)
	env := &Environment{Namespace: ns}
	value := strconv.Itoa(number)
	type placed struct {
		file      string
		line      int
		namespace string
	}
	seen := map[string]placed{}
	var errs repolayout.ErrorList
	for _, o := range set.Objects {
		file := repoFile(dir, o.File)
		if !o.Resource.Namespaced {
			env.Skipped = append(env.Skipped, Skipped{Kind: o.Resource.Kind, Name: o.Object.GetName(), File: file, Line: o.Line, Reason: ReasonClusterScoped})
			continue
		}
		if podSpecOf(o.Object) != nil && podSpecOf(o.Object).HostNetwork {
			env.Skipped = append(env.Skipped, Skipped{Kind: o.Resource.Kind, Namespace: o.Object.GetNamespace(), Name: o.Object.GetName(),
				File: file, Line: o.Line, Reason: ReasonHostNetwork})
			continue
		}
		key := o.Resource.String() + "/" + o.Object.GetName()
		if prev, dup := seen[key]; dup {
			errs = append(errs, repolayout.Error{File: file, Line: o.Line, Field: "metadata.namespace",
				Reason: fmt.Sprintf("%s %q is also declared in namespace %s (%s:%d); a preview puts every namespace into %s: rename one of them to preview this pull request",
					o.Resource.Kind, o.Object.GetName(), prev.namespace, prev.file, prev.line, ns)})
			continue
		}
		seen[key] = placed{file, o.Line, o.Object.GetNamespace()}
		obj := rewrite(o.Object, ns, value)
		raw, err := json.Marshal(obj)
		if err != nil {
			errs = append(errs, repolayout.Error{File: file, Line: o.Line, Reason: fmt.Sprintf("encoding the preview's copy: %v", err)})
			continue
		}
		env.Objects = append(env.Objects, repolayout.Object{Resource: o.Resource, Object: obj, File: file, Line: o.Line, Raw: raw})
	}
	if len(errs) > 0 {
		sort.SliceStable(errs, func(i, j int) bool {
			if errs[i].File != errs[j].File {
				return errs[i].File < errs[j].File
			}
			return errs[i].Line < errs[j].Line
		})
		return nil, errs
	}
	return env, nil
}

// rewrite returns the preview's copy of obj (the loader's objects are shared).
func rewrite(in resource.Object, ns, value string) resource.Object {
	obj := in.DeepCopyObject().(resource.Object)
	obj.SetNamespace(ns)
	obj.SetLabels(withLabel(obj.GetLabels(), value))
	if svc, ok := obj.(*corev1.Service); ok {
		rewriteService(&svc.Spec)
	}
	if spec := podSpecOf(obj); spec != nil {
		dropHostPorts(spec)
	}
	if tmpl := templateOf(obj); tmpl != nil {
		tmpl.Labels = withLabel(tmpl.Labels, value)
	}
	return obj
}

func withLabel(labels map[string]string, value string) map[string]string {
	out := make(map[string]string, len(labels)+1)
	for k, v := range labels {
		out[k] = v
	}
	out[resource.LabelPreview] = value
	return out
}

// rewriteService keeps a Service from claiming what the tracked branch's copy holds: node
// ports (on every node) and a fixed cluster IP.
func rewriteService(s *corev1.ServiceSpec) {
	if s.Type == corev1.ServiceTypeNodePort || s.Type == corev1.ServiceTypeLoadBalancer {
		s.Type = corev1.ServiceTypeClusterIP
	}
	for i := range s.Ports {
		s.Ports[i].NodePort = 0
	}
	if s.ClusterIP != "" && s.ClusterIP != corev1.ClusterIPNone {
		s.ClusterIP, s.ClusterIPs = "", nil
	}
	s.ExternalIPs = nil
	s.ExternalTrafficPolicy = ""
	s.HealthCheckNodePort = 0
	s.LoadBalancerIP, s.LoadBalancerSourceRanges, s.LoadBalancerClass = "", nil, nil
	s.AllocateLoadBalancerNodePorts = nil
}

// dropHostPorts frees the node ports that containers would bind.
func dropHostPorts(spec *corev1.PodSpec) {
	for _, cs := range [][]corev1.Container{spec.InitContainers, spec.Containers} {
		for i := range cs {
			for j := range cs[i].Ports {
				cs[i].Ports[j].HostPort = 0
				cs[i].Ports[j].HostIP = ""
			}
		}
	}
}

// podSpecOf returns the pod spec of a pod or workload, nil for other kinds.
func podSpecOf(obj resource.Object) *corev1.PodSpec {
	if p, ok := obj.(*corev1.Pod); ok {
		return &p.Spec
	}
	if t := templateOf(obj); t != nil {
		return &t.Spec
	}
	return nil
}

func templateOf(obj resource.Object) *corev1.PodTemplateSpec {
	switch o := obj.(type) {
	case *corev1.ReplicationController:
		return o.Spec.Template
	case *appsv1.ReplicaSet:
		return &o.Spec.Template
	case *appsv1.Deployment:
		return &o.Spec.Template
	case *appsv1.DaemonSet:
		return &o.Spec.Template
	}
	return nil
}

// repoFile makes file, relative to the loaded sub-directory dir, relative to the repository.
func repoFile(dir, file string) string {
	if dir == "" || dir == "." {
		return file
	}
	return path.Join(dir, file)
}
