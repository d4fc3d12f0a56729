package endpoints_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/bosun-gitops/bosun/internal/resource"
	"github.com/bosun-gitops/bosun/operator/controllers"
	"github.com/bosun-gitops/bosun/operator/controllers/controllertest"
	"github.com/bosun-gitops/bosun/operator/controllers/endpoints"
	"github.com/bosun-gitops/bosun/operator/store"
	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

type podSpec struct {
	name     string
	labels   map[string]string
	ip       string
	ready    bool
	httpPort int32 // container port named "http" (0: none)
	phase    corev1.PodPhase
	hold     bool // a finalizer keeps the pod while it terminates
}

func createPod(t *testing.T, env *controllertest.Env, p podSpec) *corev1.Pod {
	t.Helper()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: p.name, Labels: p.labels},
		Spec:       corev1.PodSpec{NodeName: "node-1", Containers: []corev1.Container{{Name: "c", Image: "busybox"}}},
	}
	if p.hold {
		pod.Finalizers = []string{"test/hold"}
	}
	if p.httpPort != 0 {
		pod.Spec.Containers[0].Ports = []corev1.ContainerPort{{Name: "http", ContainerPort: p.httpPort, Protocol: corev1.ProtocolTCP}}
	}
	created := env.MustCreate(resource.Pods, pod).(*corev1.Pod)
	setStatus(t, env, created, p)
	return created
}

func setStatus(t *testing.T, env *controllertest.Env, pod *corev1.Pod, p podSpec) {
	t.Helper()
	cur, err := env.Store.Get(env.Ctx, resource.Pods, "default", pod.Name)
	if err != nil {
		t.Fatal(err)
	}
	pod = cur.(*corev1.Pod).DeepCopy()
	phase := p.phase
	if phase == "" {
		phase = corev1.PodRunning
	}
	ready := corev1.ConditionFalse
	if p.ready {
		ready = corev1.ConditionTrue
	}
	pod.Status = corev1.PodStatus{Phase: phase, PodIP: p.ip, Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: ready}}}
	if p.ip != "" {
		pod.Status.PodIPs = []corev1.PodIP{{IP: p.ip}}
	}
	if _, err := env.Store.UpdateStatus(env.Ctx, resource.Pods, pod); err != nil {
		t.Fatal(err)
	}
}

func getEndpoints(env *controllertest.Env, name string) (*corev1.Endpoints, error) {
	obj, err := env.Store.Get(env.Ctx, resource.Endpoints, "default", name)
	if err != nil {
		return nil, err
	}
	return obj.(*corev1.Endpoints), nil
}

// address is the expected address of pod in the Endpoints.
func address(pod *corev1.Pod, ip string) corev1.EndpointAddress {
	node := "node-1"
	return corev1.EndpointAddress{IP: ip, NodeName: &node,
		TargetRef: &corev1.ObjectReference{Kind: "Pod", Namespace: "default", Name: pod.Name, UID: pod.UID}}
}

func tcp(name string, port int32) corev1.EndpointPort {
	return corev1.EndpointPort{Name: name, Port: port, Protocol: corev1.ProtocolTCP}
}

