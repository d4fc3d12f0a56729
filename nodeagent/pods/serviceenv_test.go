package pods

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// fakeServices is a ServiceLister over a fixed list, read as synced once synced is set; the
// external tests have it as FakeServices (export_test.go).
type fakeServices struct {
	synced atomic.Bool
	list   []*corev1.Service
}

func newFakeServices(synced bool, list ...*corev1.Service) *fakeServices {
	f := &fakeServices{list: list}
	f.synced.Store(synced)
	return f
}

func (f *fakeServices) HasSynced() bool { return f.synced.Load() }

func (f *fakeServices) List(namespace string) ([]*corev1.Service, error) {
	var out []*corev1.Service
	for _, s := range f.list {
		if s.Namespace == namespace {
			out = append(out, s)
		}
	}
	return out, nil
}

func testService(ns, name, ip string, ports ...corev1.ServicePort) *corev1.Service {
	return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: corev1.ServiceSpec{ClusterIP: ip, Ports: ports}}
}

func TestServiceEnv(t *testing.T) {
	redis := testService("shop", "redis-master", "10.96.0.20", corev1.ServicePort{Port: 6379, Protocol: corev1.ProtocolTCP})
	web := testService("shop", "web", "10.96.0.30",
		corev1.ServicePort{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP},
		corev1.ServicePort{Name: "dns-udp", Port: 53, Protocol: corev1.ProtocolUDP})
	services := []*corev1.Service{
		redis, web,
		testService("shop", "headless", corev1.ClusterIPNone, corev1.ServicePort{Port: 80}),
		testService("shop", "unallocated", "", corev1.ServicePort{Port: 80}),
		testService("default", "kubernetes", "10.96.0.1", corev1.ServicePort{Name: "https", Port: 443, Protocol: corev1.ProtocolTCP}),
		testService("default", "other", "10.96.0.40", corev1.ServicePort{Port: 8080, Protocol: corev1.ProtocolTCP}),
		testService("elsewhere", "kubernetes", "10.96.0.50", corev1.ServicePort{Port: 1234, Protocol: corev1.ProtocolTCP}),
	}
	redisVars := map[string]string{
		"REDIS_MASTER_SERVICE_HOST":        "10.96.0.20",
		"REDIS_MASTER_SERVICE_PORT":        "6379",
		"REDIS_MASTER_PORT":                "tcp://10.96.0.20:6379",
		"REDIS_MASTER_PORT_6379_TCP":       "tcp://10.96.0.20:6379",
		"REDIS_MASTER_PORT_6379_TCP_PROTO": "tcp",
		"REDIS_MASTER_PORT_6379_TCP_PORT":  "6379",
		"REDIS_MASTER_PORT_6379_TCP_ADDR":  "10.96.0.20",
	}
	webVars := map[string]string{
		"WEB_SERVICE_HOST":         "10.96.0.30",
		"WEB_SERVICE_PORT":         "80",
		"WEB_SERVICE_PORT_HTTP":    "80",
		"WEB_SERVICE_PORT_DNS_UDP": "53",
		"WEB_PORT":                 "tcp://10.96.0.30:80",
		"WEB_PORT_80_TCP":          "tcp://10.96.0.30:80",
		"WEB_PORT_80_TCP_PROTO":    "tcp",
		"WEB_PORT_80_TCP_PORT":     "80",
		"WEB_PORT_80_TCP_ADDR":     "10.96.0.30",
		"WEB_PORT_53_UDP":          "udp://10.96.0.30:53",
		"WEB_PORT_53_UDP_PROTO":    "udp",
		"WEB_PORT_53_UDP_PORT":     "53",
		"WEB_PORT_53_UDP_ADDR":     "10.96.0.30",
	}
	apiVars := func(ip, port string) map[string]string {
		return map[string]string{
			"KUBERNETES_SERVICE_HOST":                ip,
			"KUBERNETES_SERVICE_PORT":                port,
			"KUBERNETES_SERVICE_PORT_HTTPS":          port,
			"KUBERNETES_PORT":                        "tcp://" + ip + ":" + port,
			"KUBERNETES_PORT_" + port + "_TCP":       "tcp://" + ip + ":" + port,
			"KUBERNETES_PORT_" + port + "_TCP_PROTO": "tcp",
			"KUBERNETES_PORT_" + port + "_TCP_PORT":  port,
			"KUBERNETES_PORT_" + port + "_TCP_ADDR":  ip,
		}
	}
	merge := func(ms ...map[string]string) map[string]string {
		out := map[string]string{}
		for _, m := range ms {
			for k, v := range m {
				out[k] = v
			}
		}
		return out
	}
	no := false
	tests := []struct {
		name  string
		ns    string
		links *bool
		none  bool // no Services in the cluster
		want  map[string]string
	}{
		{name: "the namespace's services and the API's", ns: "shop", want: merge(redisVars, webVars, apiVars("10.96.0.1", "443"))},
		{name: "enableServiceLinks false: the API's only", ns: "shop", links: &no, want: apiVars("10.96.0.1", "443")},
		{name: "default namespace", ns: "default", want: merge(apiVars("10.96.0.1", "443"), map[string]string{
			"OTHER_SERVICE_HOST": "10.96.0.40", "OTHER_SERVICE_PORT": "8080", "OTHER_PORT": "tcp://10.96.0.40:8080",
			"OTHER_PORT_8080_TCP": "tcp://10.96.0.40:8080", "OTHER_PORT_8080_TCP_PROTO": "tcp",
			"OTHER_PORT_8080_TCP_PORT": "8080", "OTHER_PORT_8080_TCP_ADDR": "10.96.0.40",
		})},
		{name: "a namespace's own kubernetes service wins", ns: "elsewhere", want: map[string]string{
			"KUBERNETES_SERVICE_HOST": "10.96.0.50", "KUBERNETES_SERVICE_PORT": "1234", "KUBERNETES_PORT": "tcp://10.96.0.50:1234",
			"KUBERNETES_PORT_1234_TCP": "tcp://10.96.0.50:1234", "KUBERNETES_PORT_1234_TCP_PROTO": "tcp",
			"KUBERNETES_PORT_1234_TCP_PORT": "1234", "KUBERNETES_PORT_1234_TCP_ADDR": "10.96.0.50",
		}},
		{name: "no services at all", ns: "shop", none: true, want: map[string]string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			list := services
			if tt.none {
				list = nil
			}
			pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: tt.ns, Name: "p"}, Spec: corev1.PodSpec{EnableServiceLinks: tt.links}}
			got, err := serviceEnv(newFakeServices(true, list...), pod)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("service variables (-want +got):\n%s", diff)
			}
		})
	}

	t.Run("services not read yet", func(t *testing.T) {
		_, err := serviceEnv(newFakeServices(false, services...), &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "shop"}})
		var cfgErr *configError
		if !errors.As(err, &cfgErr) {
			t.Errorf("err = %v, want a configError (CreateContainerConfigError)", err)
		}
	})
	t.Run("no lister: none", func(t *testing.T) {
		if got, err := serviceEnv(nil, &corev1.Pod{}); err != nil || len(got) != 0 {
			t.Errorf("serviceEnv(nil) = %v, %v", got, err)
		}
	})
}

