package poddefaults

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

// rl builds a ResourceList from name, quantity pairs.
func rl(kv ...string) corev1.ResourceList {
	out := corev1.ResourceList{}
	for i := 0; i < len(kv); i += 2 {
		out[corev1.ResourceName(kv[i])] = resource.MustParse(kv[i+1])
	}
	return out
}

func ctr(req, lim corev1.ResourceList) corev1.Container {
	return corev1.Container{Name: "c", Resources: corev1.ResourceRequirements{Requests: req, Limits: lim}}
}

func TestSetRequests(t *testing.T) {
	always := corev1.ContainerRestartPolicyAlways
	sidecar := ctr(rl("cpu", "200m"), nil)
	sidecar.RestartPolicy = &always
	tests := []struct {
		name  string
		spec  corev1.PodSpec
		want  corev1.PodSpec
		needs bool
	}{
		{"nothing to do", corev1.PodSpec{Containers: []corev1.Container{ctr(rl("cpu", "1"), rl("cpu", "2"))}},
			corev1.PodSpec{Containers: []corev1.Container{ctr(rl("cpu", "1"), rl("cpu", "2"))}}, false},
		{"limits only", corev1.PodSpec{Containers: []corev1.Container{ctr(nil, rl("cpu", "500m", "memory", "1Gi", "nvidia.com/gpu", "1"))}},
			corev1.PodSpec{Containers: []corev1.Container{ctr(rl("cpu", "500m", "memory", "1Gi", "nvidia.com/gpu", "1"), rl("cpu", "500m", "memory", "1Gi", "nvidia.com/gpu", "1"))}}, true},
		{"a request kept, the missing one defaulted", corev1.PodSpec{Containers: []corev1.Container{ctr(rl("cpu", "100m"), rl("cpu", "1", "ephemeral-storage", "2Gi"))}},
			corev1.PodSpec{Containers: []corev1.Container{ctr(rl("cpu", "100m", "ephemeral-storage", "2Gi"), rl("cpu", "1", "ephemeral-storage", "2Gi"))}}, true},
		{"explicit zero request kept", corev1.PodSpec{Containers: []corev1.Container{ctr(rl("cpu", "0"), rl("cpu", "1"))}},
			corev1.PodSpec{Containers: []corev1.Container{ctr(rl("cpu", "0"), rl("cpu", "1"))}}, false},
		{"init containers too", corev1.PodSpec{
			InitContainers: []corev1.Container{ctr(nil, rl("nvidia.com/gpu", "2"))},
			Containers:     []corev1.Container{ctr(nil, nil)},
		}, corev1.PodSpec{
			InitContainers: []corev1.Container{ctr(rl("nvidia.com/gpu", "2"), rl("nvidia.com/gpu", "2"))},
			Containers:     []corev1.Container{ctr(nil, nil)},
		}, true},
		{"pod-level limits only", corev1.PodSpec{
			Containers: []corev1.Container{ctr(nil, nil)},
			Resources:  &corev1.ResourceRequirements{Limits: rl("cpu", "2", "memory", "1Gi")},
		}, corev1.PodSpec{
			Containers: []corev1.Container{ctr(nil, nil)},
			Resources:  &corev1.ResourceRequirements{Limits: rl("cpu", "2", "memory", "1Gi"), Requests: rl("cpu", "2", "memory", "1Gi")},
		}, true},
		{"pod-level requests from the containers' aggregate", corev1.PodSpec{
			// cpu: containers 300m + sidecar 200m = 500m; init steps 600m, then 100m+200m. The
			// second container's cpu limit becomes its request first.
			InitContainers: []corev1.Container{ctr(rl("cpu", "600m"), nil), sidecar, ctr(rl("cpu", "100m"), nil)},
			Containers:     []corev1.Container{ctr(rl("cpu", "100m"), nil), ctr(nil, rl("cpu", "200m"))},
			Resources:      &corev1.ResourceRequirements{Limits: rl("cpu", "4", "memory", "2Gi"), Requests: rl("memory", "1Gi")},
		}, corev1.PodSpec{
			InitContainers: []corev1.Container{ctr(rl("cpu", "600m"), nil), sidecar, ctr(rl("cpu", "100m"), nil)},
			Containers:     []corev1.Container{ctr(rl("cpu", "100m"), nil), ctr(rl("cpu", "200m"), rl("cpu", "200m"))},
			Resources:      &corev1.ResourceRequirements{Limits: rl("cpu", "4", "memory", "2Gi"), Requests: rl("cpu", "600m", "memory", "1Gi")},
		}, true},
		{"no pod-level limits: no pod-level requests", corev1.PodSpec{
			Containers: []corev1.Container{ctr(rl("cpu", "1"), nil)},
			Resources:  &corev1.ResourceRequirements{},
		}, corev1.PodSpec{
			Containers: []corev1.Container{ctr(rl("cpu", "1"), nil)},
			Resources:  &corev1.ResourceRequirements{},
		}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := NeedsRequests(&tc.spec); got != tc.needs {
				t.Errorf("NeedsRequests = %v, want %v", got, tc.needs)
			}
			SetRequests(&tc.spec)
			// Compare quantities by value: an aggregate's string form is its own.
			if diff := cmp.Diff(tc.want, tc.spec, cmp.Comparer(func(a, b resource.Quantity) bool { return a.Cmp(b) == 0 })); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
			if NeedsRequests(&tc.spec) && (tc.spec.Resources == nil || len(tc.spec.Resources.Limits) == 0) {
				t.Error("NeedsRequests still true after SetRequests")
			}
		})
	}
}
