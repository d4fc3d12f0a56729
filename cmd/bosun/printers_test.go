package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bosun-gitops/bosun/internal/resource"
	bosunv1 "github.com/bosun-gitops/bosun/repo-layout/v1alpha1"
	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiresource "k8s.io/apimachinery/pkg/api/resource"
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

func ptr[T any](v T) *T { return &v }

func running(since time.Duration) corev1.ContainerState {
	return corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: ago(since)}}
}

func waiting(reason string) corev1.ContainerState {
	return corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason}}
}

func terminated(reason string, code int32) corev1.ContainerState {
	return corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{Reason: reason, ExitCode: code,
		StartedAt: ago(5 * time.Minute), FinishedAt: ago(4 * time.Minute)}}
}

func podCond(t corev1.PodConditionType, s corev1.ConditionStatus, reason, msg string) corev1.PodCondition {
	return corev1.PodCondition{Type: t, Status: s, Reason: reason, Message: msg}
}

// crashingPod runs two containers after an init container; b is in CrashLoopBackOff.
func crashingPod() *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web-1", Namespace: "shop", CreationTimestamp: ago(90 * time.Second),
			Labels:          map[string]string{"app": "web", "pod-template-hash": "5d8f"},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "web-5d8f", Controller: ptr(true)}}},
		Spec: corev1.PodSpec{NodeName: "node-a", NodeSelector: map[string]string{"disk": "ssd"},
			InitContainers: []corev1.Container{{Name: "setup", Image: "busybox:1.36"}},
			Containers: []corev1.Container{
				{Name: "a", Image: "busybox:1.36", Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{
					corev1.ResourceCPU: apiresource.MustParse("100m"), corev1.ResourceMemory: apiresource.MustParse("64Mi")}}},
				{Name: "b", Image: "busybox:1.37"},
			},
			Tolerations: []corev1.Toleration{
				{Key: "node.kubernetes.io/not-ready", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: ptr[int64](300)},
				{Key: "dedicated", Operator: corev1.TolerationOpEqual, Value: "web", Effect: corev1.TaintEffectNoSchedule},
			},
		},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, HostIP: "192.168.79.2", PodIP: "10.244.1.5",
			PodIPs: []corev1.PodIP{{IP: "10.244.1.5"}}, StartTime: ptr(ago(89 * time.Second)),
			Conditions: []corev1.PodCondition{
				podCond(corev1.PodScheduled, corev1.ConditionTrue, "", ""),
				podCond(corev1.PodInitialized, corev1.ConditionTrue, "", ""),
				podCond(corev1.PodReady, corev1.ConditionFalse, "ContainersNotReady", "containers with unready status: [b]"),
			},
			InitContainerStatuses: []corev1.ContainerStatus{{Name: "setup", State: terminated("Completed", 0)}},
			ContainerStatuses: []corev1.ContainerStatus{
				{Name: "a", Ready: true, RestartCount: 1, State: running(80 * time.Second)},
				{Name: "b", RestartCount: 4, State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{
					Reason: "CrashLoopBackOff", Message: "back-off 40s restarting failed container=b"}},
					LastTerminationState: terminated("Error", 1)},
			}},
	}
}

// unschedulablePod fits on no node.
func unschedulablePod() *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "big-0", Namespace: "shop", CreationTimestamp: ago(2 * time.Minute)},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "busybox:1.36"}}},
		Status: corev1.PodStatus{Phase: corev1.PodPending, Conditions: []corev1.PodCondition{
			podCond(corev1.PodScheduled, corev1.ConditionFalse, "Unschedulable",
				"0/3 nodes are available: 1 node(s) had untolerated taint {dedicated: db}, 2 Insufficient cpu."),
		}},
	}
}

