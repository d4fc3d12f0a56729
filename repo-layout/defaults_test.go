package repolayout

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	bosunv1 "github.com/bosun-gitops/bosun/repo-layout/v1alpha1"
)

func TestDefaults(t *testing.T) {
	set, err := LoadDir(writeTree(t, map[string]string{
		"app.yaml": deployment + "---\n" + `apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 80}]
---
apiVersion: v1
kind: Secret
metadata: {name: s}
data: {a: eA==, b: eA==}
stringData: {b: "y"}
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: d}
spec:
  selector: {matchLabels: {app: d}}
  template:
    metadata: {labels: {app: d}}
    spec:
      containers: [{name: d, image: "registry:5000/d", ports: [{containerPort: 53}]}]
`,
		"machines/m.yaml": "apiVersion: bosun.dev/v1alpha1\nkind: Machine\nmetadata: {name: m}\nspec: {address: m.example, hostKey: \"SHA256:nR/ocfKOyyJOFJcC7+9JXsOB/PuLEG+0qde1pFhRYcs\",\n" +
			"  proxyJump: {address: bastion.example, hostKey: \"SHA256:nR/ocfKOyyJOFJcC7+9JXsOB/PuLEG+0qde1pFhRYcs\"}}\n",
	}))
	if err != nil {
		t.Fatalf("LoadDir: %v", err)
	}
	byKind := map[string]any{}
	for _, o := range set.Objects {
		byKind[o.Resource.Kind] = o.Object
	}
	podSpec := func(name, image string, policy corev1.PullPolicy, ports []corev1.ContainerPort) corev1.PodSpec {
		return corev1.PodSpec{
			Containers: []corev1.Container{{
				Name: name, Image: image, ImagePullPolicy: policy, Ports: ports,
				TerminationMessagePath: "/dev/termination-log", TerminationMessagePolicy: corev1.TerminationMessageReadFile,
			}},
			RestartPolicy:                 corev1.RestartPolicyAlways,
			DNSPolicy:                     corev1.DNSClusterFirst,
			TerminationGracePeriodSeconds: ptr(int64(30)),
			SchedulerName:                 "default-scheduler",
		}
	}
	quarter := intstr.FromString("25%")
	tests := []struct {
		kind string
		want any
	}{
		{"Deployment", &appsv1.Deployment{
			TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"},
			ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default"},
			Spec: appsv1.DeploymentSpec{
				Replicas: ptr(int32(1)),
				Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
				Template: corev1.PodTemplateSpec{
					ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}},
					Spec:       podSpec("web", "docker.io/library/busybox:1.36", corev1.PullIfNotPresent, nil),
				},
				Strategy: appsv1.DeploymentStrategy{
					Type:          appsv1.RollingUpdateDeploymentStrategyType,
					RollingUpdate: &appsv1.RollingUpdateDeployment{MaxUnavailable: &quarter, MaxSurge: &quarter},
				},
				RevisionHistoryLimit:    ptr(int32(10)),
				ProgressDeadlineSeconds: ptr(int32(600)),
			},
		}},
		{"Service", &corev1.Service{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
			ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default"},
			Spec: corev1.ServiceSpec{
				Selector:        map[string]string{"app": "web"},
				Ports:           []corev1.ServicePort{{Port: 80, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt32(80)}},
				Type:            corev1.ServiceTypeClusterIP,
				SessionAffinity: corev1.ServiceAffinityNone,
			},
		}},
		{"Secret", &corev1.Secret{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
			ObjectMeta: metav1.ObjectMeta{Name: "s", Namespace: "default"},
			Type:       corev1.SecretTypeOpaque,
			Data:       map[string][]byte{"a": []byte("x"), "b": []byte("y")},
		}},
		{"DaemonSet", &appsv1.DaemonSet{
			TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "DaemonSet"},
			ObjectMeta: metav1.ObjectMeta{Name: "d", Namespace: "default"},
			Spec: appsv1.DaemonSetSpec{
				Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "d"}},
				Template: corev1.PodTemplateSpec{
					ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "d"}},
					Spec: podSpec("d", "registry:5000/d", corev1.PullAlways,
						[]corev1.ContainerPort{{ContainerPort: 53, Protocol: corev1.ProtocolTCP}}),
				},
				UpdateStrategy: appsv1.DaemonSetUpdateStrategy{
					Type: appsv1.RollingUpdateDaemonSetStrategyType,
					RollingUpdate: &appsv1.RollingUpdateDaemonSet{
						MaxUnavailable: ptr(intstr.FromInt32(1)), MaxSurge: ptr(intstr.FromInt32(0)),
					},
				},
				RevisionHistoryLimit: ptr(int32(10)),
			},
		}},
		{"Machine", &bosunv1.Machine{
			TypeMeta:   metav1.TypeMeta{APIVersion: "bosun.dev/v1alpha1", Kind: "Machine"},
			ObjectMeta: metav1.ObjectMeta{Name: "m"},
			Spec: bosunv1.MachineSpec{Address: "m.example", Port: 22, User: "root",
				HostKey: "SHA256:nR/ocfKOyyJOFJcC7+9JXsOB/PuLEG+0qde1pFhRYcs",
				// The jump host's port defaults like the machine's, its user to the machine's.
				ProxyJump: &bosunv1.ProxyJump{Address: "bastion.example", Port: 22, User: "root",
					HostKey: "SHA256:nR/ocfKOyyJOFJcC7+9JXsOB/PuLEG+0qde1pFhRYcs"}},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.kind, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, byKind[tt.kind]); diff != "" {
				t.Errorf("defaulted %s (-want +got):\n%s", tt.kind, diff)
			}
		})
	}
	wantCluster := &bosunv1.Cluster{
		TypeMeta:   metav1.TypeMeta{APIVersion: "bosun.dev/v1alpha1", Kind: "Cluster"},
		ObjectMeta: metav1.ObjectMeta{Name: "default"},
		Spec: bosunv1.ClusterSpec{
			PodCIDR: "10.244.0.0/16", NodeCIDRMaskSize: 24, ServiceCIDR: "10.96.0.0/16", ClusterDomain: "cluster.local",
			NodeMonitorGracePeriod: &metav1.Duration{Duration: 40 * time.Second},
			PodEvictionTimeout:     &metav1.Duration{Duration: 300 * time.Second},
			Upgrade:                bosunv1.UpgradePolicy{MaxUnavailable: 1},
		},
	}
	if diff := cmp.Diff(wantCluster, set.Cluster); diff != "" {
		t.Errorf("default Cluster (-want +got):\n%s", diff)
	}
}