func wantSubsets(env *controllertest.Env, name string, want []corev1.EndpointSubset, wantLabels map[string]string) func() error {
	return func() error {
		ep, err := getEndpoints(env, name)
		if err != nil {
			return err
		}
		if diff := cmp.Diff(endpoints.SortSubsets(want), ep.Subsets, cmpEmpty); diff != "" {
			return fmt.Errorf("subsets (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff(wantLabels, ep.Labels, cmpEmpty); diff != "" {
			return fmt.Errorf("labels (-want +got):\n%s", diff)
		}
		return nil
	}
}

// cmpEmpty treats nil and empty slices and maps alike, as the API does.
var cmpEmpty = cmp.FilterValues(func(a, b any) bool {
	return isEmpty(a) && isEmpty(b)
}, cmp.Ignore())

func isEmpty(v any) bool {
	switch x := v.(type) {
	case []corev1.EndpointSubset:
		return len(x) == 0
	case []corev1.EndpointAddress:
		return len(x) == 0
	case []corev1.EndpointPort:
		return len(x) == 0
	case map[string]string:
		return len(x) == 0
	}
	return false
}

func start(env *controllertest.Env) {
	env.Start(map[string]controllers.Constructor{endpoints.Name: endpoints.New})
}

func TestEndpointsFollowPods(t *testing.T) {
	env := controllertest.New(t, nil)
	web := map[string]string{"app": "web"}
	p1 := createPod(t, env, podSpec{name: "p1", labels: web, ip: "10.244.1.1", ready: true, httpPort: 8080})
	p2 := createPod(t, env, podSpec{name: "p2", labels: web, ip: "10.244.1.2", ready: true, httpPort: 8081})
	p3 := createPod(t, env, podSpec{name: "p3", labels: web, ip: "10.244.1.3", ready: false, httpPort: 8080})
	createPod(t, env, podSpec{name: "no-ip", labels: web, ready: false, httpPort: 8080})
	createPod(t, env, podSpec{name: "other", labels: map[string]string{"app": "other"}, ip: "10.244.1.5", ready: true, httpPort: 8080})
	createPod(t, env, podSpec{name: "done", labels: web, ip: "10.244.1.6", phase: corev1.PodSucceeded, httpPort: 8080})
	noName := createPod(t, env, podSpec{name: "no-http", labels: web, ip: "10.244.1.7", ready: true})
	doomed := createPod(t, env, podSpec{name: "doomed", labels: web, ip: "10.244.1.8", ready: true, httpPort: 8080, hold: true})
	if _, err := env.Store.Delete(env.Ctx, resource.Pods, "default", doomed.Name, store.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "web", Labels: map[string]string{"tier": "front"}},
		Spec: corev1.ServiceSpec{
			Selector: web, ClusterIP: "10.96.0.10",
			Ports: []corev1.ServicePort{
				{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromString("http")},
				{Name: "metrics", Port: 9090, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt32(9090)},
			},
		},
	}
	env.MustCreate(resource.Services, svc)
	start(env)

	// Named ports resolve per pod: p1 and p3 serve http on 8080, p2 on 8081; every pod with an IP
	// serves metrics. Not-ready p3 is under notReadyAddresses; the pod without an IP, the
	// unselected, the finished and the terminating ones are left out.
	a1, a2, a3, a7 := address(p1, "10.244.1.1"), address(p2, "10.244.1.2"), address(p3, "10.244.1.3"), address(noName, "10.244.1.7")
	labels := map[string]string{"tier": "front"}
	env.Eventually(20*time.Second, "initial endpoints", wantSubsets(env, "web", []corev1.EndpointSubset{
		{Addresses: []corev1.EndpointAddress{a1}, NotReadyAddresses: []corev1.EndpointAddress{a3}, Ports: []corev1.EndpointPort{tcp("http", 8080)}},
		{Addresses: []corev1.EndpointAddress{a2}, Ports: []corev1.EndpointPort{tcp("http", 8081)}},
		{Addresses: []corev1.EndpointAddress{a1, a2, a7}, NotReadyAddresses: []corev1.EndpointAddress{a3}, Ports: []corev1.EndpointPort{tcp("metrics", 9090)}},
	}, labels))

	// p3 becomes ready, p1 not ready, p2 is deleted.
	setStatus(t, env, p3, podSpec{ip: "10.244.1.3", ready: true})
	setStatus(t, env, p1, podSpec{ip: "10.244.1.1", ready: false})
	if _, err := env.Store.Delete(env.Ctx, resource.Pods, "default", p2.Name, store.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	env.Eventually(20*time.Second, "endpoints follow readiness and deletion", wantSubsets(env, "web", []corev1.EndpointSubset{
		{Addresses: []corev1.EndpointAddress{a3}, NotReadyAddresses: []corev1.EndpointAddress{a1}, Ports: []corev1.EndpointPort{tcp("http", 8080)}},
		{Addresses: []corev1.EndpointAddress{a3, a7}, NotReadyAddresses: []corev1.EndpointAddress{a1}, Ports: []corev1.EndpointPort{tcp("metrics", 9090)}},
	}, labels))

	// An unchanged reconcile does not write: a Service update that does not change the result
	// leaves the Endpoints' generation alone; the next real change bumps it by one.
	before, err := getEndpoints(env, "web")
	if err != nil {
		t.Fatal(err)
	}
	cur, _ := env.Store.Get(env.Ctx, resource.Services, "default", "web")
	touched := cur.(*corev1.Service).DeepCopy()
	touched.Annotations = map[string]string{"touched": "yes"}
	if _, err := env.Store.Update(env.Ctx, resource.Services, touched); err != nil {
		t.Fatal(err)
	}
	setStatus(t, env, p1, podSpec{ip: "10.244.1.1", ready: true})
	env.Eventually(20*time.Second, "p1 ready again", wantSubsets(env, "web", []corev1.EndpointSubset{
		{Addresses: []corev1.EndpointAddress{a1, a3}, Ports: []corev1.EndpointPort{tcp("http", 8080)}},
		{Addresses: []corev1.EndpointAddress{a1, a3, a7}, Ports: []corev1.EndpointPort{tcp("metrics", 9090)}},
	}, labels))
	after, _ := getEndpoints(env, "web")
	if after.Generation != before.Generation+1 {
		t.Errorf("endpoints generation %d -> %d, want one write", before.Generation, after.Generation)
	}

	// Selector change: other pods now.
	cur, _ = env.Store.Get(env.Ctx, resource.Services, "default", "web")
	moved := cur.(*corev1.Service).DeepCopy()
	moved.Spec.Selector = map[string]string{"app": "other"}
	if _, err := env.Store.Update(env.Ctx, resource.Services, moved); err != nil {
		t.Fatal(err)
	}
	other, _ := env.Store.Get(env.Ctx, resource.Pods, "default", "other")
	ao := address(other.(*corev1.Pod), "10.244.1.5")
	env.Eventually(20*time.Second, "endpoints follow the selector", wantSubsets(env, "web", []corev1.EndpointSubset{
		{Addresses: []corev1.EndpointAddress{ao}, Ports: []corev1.EndpointPort{tcp("http", 8080), tcp("metrics", 9090)}},
	}, labels))

	// Deleting the Service deletes its Endpoints.
	if _, err := env.Store.Delete(env.Ctx, resource.Services, "default", "web", store.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	env.Eventually(20*time.Second, "endpoints deleted with the service", func() error {
		if _, err := getEndpoints(env, "web"); !apierrors.IsNotFound(err) {
			return fmt.Errorf("endpoints still there (err %v)", err)
		}
		return nil
	})
}

func TestHeadlessAndUserManaged(t *testing.T) {
	env := controllertest.New(t, nil)
	db := map[string]string{"app": "db"}
	p := createPod(t, env, podSpec{name: "db-0", labels: db, ip: "10.244.2.1", ready: false})
	env.MustCreate(resource.Services, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "db"},
		Spec:       corev1.ServiceSpec{Selector: db, ClusterIP: corev1.ClusterIPNone, PublishNotReadyAddresses: true},
	})
	// A Service without a selector: its Endpoints are the user's.
	env.MustCreate(resource.Services, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "external"},
		Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 5432, Protocol: corev1.ProtocolTCP}}},
	})
	userEP := &corev1.Endpoints{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "external"},
		Subsets:    []corev1.EndpointSubset{{Addresses: []corev1.EndpointAddress{{IP: "192.0.2.7"}}, Ports: []corev1.EndpointPort{tcp("", 5432)}}},
	}
	env.MustCreate(resource.Endpoints, userEP)
	// A leftover Endpoints without a Service is removed, as Kubernetes does.
	env.MustCreate(resource.Endpoints, &corev1.Endpoints{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "leftover"}})
	start(env)

	// Headless, no ports, publishNotReadyAddresses: the not-ready pod is published as ready.
	env.Eventually(20*time.Second, "headless endpoints", wantSubsets(env, "db", []corev1.EndpointSubset{
		{Addresses: []corev1.EndpointAddress{address(p, "10.244.2.1")}},
	}, map[string]string{corev1.IsHeadlessService: ""}))
	env.Eventually(20*time.Second, "leftover endpoints deleted", func() error {
		if _, err := getEndpoints(env, "leftover"); !apierrors.IsNotFound(err) {
			return fmt.Errorf("leftover still there (err %v)", err)
		}
		return nil
	})
	ep, err := getEndpoints(env, "external")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(userEP.Subsets, ep.Subsets); diff != "" {
		t.Errorf("user-managed endpoints changed (-want +got):\n%s", diff)
	}
}