func sampleObjects() map[*resource.Resource][]resource.Object {
	return map[*resource.Resource][]resource.Object{
		resource.Deployments: {&appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop", CreationTimestamp: ago(3 * time.Hour),
				Annotations: map[string]string{resource.AnnotationSource: "apps/web.yaml", resource.AnnotationSourceLine: "12"}},
			Spec: appsv1.DeploymentSpec{Replicas: replicas(3), Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
				Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "httpd", Image: "busybox:1.36"}}}}},
			Status: appsv1.DeploymentStatus{ReadyReplicas: 2, UpdatedReplicas: 3, AvailableReplicas: 2},
		}},
		resource.Pods: {
			crashingPod(),
			&corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Name: "web-2", Namespace: "shop", CreationTimestamp: ago(20 * time.Minute)},
				Spec: corev1.PodSpec{NodeName: "node-b", Containers: []corev1.Container{{Name: "a"}},
					ReadinessGates: []corev1.PodReadinessGate{{ConditionType: "example.com/lb-ready"}, {ConditionType: "example.com/warm"}}},
				Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.244.2.7", PodIPs: []corev1.PodIP{{IP: "10.244.2.7"}},
					Conditions:        []corev1.PodCondition{podCond("example.com/lb-ready", corev1.ConditionTrue, "", ""), podCond(corev1.PodReady, corev1.ConditionTrue, "", "")},
					ContainerStatuses: []corev1.ContainerStatus{{Name: "a", Ready: true, State: running(19 * time.Minute)}}},
			},
			&corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Name: "web-3", Namespace: "shop", CreationTimestamp: ago(10 * time.Second)},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "a"}}},
				Status:     corev1.PodStatus{Phase: corev1.PodPending, NominatedNodeName: "node-c"},
			},
		},
		resource.Services: {&corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop", CreationTimestamp: ago(48 * time.Hour)},
			Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeNodePort, ClusterIP: "10.96.0.10", ClusterIPs: []string{"10.96.0.10"}, Selector: map[string]string{"app": "web"},
				Ports: []corev1.ServicePort{{Port: 80, NodePort: 30080, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt32(8080)}}},
		}, &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: "shop", CreationTimestamp: ago(48 * time.Hour)},
			Spec:       corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP, ClusterIP: "None", ClusterIPs: []string{"None"}, Selector: map[string]string{"app": "db"}},
		}},
		resource.GitSyncs: {&bosunv1.GitSync{
			ObjectMeta: metav1.ObjectMeta{Name: "default", CreationTimestamp: ago(time.Hour)},
			Spec:       bosunv1.GitSyncSpec{Repo: "ssh://git@example.com/fleet.git", Branch: "main"},
			Status: bosunv1.GitSyncStatus{State: bosunv1.SyncStateFailed,
				Commit:  bosunv1.CommitInfo{SHA: "0123456789abcdef", Message: "broken\nbody", Author: "Ann", Time: ptr(ago(time.Minute))},
				Applied: bosunv1.CommitInfo{SHA: "fedcba9876543210", Message: "good", Author: "Ann"},
				Errors:  []bosunv1.FileError{{File: "apps/web.yaml", Line: 7, Field: "spec.replicas", Message: "must be non-negative"}},
				Counts:  bosunv1.SyncCounts{Created: 1, Unchanged: 4},
				History: []bosunv1.CommitRecord{
					{SHA: "0123456789abcdef", Author: "Ann", Message: "broken", Time: ptr(ago(time.Minute)), Sync: bosunv1.SyncStatusFailed,
						Reason: "invalid (1 errors), first: apps/web.yaml:7: spec.replicas: must be non-negative"},
					{SHA: "fedcba9876543210", Author: "Ann", Message: "good", Time: ptr(ago(20 * time.Minute)), Sync: bosunv1.SyncStatusSynced,
						Health: bosunv1.HealthDegraded, Reason: `deployment "web" exceeded its progress deadline`},
					{SHA: "aaaabbbbccccdddd", Author: "Bob", Message: "scale web to 3", Time: ptr(ago(3 * time.Hour)), Sync: bosunv1.SyncStatusSynced,
						Health: bosunv1.HealthHealthy, Reason: "all 1 changed workloads are available"},
				}},
		}},
		resource.Nodes: {&corev1.Node{
			ObjectMeta: metav1.ObjectMeta{Name: "node-a", CreationTimestamp: ago(26 * time.Hour),
				Labels: map[string]string{"node-role.kubernetes.io/control-plane": "", "kubernetes.io/role": "edge", "disk": "ssd"}},
			Status: corev1.NodeStatus{
				Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}},
				Addresses: []corev1.NodeAddress{{Type: corev1.NodeHostName, Address: "node-a"},
					{Type: corev1.NodeInternalIP, Address: "192.168.79.2"}, {Type: corev1.NodeExternalIP, Address: "203.0.113.7"}},
				NodeInfo: corev1.NodeSystemInfo{KubeletVersion: "v0.3.0", OSImage: "Debian GNU/Linux 12 (bookworm)",
					KernelVersion: "6.1.0-18-amd64", ContainerRuntimeVersion: "containerd://1.6.20"},
			},
		}, &corev1.Node{
			ObjectMeta: metav1.ObjectMeta{Name: "node-b", CreationTimestamp: ago(5 * time.Minute)},
			Spec:       corev1.NodeSpec{Unschedulable: true},
			Status: corev1.NodeStatus{
				Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionUnknown}},
				Addresses:  []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "192.168.79.3"}},
			},
		}, &corev1.Node{
			ObjectMeta: metav1.ObjectMeta{Name: "node-c", CreationTimestamp: ago(30 * time.Second)},
		}},
		resource.ReplicaSets: {&appsv1.ReplicaSet{
			ObjectMeta: metav1.ObjectMeta{Name: "web-5d8f", Namespace: "shop", CreationTimestamp: ago(3 * time.Hour)},
			Spec: appsv1.ReplicaSetSpec{Replicas: replicas(3),
				Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web", "pod-template-hash": "5d8f"}},
				Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "httpd", Image: "busybox:1.36"}, {Name: "log", Image: "busybox:1.37"}}}}},
			Status: appsv1.ReplicaSetStatus{Replicas: 3, ReadyReplicas: 2},
		}, &appsv1.ReplicaSet{
			ObjectMeta: metav1.ObjectMeta{Name: "web-6c7b", Namespace: "shop", CreationTimestamp: ago(4 * 24 * time.Hour)},
			Spec: appsv1.ReplicaSetSpec{Replicas: replicas(0),
				Selector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "tier", Operator: metav1.LabelSelectorOpIn, Values: []string{"a", "b"}}}},
				Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "httpd", Image: "busybox:1.35"}}}}},
		}},
		resource.ReplicationControllers: {&corev1.ReplicationController{
			ObjectMeta: metav1.ObjectMeta{Name: "legacy", Namespace: "shop", CreationTimestamp: ago(400 * 24 * time.Hour),
				Annotations: map[string]string{resource.AnnotationSource: "apps/legacy.yaml"}},
			Spec: corev1.ReplicationControllerSpec{Replicas: replicas(2), Selector: map[string]string{"app": "legacy", "tier": "web"},
				Template: &corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "busybox:1.36"}}}}},
			Status: corev1.ReplicationControllerStatus{Replicas: 2, ReadyReplicas: 1},
		}},
		resource.DaemonSets: {&appsv1.DaemonSet{
			ObjectMeta: metav1.ObjectMeta{Name: "logger", Namespace: "kube-system", CreationTimestamp: ago(7 * time.Hour)},
			Spec: appsv1.DaemonSetSpec{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "logger"}},
				Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{NodeSelector: map[string]string{"kubernetes.io/os": "linux"},
					Containers: []corev1.Container{{Name: "logger", Image: "busybox:1.36"}}}}},
			Status: appsv1.DaemonSetStatus{DesiredNumberScheduled: 3, CurrentNumberScheduled: 3, NumberReady: 2, UpdatedNumberScheduled: 1, NumberAvailable: 2},
		}, &appsv1.DaemonSet{
			ObjectMeta: metav1.ObjectMeta{Name: "proxy", Namespace: "kube-system", CreationTimestamp: ago(7 * time.Hour)},
			Spec: appsv1.DaemonSetSpec{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "proxy"}},
				Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "proxy", Image: "busybox:1.36"}}}}},
		}},
		resource.Endpoints: {&corev1.Endpoints{
			// Five ready addresses on two ports: three shown, "+ 7 more...".
			ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop", CreationTimestamp: ago(48 * time.Hour)},
			Subsets: []corev1.EndpointSubset{{
				Addresses:         []corev1.EndpointAddress{{IP: "10.244.1.5"}, {IP: "10.244.2.7"}, {IP: "10.244.3.2"}, {IP: "10.244.4.2"}, {IP: "10.244.5.2"}},
				NotReadyAddresses: []corev1.EndpointAddress{{IP: "10.244.1.9"}},
				Ports:             []corev1.EndpointPort{{Name: "http", Port: 8080}, {Name: "metrics", Port: 9090}},
			}},
		}, &corev1.Endpoints{
			ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: "shop", CreationTimestamp: ago(48 * time.Hour)},
			Subsets:    []corev1.EndpointSubset{{Addresses: []corev1.EndpointAddress{{IP: "10.244.1.6"}, {IP: "fd00::6"}}}},
		}, &corev1.Endpoints{
			ObjectMeta: metav1.ObjectMeta{Name: "idle", Namespace: "shop", CreationTimestamp: ago(48 * time.Hour)},
		}, &corev1.Endpoints{
			ObjectMeta: metav1.ObjectMeta{Name: "v6", Namespace: "shop", CreationTimestamp: ago(48 * time.Hour)},
			Subsets: []corev1.EndpointSubset{{Addresses: []corev1.EndpointAddress{{IP: "fd00::7"}},
				Ports: []corev1.EndpointPort{{Port: 53, Protocol: corev1.ProtocolUDP}}}},
		}},
		resource.Events: sampleEvents(),
	}
}

