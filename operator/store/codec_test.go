package store

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/bosun-gitops/bosun/internal/resource"
	bosunv1 "github.com/bosun-gitops/bosun/repo-layout/v1alpha1"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apiresource "k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
)

// codecSamples returns objects that use the fields Bosun's kinds carry: maps, owner references,
// quantities, int-or-strings, times with sub-second parts, pointers and nested templates.
func codecSamples() []resource.Object {
	when := metav1.NewTime(time.Date(2026, 11, 28, 14, 3, 5, 123456789, time.UTC))
	micro := metav1.NewMicroTime(when.Time)
	meta := func(name string) metav1.ObjectMeta {
		return metav1.ObjectMeta{
			Name: name, Namespace: "prod", UID: "7f0c6a0e-7d0e-4a56-9c3e-0d0b6a0f0e01", Generation: 3,
			CreationTimestamp: when,
			Labels:            map[string]string{"app": "web", "tier": "front"},
			Annotations:       map[string]string{"bosun.dev/source": "apps/web.yaml", "bosun.dev/commit": "0123abcd"},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "web-5d4f",
				UID: "7f0c6a0e-7d0e-4a56-9c3e-0d0b6a0f0e02", Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true)}},
			Finalizers: []string{"bosun.dev/cleanup"},
		}
	}
	podSpec := corev1.PodSpec{
		NodeName:     "node-7",
		NodeSelector: map[string]string{"disk": "ssd"},
		Containers: []corev1.Container{{
			Name: "web", Image: "registry.local/web:1.2.3", Command: []string{"/bin/web"}, Args: []string{"--port", "8080"},
			Env:   []corev1.EnvVar{{Name: "MODE", Value: "prod"}, {Name: "KEY", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "s"}, Key: "k"}}}},
			Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080, HostPort: 80, Protocol: corev1.ProtocolTCP}},
			Resources: corev1.ResourceRequirements{
				Requests: corev1.ResourceList{corev1.ResourceCPU: apiresource.MustParse("250m"), corev1.ResourceMemory: apiresource.MustParse("64Mi")},
				Limits:   corev1.ResourceList{corev1.ResourceMemory: apiresource.MustParse("1Gi")},
			},
			ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromString("http")}}, PeriodSeconds: 5},
		}},
		Tolerations:                   []corev1.Toleration{{Key: "dedicated", Operator: corev1.TolerationOpEqual, Value: "web", Effect: corev1.TaintEffectNoSchedule, TolerationSeconds: ptr.To[int64](300)}},
		TerminationGracePeriodSeconds: ptr.To[int64](30),
	}
	return []resource.Object{
		&corev1.Pod{ObjectMeta: meta("web-5d4f-x7k2p"), Spec: podSpec, Status: corev1.PodStatus{
			Phase: corev1.PodRunning, PodIP: "10.42.7.12", StartTime: &when,
			Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: when}},
			ContainerStatuses: []corev1.ContainerStatus{{Name: "web", Ready: true, RestartCount: 2,
				State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: when}}}},
		}},
		&appsv1.Deployment{ObjectMeta: meta("web"), Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](3), Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"},
				MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "tier", Operator: metav1.LabelSelectorOpIn, Values: []string{"front"}}}},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}}, Spec: podSpec},
			Strategy: appsv1.DeploymentStrategy{Type: appsv1.RollingUpdateDeploymentStrategyType, RollingUpdate: &appsv1.RollingUpdateDeployment{
				MaxSurge: ptr.To(intstr.FromString("25%")), MaxUnavailable: ptr.To(intstr.FromInt32(1))}},
		}, Status: appsv1.DeploymentStatus{ObservedGeneration: 3, Replicas: 3, ReadyReplicas: 2,
			Conditions: []appsv1.DeploymentCondition{{Type: appsv1.DeploymentProgressing, Status: corev1.ConditionTrue, LastUpdateTime: when, LastTransitionTime: when, Reason: "NewReplicaSetAvailable"}}}},
		&corev1.Service{ObjectMeta: meta("web"), Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeNodePort, ClusterIP: "10.96.0.20", ClusterIPs: []string{"10.96.0.20"},
			Selector: map[string]string{"app": "web"}, Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080), NodePort: 30080, Protocol: corev1.ProtocolTCP}}}},
		&corev1.Secret{ObjectMeta: meta("creds"), Type: corev1.SecretTypeOpaque, Data: map[string][]byte{"k": {0, 1, 2, 0xff}, "empty": {}}},
		&corev1.ConfigMap{ObjectMeta: meta("conf"), Data: map[string]string{"a": "1", "b": ""}, BinaryData: map[string][]byte{"bin": {9}}},
		&corev1.Event{ObjectMeta: meta("web.1"), InvolvedObject: corev1.ObjectReference{Kind: "Pod", Name: "web"}, Reason: "Scheduled",
			Message: "assigned prod/web to node-7", FirstTimestamp: when, LastTimestamp: when, EventTime: micro, Count: 4, Type: corev1.EventTypeNormal},
		&coordinationv1.Lease{ObjectMeta: meta("node-7"), Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To("node-7"), LeaseDurationSeconds: ptr.To[int32](40), RenewTime: &micro}},
		&corev1.Node{ObjectMeta: meta("node-7"), Spec: corev1.NodeSpec{PodCIDR: "10.42.7.0/24", Taints: []corev1.Taint{{Key: "dedicated", Value: "web", Effect: corev1.TaintEffectNoSchedule, TimeAdded: &when}}},
			Status: corev1.NodeStatus{Capacity: corev1.ResourceList{corev1.ResourceCPU: apiresource.MustParse("2"), corev1.ResourcePods: apiresource.MustParse("110")}}},
		&bosunv1.Machine{ObjectMeta: metav1.ObjectMeta{Name: "node-7", Labels: map[string]string{"rack": "a"}, CreationTimestamp: when}},
	}
}

