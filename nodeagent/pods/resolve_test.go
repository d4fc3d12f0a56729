package pods

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

type mapObjects struct {
	secrets    map[string]*corev1.Secret
	configMaps map[string]*corev1.ConfigMap
}

func (o mapObjects) GetSecret(_ context.Context, _, name string) (*corev1.Secret, error) {
	if s, ok := o.secrets[name]; ok {
		return s, nil
	}
	return nil, apierrors.NewNotFound(schema.GroupResource{Resource: "secrets"}, name)
}

func (o mapObjects) GetConfigMap(_ context.Context, _, name string) (*corev1.ConfigMap, error) {
	if cm, ok := o.configMaps[name]; ok {
		return cm, nil
	}
	return nil, apierrors.NewNotFound(schema.GroupResource{Resource: "configmaps"}, name)
}

func TestExpand(t *testing.T) {
	vars := map[string]string{"A": "1", "B": "two"}
	tests := map[string]string{
		"$(A)":           "1",
		"x$(A)y$(B)":     "x1ytwo",
		"$$(A)":          "$(A)",
		"$(MISSING)":     "$(MISSING)",
		"$(A":            "$(A",
		"$A":             "$A",
		"cost $$5":       "cost $5",
		"trailing $":     "trailing $",
		"no refs":        "no refs",
		"$(A)$(A)$$$(B)": "11$two",
	}
	for in, want := range tests {
		if got := expand(in, vars); got != want {
			t.Errorf("expand(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestContainerArgv(t *testing.T) {
	image := ImageInfo{Entrypoint: []string{"/entry"}, Cmd: []string{"default", "cmd"}}
	env := map[string]string{"PORT": "8080"}
	tests := []struct {
		name          string
		command, args []string
		want          []string
	}{
		{"image defaults", nil, nil, []string{"/entry", "default", "cmd"}},
		{"args replace cmd", nil, []string{"--port=$(PORT)"}, []string{"/entry", "--port=8080"}},
		{"command drops image cmd", []string{"/bin/sh", "-c"}, nil, []string{"/bin/sh", "-c"}},
		{"command and args", []string{"/bin/sh"}, []string{"-c", "echo $(PORT) $$(PORT)"}, []string{"/bin/sh", "-c", "echo 8080 $(PORT)"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := containerArgv(&corev1.Container{Command: tt.command, Args: tt.args}, image, env)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("argv (-want +got):\n%s", diff)
			}
		})
	}
}

func envTestPod() *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web-1", Namespace: "shop", UID: "u-1",
			Labels: map[string]string{"app": "web", "tier": "front"}, Annotations: map[string]string{"note": "x"}},
		Spec: corev1.PodSpec{NodeName: "node-1", ServiceAccountName: "sa"},
	}
}

