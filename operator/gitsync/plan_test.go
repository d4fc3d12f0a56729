package gitsync

import (
	"testing"

	"github.com/bosun-gitops/bosun/internal/resource"
	bosunv1 "github.com/bosun-gitops/bosun/repo-layout/v1alpha1"
	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func managed(obj resource.Object, hash string) resource.Object {
	obj.SetAnnotations(map[string]string{resource.AnnotationSource: "f.yaml", resource.AnnotationAppliedHash: hash})
	return obj
}

func ns(name string) *corev1.Namespace {
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
}

func deploy(namespace, name string) *appsv1.Deployment {
	return &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name}}
}

func want(res *resource.Resource, obj resource.Object, hash string) *desired {
	return &desired{res: res, obj: obj, file: "f.yaml", line: 1, hash: hash}
}

func TestComputePlan(t *testing.T) {
	type step struct {
		Phase                         int
		Action, Kind, Namespace, Name string
	}
	tests := []struct {
		name      string
		want      []*desired
		live      []resource.Object
		steps     []step
		unchanged int
	}{
		{
			name: "create orders namespaces first",
			want: []*desired{
				want(resource.Deployments, deploy("a", "web"), "h1"),
				want(resource.Machines, &bosunv1.Machine{ObjectMeta: metav1.ObjectMeta{Name: "m1"}}, "h2"),
				want(resource.Namespaces, ns("a"), "h3"),
			},
			steps: []step{
				{0, "create", "Namespace", "", "a"},
				{0, "create", "Machine", "", "m1"},
				{1, "create", "Deployment", "a", "web"},
			},
		},
		{
			name: "unchanged hash is not written, changed hash is updated",
			want: []*desired{
				want(resource.Deployments, deploy("a", "same"), "h1"),
				want(resource.Deployments, deploy("a", "edited"), "new"),
			},
			live: []resource.Object{
				managed(deploy("a", "same"), "h1"),
				managed(deploy("a", "edited"), "old"),
			},
			steps:     []step{{1, "update", "Deployment", "a", "edited"}},
			unchanged: 1,
		},
		{
			name: "prune managed only, namespaced before namespaces",
			live: []resource.Object{
				managed(ns("gone"), "h"),
				managed(deploy("gone", "web"), "h"),
				deploy("gone", "by-hand"),
			},
			steps: []step{{2, "delete", "Deployment", "gone", "web"}, {3, "delete", "Namespace", "", "gone"}},
		},
		{
			name:  "adopt an object created through the API",
			want:  []*desired{want(resource.Deployments, deploy("a", "web"), "h")},
			live:  []resource.Object{deploy("a", "web")},
			steps: []step{{1, "adopt", "Deployment", "a", "web"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			live := map[objKey]resource.Object{}
			for _, obj := range tt.live {
				res := resource.Deployments
				if _, ok := obj.(*corev1.Namespace); ok {
					res = resource.Namespaces
				}
				live[keyOf(res, obj.GetNamespace(), obj.GetName())] = obj
			}
			p := computePlan(tt.want, live)
			var got []step
			for i, ph := range p.phases {
				for _, c := range ph {
					k := changeKey(c)
					got = append(got, step{i, c.action.String(), c.res.Kind, k.namespace, k.name})
				}
			}
			if diff := cmp.Diff(tt.steps, got); diff != "" {
				t.Errorf("plan (-want +got):\n%s", diff)
			}
			if p.unchanged != tt.unchanged {
				t.Errorf("unchanged = %d, want %d", p.unchanged, tt.unchanged)
			}
		})
	}
}

func TestPrepareKeepsControllerState(t *testing.T) {
	policy := corev1.IPFamilyPolicySingleStack
	live := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: "a", Name: "web", ResourceVersion: "7", UID: "u1",
			Finalizers:  []string{"bosun.dev/cleanup"},
			Annotations: map[string]string{"deployment.kubernetes.io/revision": "3", "someone/else": "x"},
			Labels:      map[string]string{"added": "by-hand"},
		},
		Spec: corev1.ServiceSpec{
			ClusterIP: "10.96.0.10", ClusterIPs: []string{"10.96.0.10"}, IPFamilies: []corev1.IPFamily{corev1.IPv4Protocol},
			IPFamilyPolicy: &policy,
			Ports:          []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP, NodePort: 30080}},
		},
	}
	manifest := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "a", Name: "web", Labels: map[string]string{"app": "web"}},
		Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}}},
	}
	got := prepare(&desired{res: resource.Services, obj: manifest, file: "svc.yaml", line: 4, hash: "h"}, live, "abc").(*corev1.Service)

	wantSvc := manifest.DeepCopy()
	wantSvc.TypeMeta = metav1.TypeMeta{APIVersion: "v1", Kind: "Service"}
	wantSvc.ResourceVersion, wantSvc.UID, wantSvc.Finalizers = "7", "u1", []string{"bosun.dev/cleanup"}
	wantSvc.Annotations = map[string]string{
		resource.AnnotationSource: "svc.yaml", resource.AnnotationSourceLine: "4",
		resource.AnnotationCommit: "abc", resource.AnnotationAppliedHash: "h",
		"deployment.kubernetes.io/revision": "3",
	}
	wantSvc.Spec = live.Spec
	if diff := cmp.Diff(wantSvc, got); diff != "" {
		t.Errorf("prepared Service (-want +got):\n%s", diff)
	}
}

func TestAppliedHash(t *testing.T) {
	base := appliedHash([]byte(`{"a":1}`), "f.yaml", 1)
	for name, h := range map[string]string{
		"raw":  appliedHash([]byte(`{"a":2}`), "f.yaml", 1),
		"file": appliedHash([]byte(`{"a":1}`), "g.yaml", 1),
		"line": appliedHash([]byte(`{"a":1}`), "f.yaml", 2),
	} {
		if h == base {
			t.Errorf("changing the %s does not change the hash", name)
		}
	}
	if base != appliedHash([]byte(`{"a":1}`), "f.yaml", 1) {
		t.Error("hash is not deterministic")
	}
}