// TestContainerEnvWithServices checks how service variables join a container's own: the
// container's env and envFrom win, $(VAR) expands against them, and they come last, sorted.
func TestContainerEnvWithServices(t *testing.T) {
	services := map[string]string{"DB_SERVICE_HOST": "10.96.0.9", "DB_SERVICE_PORT": "5432", "A_SERVICE_HOST": "10.96.0.8"}
	objects := mapObjects{configMaps: map[string]*corev1.ConfigMap{"cfg": {Data: map[string]string{"A_SERVICE_HOST": "from-configmap"}}}}
	c := &corev1.Container{
		Name:    "app",
		EnvFrom: []corev1.EnvFromSource{{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"}}}},
		Env: []corev1.EnvVar{
			{Name: "DSN", Value: "postgres://$(DB_SERVICE_HOST):$(DB_SERVICE_PORT)/app"},
			{Name: "DB_SERVICE_PORT", Value: "6543"},
			{Name: "AFTER", Value: "$(DB_SERVICE_PORT)"},
		},
	}
	env, err := containerEnv(context.Background(), envContext{pod: envTestPod(), objects: objects, services: services}, c)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"A_SERVICE_HOST=from-configmap",
		"DSN=postgres://10.96.0.9:5432/app",
		"DB_SERVICE_PORT=6543",
		"AFTER=6543",
		"DB_SERVICE_HOST=10.96.0.9",
	}
	if diff := cmp.Diff(want, env.list()); diff != "" {
		t.Errorf("env (-want +got):\n%s", diff)
	}
	if argv := containerArgv(&corev1.Container{Command: []string{"connect", "$(DB_SERVICE_HOST)"}}, ImageInfo{}, env.values); !cmp.Equal(argv, []string{"connect", "10.96.0.9"}) {
		t.Errorf("argv = %q: service variables do not expand in the command", argv)
	}
}