// resourceOf returns the resource of obj's type.
func resourceOf(obj resource.Object) *resource.Resource {
	for _, r := range resource.All {
		if reflect.TypeOf(r.New()) == reflect.TypeOf(obj) {
			return r
		}
	}
	panic(fmt.Sprintf("no resource for %T", obj))
}

// jsonRoundTrip is what an object read back was when values were JSON.
func jsonRoundTrip(t *testing.T, obj resource.Object) resource.Object {
	t.Helper()
	data, err := json.Marshal(obj)
	if err != nil {
		t.Fatal(err)
	}
	out := resourceOf(obj).New()
	if err := json.Unmarshal(data, out); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestCodecReadsAsJSONDid checks that what the store reads back from a stored value is what it
// read back when values were JSON: every field survives, and times keep whole seconds (metav1.Time
// has second precision in JSON, and Kubernetes' protobuf encoding drops the nanoseconds to agree),
// so clients that write back what they read do not see spurious changes.
func TestCodecReadsAsJSONDid(t *testing.T) {
	for _, obj := range codecSamples() {
		res := resourceOf(obj)
		res.SetTypeMeta(obj)
		t.Run(res.Kind, func(t *testing.T) {
			data, err := marshal(obj, MediaTypeProtobuf)
			if err != nil {
				t.Fatal(err)
			}
			_, isProtobuf := obj.(resource.ProtobufObject)
			if got := bytes.HasPrefix(data, protobufPrefix); got != isProtobuf {
				t.Fatalf("protobuf prefix = %v, want %v (k8s.io/api kinds as protobuf, Bosun's as JSON)", got, isProtobuf)
			}
			got := res.New()
			if err := unmarshal(data, got); err != nil {
				t.Fatal(err)
			}
			res.SetTypeMeta(got)
			want := jsonRoundTrip(t, obj)
			if diff := cmp.Diff(want, got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("decoded value differs from the JSON round trip (-json +stored):\n%s", diff)
			}
			var meta metav1.ObjectMeta
			if err := decodeMetadata(data, &meta); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(objectMeta(want), &meta, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("decodeMetadata differs (-want +got):\n%s", diff)
			}
		})
	}
}

// objectMeta returns obj's metadata.
func objectMeta(obj resource.Object) *metav1.ObjectMeta {
	return reflect.ValueOf(obj).Elem().FieldByName("ObjectMeta").Addr().Interface().(*metav1.ObjectMeta)
}

// BenchmarkCodec compares the stored forms of a running pod: protobuf (what the store writes)
// against JSON (what it wrote before), encoding, decoding and size.
func BenchmarkCodec(b *testing.B) {
	pod := codecSamples()[0]
	resource.Pods.SetTypeMeta(pod)
	forms := []struct {
		name      string
		marshal   func(resource.Object) ([]byte, error)
		unmarshal func([]byte, resource.Object) error
	}{
		{"protobuf", func(o resource.Object) ([]byte, error) { return marshal(o, MediaTypeProtobuf) }, unmarshal},
		{"json", func(o resource.Object) ([]byte, error) { return json.Marshal(o) }, func(d []byte, o resource.Object) error { return json.Unmarshal(d, o) }},
	}
	for _, f := range forms {
		data, err := f.marshal(pod)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(f.name+"/encode", func(b *testing.B) {
			for b.Loop() {
				if _, err := f.marshal(pod); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(len(data)), "bytes/value")
		})
		b.Run(f.name+"/decode", func(b *testing.B) {
			for b.Loop() {
				if err := f.unmarshal(data, &corev1.Pod{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