func TestContainerEnv(t *testing.T) {
	yes := true
	objects := mapObjects{
		configMaps: map[string]*corev1.ConfigMap{"cfg": {Data: map[string]string{"LEVEL": "debug", "MODE": "fast", "with-dash": "ok"}}},
		secrets:    map[string]*corev1.Secret{"db": {Data: map[string][]byte{"password": []byte("s3cret"), "USER": []byte("admin")}}},
	}
	c := &corev1.Container{
		Name: "app",
		EnvFrom: []corev1.EnvFromSource{
			{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"}}},
			{Prefix: "DB_", SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "db"}}},
			{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "absent"}, Optional: &yes}},
		},
		Env: []corev1.EnvVar{
			{Name: "MODE", Value: "slow"},
			{Name: "URL", Value: "http://$(POD_IP):80/$(MODE)/$(UNDEFINED)"},
			{Name: "POD_IP", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "status.podIP"}}},
			{Name: "NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
			{Name: "NS", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.namespace"}}},
			{Name: "UID", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.uid"}}},
			{Name: "APP", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.labels['app']"}}},
			{Name: "LABELS", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.labels"}}},
			{Name: "NOTE", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.annotations['note']"}}},
			{Name: "NODE", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "spec.nodeName"}}},
			{Name: "SA", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "spec.serviceAccountName"}}},
			{Name: "HOST_IP", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "status.hostIP"}}},
			{Name: "LVL", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"}, Key: "LEVEL"}}},
			{Name: "PW", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "db"}, Key: "password"}}},
			{Name: "OPT", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "db"}, Key: "nope", Optional: &yes}}},
			{Name: "MEM_MI", ValueFrom: &corev1.EnvVarSource{ResourceFieldRef: &corev1.ResourceFieldSelector{Resource: "limits.memory", Divisor: resource.MustParse("1Mi")}}},
			{Name: "CPU", ValueFrom: &corev1.EnvVarSource{ResourceFieldRef: &corev1.ResourceFieldSelector{Resource: "limits.cpu"}}},
			{Name: "CPU_M", ValueFrom: &corev1.EnvVarSource{ResourceFieldRef: &corev1.ResourceFieldSelector{Resource: "requests.cpu", Divisor: resource.MustParse("1m")}}},
		},
		Resources: corev1.ResourceRequirements{
			Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("64Mi"), corev1.ResourceCPU: resource.MustParse("1500m")},
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("250m")},
		},
	}
	env, err := containerEnv(context.Background(), envContext{pod: envTestPod(), podIP: "10.244.0.7", hostIP: "192.168.1.10", objects: objects}, c)
	if err != nil {
		t.Fatal(err)
	}
	got := mergeImageEnv([]string{"PATH=/usr/bin", "MODE=image"}, env)
	want := []string{
		"PATH=/usr/bin", "MODE=slow", "LEVEL=debug", "with-dash=ok", "DB_USER=admin", "DB_password=s3cret",
		"URL=http://$(POD_IP):80/slow/$(UNDEFINED)", // POD_IP is defined after URL
		"POD_IP=10.244.0.7", "NAME=web-1", "NS=shop", "UID=u-1", "APP=web", "LABELS=app=\"web\"\ntier=\"front\"",
		"NOTE=x", "NODE=node-1", "SA=sa", "HOST_IP=192.168.1.10", "LVL=debug", "PW=s3cret",
		"MEM_MI=64", "CPU=2", "CPU_M=250",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("env (-want +got):\n%s", diff)
	}
}

func TestContainerEnvErrors(t *testing.T) {
	objects := mapObjects{configMaps: map[string]*corev1.ConfigMap{"cfg": {Data: map[string]string{}}}}
	tests := map[string]corev1.EnvVar{
		"missing configmap": {Name: "X", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "nope"}, Key: "k"}}},
		"missing key":       {Name: "X", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"}, Key: "k"}}},
		"missing secret":    {Name: "X", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "nope"}, Key: "k"}}},
	}
	for name, ev := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := containerEnv(context.Background(), envContext{pod: envTestPod(), objects: objects}, &corev1.Container{Env: []corev1.EnvVar{ev}})
			var ce *configError
			if !asConfigError(err, &ce) {
				t.Errorf("err = %v, want a configError", err)
			}
		})
	}
}

func asConfigError(err error, target **configError) bool {
	for err != nil {
		if ce, ok := err.(*configError); ok {
			*target = ce
			return true
		}
		u, ok := err.(interface{ Unwrap() error })
		if !ok {
			return false
		}
		err = u.Unwrap()
	}
	return false
}

func TestContainerResources(t *testing.T) {
	rl := func(kv ...string) corev1.ResourceList {
		l := corev1.ResourceList{}
		for i := 0; i < len(kv); i += 2 {
			l[corev1.ResourceName(kv[i])] = resource.MustParse(kv[i+1])
		}
		return l
	}
	tests := []struct {
		name             string
		requests, limits corev1.ResourceList
		want             Resources
	}{
		{"best effort", nil, nil, Resources{CPUShares: 2}},
		{"requests only", rl("cpu", "250m", "memory", "64Mi"), nil, Resources{CPUShares: 256}},
		{"limits default requests", nil, rl("cpu", "1", "memory", "128Mi"), Resources{MemoryLimitBytes: 128 << 20, CPUShares: 1024, CPUQuota: 100000, CPUPeriod: 100000}},
		{"tiny cpu", rl("cpu", "1m"), rl("cpu", "1m"), Resources{CPUShares: 2, CPUQuota: 1000, CPUPeriod: 100000}},
		{"two and a half cpus", rl("cpu", "500m"), rl("cpu", "2500m"), Resources{CPUShares: 512, CPUQuota: 250000, CPUPeriod: 100000}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := containerResources(&corev1.Container{Resources: corev1.ResourceRequirements{Requests: tt.requests, Limits: tt.limits}})
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("resources (-want +got):\n%s", diff)
			}
		})
	}
}

