package plan

import (
	"fmt"
	"strings"

	"github.com/bosun-gitops/bosun/internal/resource"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
)

// workload is what the consequences of a change to a workload are computed from.
type workload struct {
	replicas *int32
	template *corev1.PodTemplateSpec
}

func workloadOf(obj resource.Object) (workload, bool) {
	switch o := obj.(type) {
	case *appsv1.Deployment:
		return workload{o.Spec.Replicas, &o.Spec.Template}, true
	case *appsv1.ReplicaSet:
		return workload{o.Spec.Replicas, &o.Spec.Template}, true
	case *appsv1.DaemonSet:
		return workload{nil, &o.Spec.Template}, true
	case *corev1.ReplicationController:
		return workload{o.Spec.Replicas, o.Spec.Template}, true
	case *corev1.Pod:
		return workload{nil, &corev1.PodTemplateSpec{Spec: o.Spec}}, true
	}
	return workload{}, false
}

func replicas(r *int32) int32 {
	if r == nil {
		return 1
	}
	return *r
}

// consequences summarises what a user cares about in a workload change: replica counts,
// images, and a rollout of new pods.
func consequences(res *resource.Resource, live, desired resource.Object) []string {
	var out []string
	switch {
	case desired == nil && live != nil:
		if w, ok := workloadOf(live); ok && w.replicas != nil {
			out = append(out, fmt.Sprintf("%d replicas removed", replicas(w.replicas)))
		}
		return out
	case desired == nil:
		return nil
	}
	wd, ok := workloadOf(desired)
	if !ok {
		if res == resource.Services {
			return serviceConsequences(live, desired)
		}
		return nil
	}
	if live == nil {
		if wd.replicas != nil {
			out = append(out, fmt.Sprintf("%d replicas", replicas(wd.replicas)))
		}
		out = append(out, "image "+strings.Join(images(wd.template), ", "))
		return out
	}
	wl, _ := workloadOf(live)
	if wd.replicas != nil && replicas(wl.replicas) != replicas(wd.replicas) {
		out = append(out, fmt.Sprintf("%d → %d replicas", replicas(wl.replicas), replicas(wd.replicas)))
	}
	old, now := imageMap(wl.template), imageMap(wd.template)
	for _, c := range wd.template.Spec.Containers {
		switch prev, had := old[c.Name]; {
		case !had:
			out = append(out, fmt.Sprintf("container %s added (image %s)", c.Name, c.Image))
		case prev != c.Image:
			out = append(out, fmt.Sprintf("image %s → %s", prev, c.Image))
		}
	}
	for _, c := range wl.template.Spec.Containers {
		if _, still := now[c.Name]; !still {
			out = append(out, fmt.Sprintf("container %s removed", c.Name))
		}
	}
	if res != resource.Pods && len(diffTemplate(wl.template, wd.template)) > 0 {
		out = append(out, "pods are replaced (pod template changed)")
	}
	return out
}

func images(t *corev1.PodTemplateSpec) []string {
	var out []string
	for _, c := range t.Spec.Containers {
		out = append(out, c.Image)
	}
	return out
}

func imageMap(t *corev1.PodTemplateSpec) map[string]string {
	m := map[string]string{}
	for _, c := range t.Spec.Containers {
		m[c.Name] = c.Image
	}
	return m
}

func diffTemplate(a, b *corev1.PodTemplateSpec) []FieldDiff {
	am, _ := toJSON(a)
	bm, _ := toJSON(b)
	var out []FieldDiff
	walkDiff("", am, bm, &out)
	return out
}

func serviceConsequences(live, desired resource.Object) []string {
	d, ok := desired.(*corev1.Service)
	if !ok {
		return nil
	}
	var ports []string
	for _, p := range d.Spec.Ports {
		ports = append(ports, fmt.Sprintf("%d/%s", p.Port, p.Protocol))
	}
	l, ok := live.(*corev1.Service)
	if !ok {
		return []string{"ports " + strings.Join(ports, ", ")}
	}
	var old []string
	for _, p := range l.Spec.Ports {
		old = append(old, fmt.Sprintf("%d/%s", p.Port, p.Protocol))
	}
	if strings.Join(old, ",") != strings.Join(ports, ",") {
		return []string{fmt.Sprintf("ports %s → %s", strings.Join(old, ", "), strings.Join(ports, ", "))}
	}
	return nil
}
