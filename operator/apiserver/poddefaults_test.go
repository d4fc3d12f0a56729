package apiserver_test

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestCreatedPodRequestsDefaultToLimits: a pod created through the API with limits only comes
// back, and is stored, with the requests a Kubernetes API server defaults from them.
func TestCreatedPodRequestsDefaultToLimits(t *testing.T) {
	ts := startServer(t)
	ctx := testCtx(t)
	ts.createNamespace(t, "a")
	p := testPod("gpu", "", nil)
	p.Spec.Containers[0].Resources.Limits = corev1.ResourceList{
		corev1.ResourceMemory: resource.MustParse("1Gi"), "nvidia.com/gpu": resource.MustParse("1"),
	}
	created, err := ts.client.CoreV1().Pods("a").Create(ctx, p, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got, err := ts.client.CoreV1().Pods("a").Get(ctx, "gpu", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for how, pod := range map[string]*corev1.Pod{"create response": created, "get": got} {
		r := pod.Spec.Containers[0].Resources.Requests
		if mem, gpu := r[corev1.ResourceMemory], r["nvidia.com/gpu"]; mem.String() != "1Gi" || gpu.String() != "1" {
			t.Errorf("%s: requests %v, want memory 1Gi and nvidia.com/gpu 1 from the limits", how, r)
		}
	}
}