func TestResolvConf(t *testing.T) {
	ndots := "2"
	host := []byte("# node\nnameserver 1.1.1.1\nnameserver 8.8.8.8\nsearch corp.example\noptions rotate\n")
	in := dnsInput{clusterDNS: []string{"10.96.0.10"}, clusterDomain: "cluster.local", searchDomains: []string{"corp.example"}, hostResolv: host}
	tests := []struct {
		name string
		spec corev1.PodSpec
		want string
	}{
		{"cluster first", corev1.PodSpec{},
			"nameserver 10.96.0.10\nsearch shop.svc.cluster.local svc.cluster.local cluster.local corp.example\noptions ndots:5\n"},
		{"default", corev1.PodSpec{DNSPolicy: corev1.DNSDefault},
			"nameserver 1.1.1.1\nnameserver 8.8.8.8\nsearch corp.example\noptions rotate\n"},
		{"host network falls back to default", corev1.PodSpec{HostNetwork: true},
			"nameserver 1.1.1.1\nnameserver 8.8.8.8\nsearch corp.example\noptions rotate\n"},
		{"dnsConfig merged", corev1.PodSpec{DNSConfig: &corev1.PodDNSConfig{
			Nameservers: []string{"10.0.0.53"}, Searches: []string{"extra.local"},
			Options: []corev1.PodDNSConfigOption{{Name: "ndots", Value: &ndots}, {Name: "edns0"}}}},
			"nameserver 10.96.0.10\nnameserver 10.0.0.53\nsearch shop.svc.cluster.local svc.cluster.local cluster.local corp.example extra.local\noptions ndots:2 edns0\n"},
		{"none", corev1.PodSpec{DNSPolicy: corev1.DNSNone, DNSConfig: &corev1.PodDNSConfig{Nameservers: []string{"9.9.9.9"}}},
			"nameserver 9.9.9.9\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "shop"}, Spec: tt.spec}
			if diff := cmp.Diff(tt.want, string(podResolvConf(pod, in))); diff != "" {
				t.Errorf("resolv.conf (-want +got):\n%s", diff)
			}
		})
	}
}

func TestHostsFile(t *testing.T) {
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web-0", Namespace: "shop"}, Spec: corev1.PodSpec{
		Subdomain:   "web",
		HostAliases: []corev1.HostAlias{{IP: "10.1.2.3", Hostnames: []string{"db", "db.local"}}},
	}}
	want := "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n" +
		"fe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n" +
		"10.244.0.9\tweb-0.web.shop.svc.cluster.local\tweb-0\n\n# Entries added by HostAliases.\n10.1.2.3\tdb\tdb.local\n"
	if diff := cmp.Diff(want, string(hostsFile(pod, "10.244.0.9", "cluster.local"))); diff != "" {
		t.Errorf("hosts (-want +got):\n%s", diff)
	}
	if got := string(hostnameFile(pod, "cluster.local")); got != "web-0\n" {
		t.Errorf("hostname = %q", got)
	}
}

