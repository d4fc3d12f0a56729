package store_test

import (
	"context"
	"testing"

	"github.com/bosun-gitops/bosun/internal/resource"
	"github.com/bosun-gitops/bosun/operator/store"
	"github.com/bosun-gitops/bosun/operator/store/storetest"
	corev1 "k8s.io/api/core/v1"
	apiresource "k8s.io/apimachinery/pkg/api/resource"
)

// TestPodRequestsDefaultToLimits: every path that writes a pod (Create, Update, Batch — the API
// server, controllers creating from templates) stores the requests Kubernetes defaults from
// limits, without touching the caller's object.
func TestPodRequestsDefaultToLimits(t *testing.T) {
	ctx := context.Background()
	s := storetest.NewStore(t)
	limited := func(name string) *corev1.Pod {
		p := pod("default", name, "")
		p.Spec.Containers[0].Resources.Limits = corev1.ResourceList{
			corev1.ResourceCPU: apiresource.MustParse("500m"), "nvidia.com/gpu": apiresource.MustParse("1"),
		}
		p.Spec.InitContainers = []corev1.Container{{Name: "init", Image: "busybox", Resources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceMemory: apiresource.MustParse("1Mi")},
			Limits:   corev1.ResourceList{corev1.ResourceMemory: apiresource.MustParse("64Mi")},
		}}}
		return p
	}
	check := func(how string, obj resource.Object) {
		t.Helper()
		for _, o := range []resource.Object{obj, mustGet(t, s, obj.GetName())} {
			p := o.(*corev1.Pod)
			c, init := p.Spec.Containers[0].Resources.Requests, p.Spec.InitContainers[0].Resources.Requests
			if cpu, gpu, mem := c[corev1.ResourceCPU], c["nvidia.com/gpu"], init[corev1.ResourceMemory]; cpu.String() != "500m" || gpu.String() != "1" || mem.String() != "1Mi" {
				t.Errorf("%s: requests %v and init %v, want cpu 500m and nvidia.com/gpu 1 from the limits, init memory 1Mi kept", how, c, init)
			}
		}
	}

	in := limited("created")
	created, err := s.Create(ctx, resource.Pods, in)
	if err != nil {
		t.Fatal(err)
	}
	check("Create", created)
	if in.Spec.Containers[0].Resources.Requests != nil {
		t.Errorf("Create changed the caller's pod: requests %v", in.Spec.Containers[0].Resources.Requests)
	}

	up := limited("created")
	up.Labels = map[string]string{"updated": "yes"}
	updated, err := s.Update(ctx, resource.Pods, up)
	if err != nil {
		t.Fatal(err)
	}
	check("Update", updated)
	if up.Spec.Containers[0].Resources.Requests != nil {
		t.Errorf("Update changed the caller's pod: requests %v", up.Spec.Containers[0].Resources.Requests)
	}

	res := s.Batch(ctx, []store.Op{{Type: store.OpCreate, Resource: resource.Pods, Object: limited("batched")}})
	if res[0].Err != nil {
		t.Fatal(res[0].Err)
	}
	check("Batch", res[0].Object)
}

func mustGet(t *testing.T, s *store.Store, name string) resource.Object {
	t.Helper()
	o, err := s.Get(context.Background(), resource.Pods, "default", name)
	if err != nil {
		t.Fatal(err)
	}
	return o
}