func TestImagePullPolicy(t *testing.T) {
	tests := []struct {
		image string
		want  corev1.PullPolicy
	}{
		{"busybox", corev1.PullAlways},
		{"busybox:latest", corev1.PullAlways},
		{"localhost:5000/busybox", corev1.PullAlways},
		{"localhost:5000/busybox:1.36", corev1.PullIfNotPresent},
		{"busybox@sha256:0123", corev1.PullIfNotPresent},
	}
	for _, tt := range tests {
		c := corev1.Container{Image: tt.image}
		defaultContainer(&c, false)
		if c.ImagePullPolicy != tt.want {
			t.Errorf("image %q: imagePullPolicy %s, want %s", tt.image, c.ImagePullPolicy, tt.want)
		}
	}
}

func TestHostNetworkPortsDefaultToTheNodes(t *testing.T) {
	spec := corev1.PodSpec{HostNetwork: true, Containers: []corev1.Container{{
		Name: "c", Image: "busybox:1.36",
		Ports: []corev1.ContainerPort{{ContainerPort: 80}, {ContainerPort: 53, HostPort: 53, Protocol: corev1.ProtocolUDP}},
	}}}
	defaultPodSpec(&spec)
	got := spec.Containers[0].Ports
	if got[0].HostPort != 80 || got[1].HostPort != 53 {
		t.Errorf("hostNetwork ports after defaulting: %+v, want hostPort = containerPort", got)
	}
	spec.HostNetwork = false
	spec.Containers[0].Ports = []corev1.ContainerPort{{ContainerPort: 80}}
	defaultPodSpec(&spec)
	if hp := spec.Containers[0].Ports[0].HostPort; hp != 0 {
		t.Errorf("pod-network port got hostPort %d, want 0", hp)
	}
}