func TestManyPortsAndPodsConverge(t *testing.T) {
	env := controllertest.New(t, nil)
	start(env)
	app := map[string]string{"app": "api"}
	env.MustCreate(resource.Services, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "api"},
		Spec: corev1.ServiceSpec{Selector: app, ClusterIP: "10.96.0.20", Ports: []corev1.ServicePort{
			{Name: "a", Port: 1, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt32(8001)},
			{Name: "b", Port: 2, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt32(8002)},
			{Name: "c", Port: 3, Protocol: corev1.ProtocolUDP, TargetPort: intstr.FromInt32(8003)},
		}},
	})
	var want []corev1.EndpointAddress
	for i := range 30 {
		p := createPod(t, env, podSpec{name: fmt.Sprintf("api-%d", i), labels: app, ip: fmt.Sprintf("10.244.3.%d", i+1), ready: true})
		want = append(want, address(p, p.Status.PodIP))
	}
	for i := range want {
		want[i].IP = fmt.Sprintf("10.244.3.%d", i+1)
	}
	ports := []corev1.EndpointPort{tcp("a", 8001), tcp("b", 8002), {Name: "c", Port: 8003, Protocol: corev1.ProtocolUDP}}
	env.Eventually(30*time.Second, "30 pods, 3 ports, one subset", wantSubsets(env, "api", []corev1.EndpointSubset{
		{Addresses: want, Ports: ports},
	}, nil))
}