func TestPodPhase(t *testing.T) {
	running := corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}
	exited := func(code int32) corev1.ContainerState {
		return corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: code}}
	}
	waiting := corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}}
	cs := func(name string, st corev1.ContainerState, last *corev1.ContainerStateTerminated) corev1.ContainerStatus {
		return corev1.ContainerStatus{Name: name, State: st, LastTerminationState: corev1.ContainerState{Terminated: last}}
	}
	crashed := &corev1.ContainerStateTerminated{ExitCode: 1}
	tests := []struct {
		name   string
		policy corev1.RestartPolicy
		init   []corev1.ContainerStatus
		ctrs   []corev1.ContainerStatus
		want   corev1.PodPhase
	}{
		{"creating", corev1.RestartPolicyAlways, nil, []corev1.ContainerStatus{cs("a", waiting, nil), cs("b", running, nil)}, corev1.PodPending},
		{"all running", corev1.RestartPolicyAlways, nil, []corev1.ContainerStatus{cs("a", running, nil), cs("b", running, nil)}, corev1.PodRunning},
		{"crash loop is running", corev1.RestartPolicyAlways, nil, []corev1.ContainerStatus{cs("a", corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff"}}, crashed), cs("b", running, nil)}, corev1.PodRunning},
		{"always, all exited", corev1.RestartPolicyAlways, nil, []corev1.ContainerStatus{cs("a", exited(0), nil), cs("b", exited(1), nil)}, corev1.PodRunning},
		{"never, all succeeded", corev1.RestartPolicyNever, nil, []corev1.ContainerStatus{cs("a", exited(0), nil), cs("b", exited(0), nil)}, corev1.PodSucceeded},
		{"never, one failed", corev1.RestartPolicyNever, nil, []corev1.ContainerStatus{cs("a", exited(0), nil), cs("b", exited(2), nil)}, corev1.PodFailed},
		{"never, one still running", corev1.RestartPolicyNever, nil, []corev1.ContainerStatus{cs("a", exited(1), nil), cs("b", running, nil)}, corev1.PodRunning},
		{"on failure, failed", corev1.RestartPolicyOnFailure, nil, []corev1.ContainerStatus{cs("a", exited(1), nil), cs("b", exited(0), nil)}, corev1.PodRunning},
		{"on failure, succeeded", corev1.RestartPolicyOnFailure, nil, []corev1.ContainerStatus{cs("a", exited(0), nil), cs("b", exited(0), nil)}, corev1.PodSucceeded},
		{"init running", corev1.RestartPolicyAlways, []corev1.ContainerStatus{cs("i", running, nil)}, []corev1.ContainerStatus{cs("a", waiting, nil), cs("b", waiting, nil)}, corev1.PodPending},
		{"init failed, never", corev1.RestartPolicyNever, []corev1.ContainerStatus{cs("i", exited(1), nil)}, []corev1.ContainerStatus{cs("a", waiting, nil), cs("b", waiting, nil)}, corev1.PodFailed},
		{"init failed, always", corev1.RestartPolicyAlways, []corev1.ContainerStatus{cs("i", corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff"}}, crashed)}, []corev1.ContainerStatus{cs("a", waiting, nil), cs("b", waiting, nil)}, corev1.PodPending},
		{"missing status", corev1.RestartPolicyAlways, nil, []corev1.ContainerStatus{cs("a", running, nil)}, corev1.PodPending},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := &corev1.PodSpec{RestartPolicy: tt.policy, Containers: []corev1.Container{{Name: "a"}, {Name: "b"}}}
			if tt.init != nil {
				spec.InitContainers = []corev1.Container{{Name: "i"}}
			}
			if got := podPhase(spec, tt.init, tt.ctrs); got != tt.want {
				t.Errorf("phase = %s, want %s", got, tt.want)
			}
		})
	}
}

func TestBackoffSequence(t *testing.T) {
	b := newBackoff()
	now := envTime()
	var got []string
	for i := 0; i < 8; i++ {
		got = append(got, b.next("c", now, now).String())
	}
	want := []string{"10s", "20s", "40s", "1m20s", "2m40s", "5m0s", "5m0s", "5m0s"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("delays (-want +got):\n%s", diff)
	}
	later := now.Add(11 * 60e9)
	if in, _, _ := b.inBackoffSince("c", later, later); in {
		t.Error("still in back-off after 10 min")
	}
	if d := b.next("c", later, later); d.String() != "10s" {
		t.Errorf("after 10 min the delay is %s, want 10s", d)
	}
}

func TestVolumes(t *testing.T) {
	dir := t.TempDir()
	hostDir := filepath.Join(dir, "host")
	mode := int32(0o600)
	yes := true
	dirOrCreate, file := corev1.HostPathDirectoryOrCreate, corev1.HostPathFile
	ro := int32(0o400)
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "shop", UID: "u-vol",
		Labels: map[string]string{"app": "shop", "tier": `a"b`}}, Spec: corev1.PodSpec{Containers: []corev1.Container{{
		Name: "c", Resources: corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("64Mi")}},
	}}, Volumes: []corev1.Volume{
		{Name: "scratch", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
		{Name: "mem", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{Medium: corev1.StorageMediumMemory}}},
		{Name: "host", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: hostDir, Type: &dirOrCreate}}},
		{Name: "cfg", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
			LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"},
			Items:                []corev1.KeyToPath{{Key: "app.conf", Path: "conf/app.conf"}, {Key: "run.sh", Path: "run.sh", Mode: &[]int32{0o755}[0]}},
		}}},
		{Name: "sec", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "sec", DefaultMode: &mode}}},
		{Name: "opt", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "absent", Optional: &yes}}},
		{Name: "info", VolumeSource: corev1.VolumeSource{DownwardAPI: &corev1.DownwardAPIVolumeSource{Items: []corev1.DownwardAPIVolumeFile{
			{Path: "labels", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.labels"}},
			{Path: "meta/app", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.labels['app']"}, Mode: &ro},
			{Path: "mem", ResourceFieldRef: &corev1.ResourceFieldSelector{ContainerName: "c", Resource: "limits.memory", Divisor: resource.MustParse("1Mi")}},
			{Path: "cpu", ResourceFieldRef: &corev1.ResourceFieldSelector{ContainerName: "c", Resource: "limits.cpu", Divisor: resource.MustParse("1m")}},
		}}}},
		{Name: "all", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{DefaultMode: &mode, Sources: []corev1.VolumeProjection{
			{ConfigMap: &corev1.ConfigMapProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"}, Items: []corev1.KeyToPath{{Key: "app.conf", Path: "app.conf"}}}},
			{Secret: &corev1.SecretProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "sec"}}},
			{DownwardAPI: &corev1.DownwardAPIProjection{Items: []corev1.DownwardAPIVolumeFile{{Path: "name", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}}}},
		}}}},
	}}}
	objects := mapObjects{
		configMaps: map[string]*corev1.ConfigMap{"cfg": {Data: map[string]string{"app.conf": "x=1", "run.sh": "#!/bin/sh", "unused": "u"}}},
		secrets:    map[string]*corev1.Secret{"sec": {Data: map[string][]byte{"token": []byte("t0k")}}},
	}
	mounter := &recordingMounter{}
	v := newPodVolumes(dir, mounter, objects, "u-vol")
	allocatable := corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("2")}
	if err := v.prepare(context.Background(), pod, allocatable); err != nil {
		t.Fatal(err)
	}
	volDir := filepath.Join(PodDir(dir, "u-vol"), "volumes")
	files := visibleFiles(t, volDir)
	wantFiles := map[string]string{
		"cfg/conf/app.conf": "-rw-r--r-- x=1",
		"cfg/run.sh":        "-rwxr-xr-x #!/bin/sh",
		"sec/token":         "-rw------- t0k",
		"info/labels":       "-rw-r--r-- app=\"shop\"\ntier=\"a\\\"b\"",
		"info/meta/app":     "-r-------- shop",
		"info/mem":          "-rw-r--r-- 64",
		"info/cpu":          "-rw-r--r-- 2000", // no CPU limit: the node's allocatable
		"all/app.conf":      "-rw------- x=1",
		"all/token":         "-rw------- t0k",
		"all/name":          "-rw------- p",
	}
	if diff := cmp.Diff(wantFiles, files); diff != "" {
		t.Errorf("volume files (-want +got):\n%s", diff)
	}
	// The memory emptyDir and, as the kubelet does, the secret, downwardAPI and projected
	// volumes are on tmpfs; configMap and hostPath volumes are not.
	wantTmpfs := []string{"mem", "sec", "opt", "info", "all"}
	for i, n := range wantTmpfs {
		wantTmpfs[i] = filepath.Join(volDir, n)
	}
	if diff := cmp.Diff(wantTmpfs, mounter.mounted); diff != "" {
		t.Errorf("tmpfs mounts (-want +got):\n%s", diff)
	}
	if st, err := os.Stat(hostDir); err != nil || !st.IsDir() {
		t.Errorf("hostPath DirectoryOrCreate not created: %v", err)
	}

	c := &corev1.Container{VolumeMounts: []corev1.VolumeMount{
		{Name: "scratch", MountPath: "/data", SubPathExpr: "$(POD)/x"},
		{Name: "cfg", MountPath: "/etc/app.conf", SubPath: "conf/app.conf"},
		{Name: "host", MountPath: "/host", ReadOnly: true},
	}}
	mounts, err := v.containerMounts(c, map[string]string{"POD": "p"})
	if err != nil {
		t.Fatal(err)
	}
	pd := PodDir(dir, "u-vol")
	appConf, err := filepath.EvalSymlinks(filepath.Join(volDir, "cfg/conf/app.conf"))
	if err != nil {
		t.Fatal(err)
	}
	want := []Mount{
		{HostPath: filepath.Join(volDir, "scratch/p/x"), ContainerPath: "/data"},
		{HostPath: appConf, ContainerPath: "/etc/app.conf", ReadOnly: true}, // the current version's file
		{HostPath: hostDir, ContainerPath: "/host", ReadOnly: true},
		{HostPath: filepath.Join(pd, "etc-hosts"), ContainerPath: "/etc/hosts", ReadOnly: true},
		{HostPath: filepath.Join(pd, "etc-hostname"), ContainerPath: "/etc/hostname", ReadOnly: true},
		{HostPath: filepath.Join(pd, "resolv.conf"), ContainerPath: "/etc/resolv.conf", ReadOnly: true},
	}
	if diff := cmp.Diff(want, mounts); diff != "" {
		t.Errorf("mounts (-want +got):\n%s", diff)
	}
	if _, err := os.Stat(filepath.Join(volDir, "scratch/p/x")); err != nil {
		t.Errorf("subPath dir not created: %v", err)
	}
	if _, err := v.containerMounts(&corev1.Container{VolumeMounts: []corev1.VolumeMount{{Name: "cfg", MountPath: "/x", SubPath: "../../etc"}}}, nil); err == nil {
		t.Error("a subPath with .. was accepted")
	}

	// Type checks and missing objects fail the mount.
	bad := pod.DeepCopy()
	bad.Spec.Volumes = []corev1.Volume{{Name: "f", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: hostDir, Type: &file}}}}
	if err := v.prepare(context.Background(), bad, allocatable); err == nil {
		t.Error("hostPath type File accepted a directory")
	}
	bad.Spec.Volumes = []corev1.Volume{{Name: "s", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "absent"}}}}
	if err := v.prepare(context.Background(), bad, allocatable); err == nil {
		t.Error("a missing non-optional secret was accepted")
	}
	bad.Spec.Volumes = []corev1.Volume{{Name: "p", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{Sources: []corev1.VolumeProjection{
		{ConfigMap: &corev1.ConfigMapProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "absent"}}},
	}}}}}
	if err := v.prepare(context.Background(), bad, allocatable); err == nil {
		t.Error("a projected volume with a missing non-optional configMap was accepted")
	}

	// A label change reaches the downward API file on the next prepare.
	pod.Labels["app"] = "shop2"
	if err := v.prepare(context.Background(), pod, allocatable); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(volDir, "info/meta/app")); string(b) != "shop2" {
		t.Errorf("after a label change info/meta/app = %q, want shop2", b)
	}

	if err := v.teardown(); err != nil {
		t.Fatal(err)
	}
	if len(mounter.mounted) != 0 {
		t.Errorf("still mounted: %v", mounter.mounted)
	}
	if _, err := os.Stat(pd); !os.IsNotExist(err) {
		t.Errorf("pod dir left: %v", err)
	}
}