func TestDownwardAPIAndProjectedVolumesLoad(t *testing.T) {
	set, err := LoadDir(writeTree(t, map[string]string{"app.yaml": `apiVersion: v1
kind: Pod
metadata: {name: p, labels: {app: p}}
spec:
  containers: [{name: c, image: "busybox:1.36", resources: {limits: {memory: 64Mi}}}]
  volumes:
  - name: info
    downwardAPI:
      items:
      - {path: labels, fieldRef: {fieldPath: metadata.labels}}
      - {path: app, fieldRef: {fieldPath: "metadata.labels['app']"}}
      - {path: mem, resourceFieldRef: {containerName: c, resource: limits.memory, divisor: 1Mi}}
  - name: all
    projected:
      sources:
      - configMap: {name: cfg}
      - secret: {name: sec, items: [{key: k, path: secret/k, mode: 0400}]}
      - downwardAPI: {items: [{path: name, fieldRef: {fieldPath: metadata.name}}]}
`}))
	if err != nil {
		t.Fatalf("LoadDir: %v", err)
	}
	pod := set.Objects[0].Object.(*corev1.Pod)
	vols := pod.Spec.Volumes
	if m := vols[0].DownwardAPI.DefaultMode; m == nil || *m != 0o644 {
		t.Errorf("downwardAPI defaultMode = %v, want 0644", m)
	}
	if v := vols[0].DownwardAPI.Items[0].FieldRef.APIVersion; v != "v1" {
		t.Errorf("downwardAPI fieldRef apiVersion = %q, want v1", v)
	}
	if m := vols[1].Projected.DefaultMode; m == nil || *m != 0o644 {
		t.Errorf("projected defaultMode = %v, want 0644", m)
	}
	if v := vols[1].Projected.Sources[2].DownwardAPI.Items[0].FieldRef.APIVersion; v != "v1" {
		t.Errorf("projected downwardAPI fieldRef apiVersion = %q, want v1", v)
	}
}

// TestPodRequestsDefaultToLimits: as the Kubernetes API server, a Pod's containers request what
// they limit unless they say otherwise; a pod template keeps what it says (its pods get the
// defaults when they are written to the store).
func TestPodRequestsDefaultToLimits(t *testing.T) {
	set, err := LoadDir(writeTree(t, map[string]string{"app.yaml": `apiVersion: v1
kind: Pod
metadata: {name: trainer}
spec:
  initContainers:
  - {name: fetch, image: "busybox:1.36", resources: {limits: {cpu: "2", ephemeral-storage: 1Gi}}}
  containers:
  - name: c
    image: "busybox:1.36"
    resources:
      requests: {cpu: 250m}
      limits: {cpu: "1", memory: 512Mi, nvidia.com/gpu: "1"}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: c, image: "busybox:1.36", resources: {limits: {memory: 64Mi}}}]
`}))
	if err != nil {
		t.Fatalf("LoadDir: %v", err)
	}
	var pod *corev1.Pod
	var d *appsv1.Deployment
	for _, o := range set.Objects {
		switch v := o.Object.(type) {
		case *corev1.Pod:
			pod = v
		case *appsv1.Deployment:
			d = v
		}
	}
	got := map[string]corev1.ResourceList{
		"fetch": pod.Spec.InitContainers[0].Resources.Requests,
		"c":     pod.Spec.Containers[0].Resources.Requests,
	}
	want := map[string]corev1.ResourceList{
		"fetch": {corev1.ResourceCPU: resource.MustParse("2"), corev1.ResourceEphemeralStorage: resource.MustParse("1Gi")},
		"c": {corev1.ResourceCPU: resource.MustParse("250m"), corev1.ResourceMemory: resource.MustParse("512Mi"),
			"nvidia.com/gpu": resource.MustParse("1")},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("pod requests (-want +got):\n%s", diff)
	}
	if r := d.Spec.Template.Spec.Containers[0].Resources.Requests; r != nil {
		t.Errorf("template requests %v, want none: Kubernetes defaults them on the pods only", r)
	}
}