func sampleEvents() []resource.Object {
	return []resource.Object{
		&corev1.Event{ObjectMeta: metav1.ObjectMeta{Name: "web.17a3", Namespace: "shop"}, Type: "Normal", Reason: "ScalingReplicaSet",
			InvolvedObject: corev1.ObjectReference{Kind: "Deployment", Name: "web"}, Source: corev1.EventSource{Component: "deployment-controller"},
			Message: "Scaled up replica set web-5d8f from 0 to 3", FirstTimestamp: ago(2 * time.Minute), LastTimestamp: ago(2 * time.Minute), Count: 1},
		&corev1.Event{ObjectMeta: metav1.ObjectMeta{Name: "web-1.17a4", Namespace: "shop"}, Type: "Warning", Reason: "BackOff",
			InvolvedObject: corev1.ObjectReference{Kind: "Pod", Name: "web-1", FieldPath: "spec.containers{b}"},
			Source:         corev1.EventSource{Component: "bosun-agent", Host: "node-a"},
			Message:        "Back-off restarting failed container b\n", FirstTimestamp: ago(80 * time.Second), LastTimestamp: ago(10 * time.Second), Count: 4},
		&corev1.Event{ObjectMeta: metav1.ObjectMeta{Name: "big-0.17a5", Namespace: "shop"}, Type: "Warning", Reason: "FailedScheduling",
			InvolvedObject: corev1.ObjectReference{Kind: "Pod", Name: "big-0"}, ReportingController: "bosun.dev/scheduler",
			Message: "0/3 nodes are available: 3 Insufficient cpu.", EventTime: metav1.MicroTime{Time: now.Add(-3 * time.Minute)},
			Series: &corev1.EventSeries{Count: 7, LastObservedTime: metav1.MicroTime{Time: now.Add(-15 * time.Second)}}},
	}
}