// visibleFiles lists the regular files under dir as a container sees them (following the data
// volumes' ..data links, skipping their version directories), with mode and content.
func visibleFiles(t *testing.T, dir string) map[string]string {
	t.Helper()
	files := map[string]string{}
	var walk func(host, rel string)
	walk = func(host, rel string) {
		entries, err := os.ReadDir(host)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), "..") {
				continue
			}
			p, r := filepath.Join(host, e.Name()), filepath.Join(rel, e.Name())
			st, err := os.Stat(p) // follows the links
			if err != nil {
				t.Fatalf("%s: %v", r, err)
			}
			if st.IsDir() {
				walk(p, r)
				continue
			}
			b, _ := os.ReadFile(p)
			files[r] = st.Mode().Perm().String() + " " + string(b)
		}
	}
	walk(dir, "")
	return files
}

// TestDataVolumeUpdatesAtomically checks the kubelet's layout (version directory, ..data link,
// top-level links) and that an update switches versions, drops removed keys and old versions,
// and that unchanged contents write nothing.
func TestDataVolumeUpdatesAtomically(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "vol")
	// The layout before versions: plain files, replaced by links.
	if err := os.MkdirAll(filepath.Join(dir, "d"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "a"), []byte("legacy"), 0o644); err != nil {
		t.Fatal(err)
	}
	v1 := map[string]dataFile{"a": {data: []byte("1"), mode: 0o644}, "d/b": {data: []byte("b"), mode: 0o600}}
	if err := writeAtomic(dir, v1); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"a": "-rw-r--r-- 1", "d/b": "-rw------- b"}
	if diff := cmp.Diff(want, visibleFiles(t, dir)); diff != "" {
		t.Fatalf("after the first write (-want +got):\n%s", diff)
	}
	first, err := os.Readlink(filepath.Join(dir, "..data"))
	if err != nil || !strings.HasPrefix(first, "..20") {
		t.Fatalf("..data -> %q, %v; want a version directory", first, err)
	}
	for _, n := range []string{"a", "d"} {
		if target, err := os.Readlink(filepath.Join(dir, n)); err != nil || target != "..data/"+n {
			t.Errorf("%s -> %q, %v; want ..data/%s", n, target, err, n)
		}
	}

	if err := writeAtomic(dir, v1); err != nil {
		t.Fatal(err)
	}
	if again, _ := os.Readlink(filepath.Join(dir, "..data")); again != first {
		t.Errorf("unchanged contents made a new version %s (was %s)", again, first)
	}

	v2 := map[string]dataFile{"a": {data: []byte("2"), mode: 0o644}, "c": {data: []byte("c"), mode: 0o644}}
	if err := writeAtomic(dir, v2); err != nil {
		t.Fatal(err)
	}
	want = map[string]string{"a": "-rw-r--r-- 2", "c": "-rw-r--r-- c"}
	if diff := cmp.Diff(want, visibleFiles(t, dir)); diff != "" {
		t.Errorf("after the update (-want +got):\n%s", diff)
	}
	entries, _ := os.ReadDir(dir)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	second, _ := os.Readlink(filepath.Join(dir, "..data"))
	if diff := cmp.Diff([]string{second, "..data", "a", "c"}, names); diff != "" {
		t.Errorf("volume directory after the update (-want +got):\n%s", diff)
	}
}

