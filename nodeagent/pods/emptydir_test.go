package pods

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

func TestEmptyDirMemorySize(t *testing.T) {
	mi := func(n int64) int64 { return n << 20 }
	limited := func(mem string) corev1.Container {
		return corev1.Container{Resources: corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse(mem)}}}
	}
	quantity := func(s string) *resource.Quantity { q := resource.MustParse(s); return &q }
	node := corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("1Gi")}
	tests := []struct {
		name      string
		init, app []corev1.Container
		sizeLimit *resource.Quantity
		node      corev1.ResourceList
		want      int64
	}{
		{name: "no limits: the node's allocatable memory", app: []corev1.Container{{}}, node: node, want: mi(1024)},
		{name: "nothing known: the kernel's default", app: []corev1.Container{{}}, want: 0},
		{name: "the pod's limit: the sum of its containers'", app: []corev1.Container{limited("64Mi"), limited("32Mi")}, node: node, want: mi(96)},
		{name: "a container without a limit: no pod limit", app: []corev1.Container{limited("64Mi"), {}}, node: node, want: mi(1024)},
		{name: "a larger init container", init: []corev1.Container{limited("200Mi")}, app: []corev1.Container{limited("64Mi")}, node: node, want: mi(200)},
		{name: "sizeLimit below the pod's limit", app: []corev1.Container{limited("64Mi")}, sizeLimit: quantity("16Mi"), node: node, want: mi(16)},
		{name: "sizeLimit above the pod's limit", app: []corev1.Container{limited("64Mi")}, sizeLimit: quantity("512Mi"), node: node, want: mi(64)},
		{name: "sizeLimit alone", app: []corev1.Container{{}}, sizeLimit: quantity("8Mi"), want: mi(8)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pod := &corev1.Pod{Spec: corev1.PodSpec{InitContainers: tt.init, Containers: tt.app}}
			if got := emptyDirMemorySize(pod, &corev1.EmptyDirVolumeSource{Medium: corev1.StorageMediumMemory, SizeLimit: tt.sizeLimit}, tt.node); got != tt.want {
				t.Errorf("size = %d MiB, want %d MiB", got>>20, tt.want>>20)
			}
		})
	}
}
