package main

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/bosun-gitops/bosun/internal/resource"
	bosunv1 "github.com/bosun-gitops/bosun/repo-layout/v1alpha1"
	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

var now = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

func ago(d time.Duration) metav1.Time { return metav1.Time{Time: now.Add(-d)} }

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("%s mismatch (-want +got):\n%s", name, diff)
	}
}

func replicas(n int32) *int32 { return &n }

func sampleObjects() map[*resource.Resource][]resource.Object {
	return map[*resource.Resource][]resource.Object{
		resource.Deployments: {&appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop", CreationTimestamp: ago(3 * time.Hour),
				Annotations: map[string]string{resource.AnnotationSource: "apps/web.yaml", resource.AnnotationSourceLine: "12"}},
			Spec: appsv1.DeploymentSpec{Replicas: replicas(3), Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
				Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "httpd", Image: "busybox:1.36"}}}}},
			Status: appsv1.DeploymentStatus{ReadyReplicas: 2, UpdatedReplicas: 3, AvailableReplicas: 2},
		}},
		resource.Pods: {&corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "web-1", Namespace: "shop", CreationTimestamp: ago(90 * time.Second)},
			Spec:       corev1.PodSpec{NodeName: "node-a", Containers: []corev1.Container{{Name: "a"}, {Name: "b"}}},
			Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.244.1.5", ContainerStatuses: []corev1.ContainerStatus{
				{Name: "a", Ready: true, RestartCount: 1},
				{Name: "b", RestartCount: 4, State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff"}}},
			}},
		}},
		resource.Services: {&corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop", CreationTimestamp: ago(48 * time.Hour)},
			Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeNodePort, ClusterIP: "10.96.0.10", Selector: map[string]string{"app": "web"},
				Ports: []corev1.ServicePort{{Port: 80, NodePort: 30080, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt32(8080)}}},
		}},
		resource.GitSyncs: {&bosunv1.GitSync{
			ObjectMeta: metav1.ObjectMeta{Name: "default", CreationTimestamp: ago(time.Hour)},
			Spec:       bosunv1.GitSyncSpec{Repo: "ssh://git@example.com/fleet.git", Branch: "main"},
			Status: bosunv1.GitSyncStatus{State: bosunv1.SyncStateFailed,
				Commit:  bosunv1.CommitInfo{SHA: "0123456789abcdef", Message: "broken\nbody", Author: "Ann", Time: ptr(ago(time.Minute))},
				Applied: bosunv1.CommitInfo{SHA: "fedcba9876543210", Message: "good", Author: "Ann"},
				Errors:  []bosunv1.FileError{{File: "apps/web.yaml", Line: 7, Field: "spec.replicas", Message: "must be non-negative"}},
				Counts:  bosunv1.SyncCounts{Created: 1, Unchanged: 4}},
		}},
	}
}

func ptr[T any](v T) *T { return &v }

func TestPrintTableGolden(t *testing.T) {
	var buf bytes.Buffer
	objs := sampleObjects()
	for _, res := range []*resource.Resource{resource.Deployments, resource.Pods, resource.Services, resource.GitSyncs} {
		for _, wide := range []bool{false, true} {
			if err := printTable(&buf, res, objs[res], true, wide, now); err != nil {
				t.Fatal(err)
			}
			buf.WriteString("\n")
		}
	}
	golden(t, "tables.txt", buf.Bytes())
}

func TestDescribeGolden(t *testing.T) {
	var buf bytes.Buffer
	objs := sampleObjects()
	events := []*corev1.Event{{
		Type: "Warning", Reason: "BackOff", Message: "Back-off restarting failed container b",
		Count: 3, LastTimestamp: ago(30 * time.Second), Source: corev1.EventSource{Component: "agent"},
	}}
	for _, res := range []*resource.Resource{resource.Deployments, resource.Pods, resource.Services, resource.GitSyncs} {
		if err := describe(&buf, res, objs[res][0], events, now); err != nil {
			t.Fatal(err)
		}
		buf.WriteString("---\n")
	}
	golden(t, "describe.txt", buf.Bytes())
}

func TestEventTableGolden(t *testing.T) {
	evs := []*corev1.Event{
		{ObjectMeta: metav1.ObjectMeta{Namespace: "shop"}, Type: "Normal", Reason: "ScalingReplicaSet",
			InvolvedObject: corev1.ObjectReference{Kind: "Deployment", Name: "web"},
			Message:        "Scaled up replica set web-5d8f to 3", LastTimestamp: ago(2 * time.Minute), Count: 1},
		{ObjectMeta: metav1.ObjectMeta{Namespace: "shop"}, Type: "Warning", Reason: "FailedScheduling",
			InvolvedObject: corev1.ObjectReference{Kind: "Pod", Name: "web-5d8f-x1"},
			Message:        "0/3 nodes are available: 3 Insufficient cpu.", LastTimestamp: ago(10 * time.Second), Count: 4},
	}
	var buf bytes.Buffer
	printEventTable(&buf, evs, true, now)
	golden(t, "events.txt", buf.Bytes())
}

func TestPrintEmptyListAsJSON(t *testing.T) {
	var buf bytes.Buffer
	if err := printObjects(&buf, resource.ConfigMaps, nil, false, &getOptions{output: "json"}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(buf.Bytes(), []byte(`"items": []`)) || !bytes.Contains(buf.Bytes(), []byte(`"kind": "List"`)) {
		t.Errorf("empty list as JSON = %s, want a List with no items", buf.String())
	}
}