type recordingMounter struct{ mounted []string }

func (m *recordingMounter) MountTmpfs(dir string, _ int64) error {
	m.mounted = append(m.mounted, dir)
	return nil
}

func (m *recordingMounter) Unmount(dir string) error {
	for i, d := range m.mounted {
		if d == dir {
			m.mounted = append(m.mounted[:i], m.mounted[i+1:]...)
		}
	}
	return nil
}

func TestParsePullSecret(t *testing.T) {
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "old"}, Data: map[string][]byte{
		corev1.DockerConfigKey: []byte(`{"https://index.docker.io/v1/":{"auth":"dXNlcjpwYXNz"}}`)}}
	got, err := parsePullSecret(s)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]RegistryAuth{{Host: "docker.io", Username: "user", Password: "pass"}}, got); diff != "" {
		t.Errorf("auth (-want +got):\n%s", diff)
	}
}

func TestPullPolicyDefault(t *testing.T) {
	tests := map[string]PullPolicy{
		"busybox": PullAlways, "busybox:latest": PullAlways, "reg:5000/app": PullAlways,
		"reg:5000/app:1.2": PullIfNotPresent, "app@sha256:abc": PullIfNotPresent,
	}
	for image, want := range tests {
		if got := pullPolicy(&corev1.Container{Image: image}); got != want {
			t.Errorf("pullPolicy(%q) = %s, want %s", image, got, want)
		}
	}
}