func TestPrintTableGolden(t *testing.T) {
	var buf bytes.Buffer
	objs := sampleObjects()
	for _, res := range []*resource.Resource{
		resource.Deployments, resource.Pods, resource.Services, resource.GitSyncs, resource.Nodes,
		resource.ReplicaSets, resource.ReplicationControllers, resource.DaemonSets, resource.Endpoints, resource.Events,
	} {
		for _, wide := range []bool{false, true} {
			fmt.Fprintf(&buf, "$ bosun get %s -A", res.Resource)
			if wide {
				buf.WriteString(" -o wide")
			}
			buf.WriteString("\n")
			if err := printTable(&buf, res, objs[res], true, wide, now); err != nil {
				t.Fatal(err)
			}
			buf.WriteString("\n")
		}
	}
	golden(t, "tables.txt", buf.Bytes())
}

// TestTablesHaveOneCellPerColumn catches a row function that forgets a cell (a shifted table).
func TestTablesHaveOneCellPerColumn(t *testing.T) {
	for res, tab := range tables {
		if got := len(tab.row(res.New(), now)); got != len(tab.columns) {
			t.Errorf("%s: %d cells for %d columns", res, got, len(tab.columns))
		}
	}
}

// TestPodStatusColumn checks READY, STATUS and RESTARTS against what kubectl's printPod shows for
// the same pod.
func TestPodStatusColumn(t *testing.T) {
	always := ptr(corev1.ContainerRestartPolicyAlways)
	spec := func(inits, containers int) corev1.PodSpec {
		var s corev1.PodSpec
		for i := range inits {
			s.InitContainers = append(s.InitContainers, corev1.Container{Name: fmt.Sprintf("init-%d", i)})
		}
		for i := range containers {
			s.Containers = append(s.Containers, corev1.Container{Name: fmt.Sprintf("c-%d", i)})
		}
		return s
	}
	cs := func(state corev1.ContainerState, ready bool, restarts int32) corev1.ContainerStatus {
		return corev1.ContainerStatus{State: state, Ready: ready, RestartCount: restarts}
	}
	withLast := func(s corev1.ContainerStatus, finished time.Duration) corev1.ContainerStatus {
		s.LastTerminationState = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 1, FinishedAt: ago(finished)}}
		return s
	}
	deleting := ptr(ago(time.Second))
	tests := []struct {
		name                    string
		pod                     corev1.Pod
		ready, status, restarts string
	}{
		{"pending, no status yet", corev1.Pod{Spec: spec(0, 1), Status: corev1.PodStatus{Phase: corev1.PodPending}}, "0/1", "Pending", "0"},
		{"created without a phase", corev1.Pod{Spec: spec(0, 1)}, "0/1", "Pending", "0"},
		{"running and ready", corev1.Pod{Spec: spec(0, 2), Status: corev1.PodStatus{Phase: corev1.PodRunning,
			ContainerStatuses: []corev1.ContainerStatus{cs(running(time.Minute), true, 0), cs(running(time.Minute), true, 0)}}},
			"2/2", "Running", "0"},
		{"running, not ready yet", corev1.Pod{Spec: spec(0, 1), Status: corev1.PodStatus{Phase: corev1.PodRunning,
			ContainerStatuses: []corev1.ContainerStatus{cs(running(time.Minute), false, 0)}}}, "0/1", "Running", "0"},
		{"ContainerCreating", corev1.Pod{Spec: spec(0, 1), Status: corev1.PodStatus{Phase: corev1.PodPending,
			ContainerStatuses: []corev1.ContainerStatus{cs(waiting("ContainerCreating"), false, 0)}}}, "0/1", "ContainerCreating", "0"},
		{"first init container running", corev1.Pod{Spec: spec(2, 1), Status: corev1.PodStatus{Phase: corev1.PodPending,
			InitContainerStatuses: []corev1.ContainerStatus{cs(running(time.Second), false, 0), cs(waiting("PodInitializing"), false, 0)},
			ContainerStatuses:     []corev1.ContainerStatus{cs(waiting("PodInitializing"), false, 0)}}}, "0/1", "Init:0/2", "0"},
		{"second init container waiting to start", corev1.Pod{Spec: spec(2, 1), Status: corev1.PodStatus{Phase: corev1.PodPending,
			InitContainerStatuses: []corev1.ContainerStatus{cs(terminated("Completed", 0), false, 0), cs(waiting("PodInitializing"), false, 0)}}},
			"0/1", "Init:1/2", "0"},
		{"init container crash-looping", corev1.Pod{Spec: spec(1, 1), Status: corev1.PodStatus{Phase: corev1.PodPending,
			InitContainerStatuses: []corev1.ContainerStatus{withLast(cs(waiting("CrashLoopBackOff"), false, 3), 30*time.Second)},
			ContainerStatuses:     []corev1.ContainerStatus{cs(waiting("PodInitializing"), false, 0)}}},
			"0/1", "Init:CrashLoopBackOff", "3 (30s ago)"},
		{"init container failed", corev1.Pod{Spec: spec(1, 1), Status: corev1.PodStatus{Phase: corev1.PodPending,
			InitContainerStatuses: []corev1.ContainerStatus{cs(terminated("Error", 2), false, 0)}}}, "0/1", "Init:Error", "0"},
		{"init container exit code without reason", corev1.Pod{Spec: spec(1, 1), Status: corev1.PodStatus{Phase: corev1.PodPending,
			InitContainerStatuses: []corev1.ContainerStatus{cs(terminated("", 3), false, 0)}}}, "0/1", "Init:ExitCode:3", "0"},
		{"init container killed by a signal", corev1.Pod{Spec: spec(1, 1), Status: corev1.PodStatus{Phase: corev1.PodPending,
			InitContainerStatuses: []corev1.ContainerStatus{{State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{Signal: 9, ExitCode: 137}}}}}},
			"0/1", "Init:Signal:9", "0"},
		{"init image pull failing", corev1.Pod{Spec: spec(1, 1), Status: corev1.PodStatus{Phase: corev1.PodPending,
			InitContainerStatuses: []corev1.ContainerStatus{cs(waiting("ErrImagePull"), false, 0)}}}, "0/1", "Init:ErrImagePull", "0"},
		{"CrashLoopBackOff", corev1.Pod{Spec: spec(0, 2), Status: corev1.PodStatus{Phase: corev1.PodRunning,
			ContainerStatuses: []corev1.ContainerStatus{cs(running(time.Hour), true, 1), withLast(cs(waiting("CrashLoopBackOff"), false, 4), 2*time.Minute)}}},
			"1/2", "CrashLoopBackOff", "5 (2m ago)"},
		{"ErrImagePull", corev1.Pod{Spec: spec(0, 1), Status: corev1.PodStatus{Phase: corev1.PodPending,
			ContainerStatuses: []corev1.ContainerStatus{cs(waiting("ErrImagePull"), false, 0)}}}, "0/1", "ErrImagePull", "0"},
		{"ImagePullBackOff", corev1.Pod{Spec: spec(0, 1), Status: corev1.PodStatus{Phase: corev1.PodPending,
			ContainerStatuses: []corev1.ContainerStatus{cs(waiting("ImagePullBackOff"), false, 0)}}}, "0/1", "ImagePullBackOff", "0"},
		{"Completed", corev1.Pod{Spec: spec(0, 1), Status: corev1.PodStatus{Phase: corev1.PodSucceeded,
			ContainerStatuses: []corev1.ContainerStatus{cs(terminated("Completed", 0), false, 0)}}}, "0/1", "Completed", "0"},
		{"failed with Error", corev1.Pod{Spec: spec(0, 1), Status: corev1.PodStatus{Phase: corev1.PodFailed,
			ContainerStatuses: []corev1.ContainerStatus{cs(terminated("Error", 1), false, 0)}}}, "0/1", "Error", "0"},
		{"exit code without reason", corev1.Pod{Spec: spec(0, 1), Status: corev1.PodStatus{Phase: corev1.PodFailed,
			ContainerStatuses: []corev1.ContainerStatus{cs(terminated("", 137), false, 0)}}}, "0/1", "ExitCode:137", "0"},
		{"one container completed, the other running and ready", corev1.Pod{Spec: spec(0, 2), Status: corev1.PodStatus{Phase: corev1.PodRunning,
			Conditions:        []corev1.PodCondition{podCond(corev1.PodReady, corev1.ConditionTrue, "", "")},
			ContainerStatuses: []corev1.ContainerStatus{cs(terminated("Completed", 0), false, 0), cs(running(time.Minute), true, 0)}}},
			"1/2", "Running", "0"},
		{"one container completed, the pod not ready", corev1.Pod{Spec: spec(0, 2), Status: corev1.PodStatus{Phase: corev1.PodRunning,
			ContainerStatuses: []corev1.ContainerStatus{cs(terminated("Completed", 0), false, 0), cs(running(time.Minute), true, 0)}}},
			"1/2", "NotReady", "0"},
		{"Terminating", corev1.Pod{ObjectMeta: metav1.ObjectMeta{DeletionTimestamp: deleting}, Spec: spec(0, 1),
			Status: corev1.PodStatus{Phase: corev1.PodRunning, ContainerStatuses: []corev1.ContainerStatus{cs(running(time.Hour), true, 0)}}},
			"1/1", "Terminating", "0"},
		{"deleting a completed pod keeps Completed", corev1.Pod{ObjectMeta: metav1.ObjectMeta{DeletionTimestamp: deleting}, Spec: spec(0, 1),
			Status: corev1.PodStatus{Phase: corev1.PodSucceeded, ContainerStatuses: []corev1.ContainerStatus{cs(terminated("Completed", 0), false, 0)}}},
			"0/1", "Completed", "0"},
		{"node lost", corev1.Pod{ObjectMeta: metav1.ObjectMeta{DeletionTimestamp: deleting}, Spec: spec(0, 1),
			Status: corev1.PodStatus{Phase: corev1.PodRunning, Reason: "NodeLost"}}, "0/1", "Unknown", "0"},
		{"evicted", corev1.Pod{Spec: spec(0, 1), Status: corev1.PodStatus{Phase: corev1.PodFailed, Reason: "Evicted"}}, "0/1", "Evicted", "0"},
		{"scheduling gated", corev1.Pod{Spec: spec(0, 1), Status: corev1.PodStatus{Phase: corev1.PodPending,
			Conditions: []corev1.PodCondition{podCond(corev1.PodScheduled, corev1.ConditionFalse, corev1.PodReasonSchedulingGated, "")}}},
			"0/1", "SchedulingGated", "0"},
		{"sidecar counts as a container", corev1.Pod{
			Spec: corev1.PodSpec{InitContainers: []corev1.Container{{Name: "proxy", RestartPolicy: always}}, Containers: []corev1.Container{{Name: "app"}}},
			Status: corev1.PodStatus{Phase: corev1.PodRunning,
				Conditions:            []corev1.PodCondition{podCond(corev1.PodInitialized, corev1.ConditionTrue, "", "")},
				InitContainerStatuses: []corev1.ContainerStatus{{Name: "proxy", Started: ptr(true), Ready: true, RestartCount: 2, State: running(time.Minute)}},
				ContainerStatuses:     []corev1.ContainerStatus{cs(running(time.Minute), true, 1)}}},
			"2/2", "Running", "3"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ready, status, restarts := podColumns(&tt.pod, now)
			if diff := cmp.Diff([]string{tt.ready, tt.status, tt.restarts}, []string{ready, status, restarts}); diff != "" {
				t.Errorf("READY, STATUS, RESTARTS (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDescribeGolden(t *testing.T) {
	var buf bytes.Buffer
	objs := sampleObjects()
	events := []*corev1.Event{{
		Type: "Warning", Reason: "BackOff", Message: "Back-off restarting failed container b",
		Count: 3, FirstTimestamp: ago(80 * time.Second), LastTimestamp: ago(30 * time.Second), Source: corev1.EventSource{Component: "agent"},
	}}
	for _, res := range []*resource.Resource{resource.Deployments, resource.Services, resource.GitSyncs, resource.Nodes} {
		if err := describe(&buf, res, objs[res][0], events, now); err != nil {
			t.Fatal(err)
		}
		buf.WriteString("---\n")
	}
	golden(t, "describe.txt", buf.Bytes())
}

// TestDescribePodGolden shows a crash-looping pod and an unschedulable one with their conditions
// and events, as `kubectl describe pod` lays them out.
func TestDescribePodGolden(t *testing.T) {
	var buf bytes.Buffer
	crashEvents := []*corev1.Event{
		{Type: "Warning", Reason: "BackOff", Message: "Back-off restarting failed container b", Count: 4,
			FirstTimestamp: ago(80 * time.Second), LastTimestamp: ago(10 * time.Second), Source: corev1.EventSource{Component: "bosun-agent"}},
		{Type: "Normal", Reason: "Scheduled", Message: "Successfully assigned shop/web-1 to node-a", Count: 1,
			FirstTimestamp: ago(90 * time.Second), LastTimestamp: ago(90 * time.Second), ReportingController: "bosun.dev/scheduler"},
	}
	if err := describe(&buf, resource.Pods, crashingPod(), crashEvents, now); err != nil {
		t.Fatal(err)
	}
	buf.WriteString("---\n")
	pendingEvents := []*corev1.Event{{Type: "Warning", Reason: "FailedScheduling", Source: corev1.EventSource{Component: "scheduler"},
		Message: "0/3 nodes are available: 1 node(s) had untolerated taint {dedicated: db}, 2 Insufficient cpu.",
		Count:   6, FirstTimestamp: ago(2 * time.Minute), LastTimestamp: ago(5 * time.Second)}}
	if err := describe(&buf, resource.Pods, unschedulablePod(), pendingEvents, now); err != nil {
		t.Fatal(err)
	}
	buf.WriteString("---\n")
	deleting := unschedulablePod()
	deleting.DeletionTimestamp, deleting.DeletionGracePeriodSeconds = ptr(metav1.Time{Time: now.Add(25 * time.Second)}), ptr[int64](30)
	if err := describe(&buf, resource.Pods, deleting, nil, now); err != nil {
		t.Fatal(err)
	}
	golden(t, "describe_pod.txt", buf.Bytes())
}

func TestEventTableGolden(t *testing.T) {
	var evs []*corev1.Event
	for _, o := range sampleEvents() {
		evs = append(evs, o.(*corev1.Event))
	}
	var buf bytes.Buffer
	printEventTable(&buf, evs, true, now)
	buf.WriteString("\n")
	printEventTable(&buf, evs[:1], false, now)
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

// TestGitSyncAddressIsRedacted: an operator from before the refusal of passwords in --repo may
// have stored one in spec.repo; `bosun status`, `describe` and `get -o wide` mask it.
func TestGitSyncAddressIsRedacted(t *testing.T) {
	g := &bosunv1.GitSync{
		ObjectMeta: metav1.ObjectMeta{Name: "default"},
		Spec:       bosunv1.GitSyncSpec{Repo: "https://deploy:s3cret@git.example.com/fleet.git", Branch: "main"},
	}
	var status, table bytes.Buffer
	if err := describeGitSync(&status, g, nil, now); err != nil {
		t.Fatal(err)
	}
	if err := printTable(&table, resource.GitSyncs, []resource.Object{g}, false, true, now); err != nil {
		t.Fatal(err)
	}
	for what, out := range map[string]string{"status": status.String(), "get -o wide": table.String()} {
		if strings.Contains(out, "s3cret") || !strings.Contains(out, "https://deploy:xxxxx@git.example.com/fleet.git") {
			t.Errorf("%s prints the address unmasked:\n%s", what, out)
		}
	}
}