func envTime() time.Time { return time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC) }

// TestSecretVolumeWrittenOnDiskStaysThere checks the upgrade path of memory-backed volumes: a
// secret volume that an older agent wrote on disk, which the pod's running containers have
// bind-mounted, keeps being updated there rather than hidden under a new tmpfs.
func TestSecretVolumeWrittenOnDiskStaysThere(t *testing.T) {
	dir := t.TempDir()
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "shop", UID: "u-old"},
		Spec: corev1.PodSpec{Volumes: []corev1.Volume{
			{Name: "sec", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "sec"}}},
		}}}
	secret := &corev1.Secret{Data: map[string][]byte{"token": []byte("v1")}}
	objects := mapObjects{secrets: map[string]*corev1.Secret{"sec": secret}}
	volDir := filepath.Join(PodDir(dir, "u-old"), "volumes")
	if err := writeAtomic(filepath.Join(volDir, "sec"), map[string]dataFile{"token": {data: []byte("v1"), mode: 0o644}}); err != nil {
		t.Fatal(err) // what the older agent left
	}
	mounter := &recordingMounter{}
	v := newPodVolumes(dir, mounter, objects, "u-old")
	secret.Data["token"] = []byte("v2")
	if err := v.prepare(context.Background(), pod, nil); err != nil {
		t.Fatal(err)
	}
	if len(mounter.mounted) != 0 {
		t.Errorf("a tmpfs was mounted over the volume the running containers use: %v", mounter.mounted)
	}
	if got := visibleFiles(t, volDir)["sec/token"]; got != "-rw-r--r-- v2" {
		t.Errorf("sec/token = %q, want the update written where the containers see it", got)
	}
}
