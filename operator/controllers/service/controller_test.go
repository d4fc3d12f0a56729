package service_test

import (
	"context"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bosun-gitops/bosun/internal/resource"
	"github.com/bosun-gitops/bosun/operator/controllers"
	"github.com/bosun-gitops/bosun/operator/controllers/controllertest"
	"github.com/bosun-gitops/bosun/operator/controllers/service"
	"github.com/bosun-gitops/bosun/operator/events"
	"github.com/bosun-gitops/bosun/operator/informer"
	"github.com/bosun-gitops/bosun/operator/store"
	"github.com/bosun-gitops/bosun/operator/store/storetest"
	bosunv1 "github.com/bosun-gitops/bosun/repo-layout/v1alpha1"
	clientv3 "go.etcd.io/etcd/client/v3"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/clock"
)

var testOpts = service.Options{RepairInterval: 200 * time.Millisecond, RetryInterval: 200 * time.Millisecond}

func constructors() map[string]controllers.Constructor {
	return map[string]controllers.Constructor{service.Name: func(c *controllers.Context) (controllers.Controller, error) {
		return service.NewWithOptions(c, testOpts)
	}}
}

// startAllocator runs an allocator of its own (own informers) on st until the returned stop
// function is called.
func startAllocator(t *testing.T, st *store.Store) (stop func()) {
	t.Helper()
	f := informer.NewFactory(st, 0)
	log := storetest.Logger(t)
	c := &controllers.Context{
		Store: st, Informers: f, Recorder: &events.FakeRecorder{}, Cluster: controllers.ClusterFromInformer(f),
		Logger: log, Clock: clock.RealClock{}, Workers: 4,
	}
	set, err := controllers.Build(c, constructors())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := set.Run(ctx); err != nil {
			t.Errorf("allocator stopped: %v", err)
		}
	}()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	return stop
}

func newService(name string, typ corev1.ServiceType, ports ...corev1.ServicePort) *corev1.Service {
	if len(ports) == 0 {
		ports = []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}}
	}
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name},
		Spec:       corev1.ServiceSpec{Type: typ, Selector: map[string]string{"app": name}, Ports: ports},
	}
}

func create(t *testing.T, st *store.Store, svc *corev1.Service) {
	t.Helper()
	if _, err := st.Create(context.Background(), resource.Services, svc); err != nil {
		t.Fatalf("creating service %s: %v", svc.Name, err)
	}
}

func getService(t *testing.T, st *store.Store, name string) *corev1.Service {
	t.Helper()
	obj, err := st.Get(context.Background(), resource.Services, "default", name)
	if err != nil {
		t.Fatal(err)
	}
	return obj.(*corev1.Service)
}

func services(t *testing.T, st *store.Store) []*corev1.Service {
	t.Helper()
	l, err := st.List(context.Background(), resource.Services, "", store.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	out := make([]*corev1.Service, len(l.Items))
	for i, o := range l.Items {
		out[i] = o.(*corev1.Service)
	}
	return out
}

// claimKeys returns the stored claims: key suffix -> owner name.
func claimKeys(t *testing.T, st *store.Store) map[string]string {
	t.Helper()
	resp, err := st.Client().Get(context.Background(), service.AllocationsPrefix, clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, kv := range resp.Kvs {
		v := string(kv.Value)
		i := strings.Index(v, `"name":"`) + len(`"name":"`)
		out[strings.TrimPrefix(string(kv.Key), service.AllocationsPrefix)] = v[i : i+strings.Index(v[i:], `"`)]
	}
	return out
}

// checkUnique fails unless every service that should have an IP/node ports has them, without
// duplicates, and the stored claims are exactly the values in use.
func checkUnique(st *store.Store, svcs []*corev1.Service) error {
	ips := map[string]string{}
	ports := map[int32]string{}
	wantClaims := map[string]string{}
	prefix := netip.MustParsePrefix("10.96.0.0/16")
	for _, s := range svcs {
		switch {
		case s.Spec.ClusterIP == corev1.ClusterIPNone:
		case s.Spec.ClusterIP == "":
			return fmt.Errorf("%s has no cluster IP yet", s.Name)
		default:
			a, err := netip.ParseAddr(s.Spec.ClusterIP)
			if err != nil || !prefix.Contains(a) || s.Spec.ClusterIP == "10.96.0.1" {
				return fmt.Errorf("%s got cluster IP %q outside the allocatable range", s.Name, s.Spec.ClusterIP)
			}
			if other, dup := ips[s.Spec.ClusterIP]; dup {
				return fmt.Errorf("cluster IP %s given to %s and %s", s.Spec.ClusterIP, other, s.Name)
			}
			ips[s.Spec.ClusterIP] = s.Name
			wantClaims["serviceips/"+s.Spec.ClusterIP] = s.Name
			if len(s.Spec.ClusterIPs) != 1 || s.Spec.ClusterIPs[0] != s.Spec.ClusterIP || len(s.Spec.IPFamilies) != 1 {
				return fmt.Errorf("%s: clusterIPs %v ipFamilies %v", s.Name, s.Spec.ClusterIPs, s.Spec.IPFamilies)
			}
		}
		for _, p := range s.Spec.Ports {
			switch {
			case s.Spec.Type != corev1.ServiceTypeNodePort:
				if p.NodePort != 0 {
					return fmt.Errorf("%s of type %s has node port %d", s.Name, s.Spec.Type, p.NodePort)
				}
				continue
			case p.NodePort == 0:
				return fmt.Errorf("%s has no node port yet", s.Name)
			case p.NodePort < service.NodePortMin || p.NodePort > service.NodePortMax:
				return fmt.Errorf("%s: node port %d out of range", s.Name, p.NodePort)
			}
			if other, dup := ports[p.NodePort]; dup && other != s.Name {
				return fmt.Errorf("node port %d given to %s and %s", p.NodePort, other, s.Name)
			}
			ports[p.NodePort] = s.Name
			wantClaims["nodeports/"+strconv.Itoa(int(p.NodePort))] = s.Name
		}
	}
	got := map[string]string{}
	resp, err := st.Client().Get(context.Background(), service.AllocationsPrefix, clientv3.WithPrefix())
	if err != nil {
		return err
	}
	for _, kv := range resp.Kvs {
		v := string(kv.Value)
		i := strings.Index(v, `"name":"`) + len(`"name":"`)
		got[strings.TrimPrefix(string(kv.Key), service.AllocationsPrefix)] = v[i : i+strings.Index(v[i:], `"`)]
	}
	if fmt.Sprint(got) != fmt.Sprint(wantClaims) {
		return fmt.Errorf("claims %v, want %v", got, wantClaims)
	}
	return nil
}

// mixedServices returns n services: every third NodePort, every fifth headless.
func mixedServices(prefix string, n int) []*corev1.Service {
	var out []*corev1.Service
	for i := range n {
		typ := corev1.ServiceTypeClusterIP
		if i%3 == 0 {
			typ = corev1.ServiceTypeNodePort
		}
		svc := newService(fmt.Sprintf("%s%d", prefix, i), typ,
			corev1.ServicePort{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP},
			corev1.ServicePort{Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP})
		if i%5 == 0 && typ == corev1.ServiceTypeClusterIP {
			svc.Spec.ClusterIP = corev1.ClusterIPNone
		}
		out = append(out, svc)
	}
	return out
}

func TestAllocatesManyServicesWithoutDuplicates(t *testing.T) {
	env := controllertest.New(t, nil)
	for _, s := range mixedServices("early", 40) {
		env.MustCreate(resource.Services, s)
	}
	env.Start(constructors())
	for _, s := range mixedServices("late", 60) {
		env.MustCreate(resource.Services, s)
	}
	env.Eventually(60*time.Second, "all services allocated", func() error {
		return checkUnique(env.Store, services(t, env.Store))
	})
	headless := getService(t, env.Store, "late5")
	if len(headless.Spec.ClusterIPs) != 1 || headless.Spec.ClusterIPs[0] != corev1.ClusterIPNone {
		t.Errorf("headless service clusterIPs = %v, want [None]", headless.Spec.ClusterIPs)
	}
	np := getService(t, env.Store, "late3")
	if np.Spec.Ports[0].NodePort == np.Spec.Ports[1].NodePort {
		t.Errorf("two service ports with different numbers share node port %d", np.Spec.Ports[0].NodePort)
	}
	env.Eventually(10*time.Second, "allocation events", func() error {
		return hasEvent(env, "late3", service.ReasonNodePortAllocated)
	})
}

func hasEvent(env *controllertest.Env, name, reason string) error {
	var seen []string
	for _, o := range env.List(resource.Events, "default") {
		ev := o.(*corev1.Event)
		if ev.InvolvedObject.Name == name {
			if ev.Reason == reason {
				return nil
			}
			seen = append(seen, ev.Reason)
		}
	}
	return fmt.Errorf("no %s event for %s (saw %v)", reason, name, seen)
}

func conditionOf(t *testing.T, st *store.Store, name string) *metav1.Condition {
	return meta.FindStatusCondition(getService(t, st, name).Status.Conditions, service.ConditionAllocated)
}

func wantCondition(t *testing.T, st *store.Store, name string, status metav1.ConditionStatus, reason string) error {
	c := conditionOf(t, st, name)
	if c == nil || c.Status != status || c.Reason != reason {
		return fmt.Errorf("%s: condition %+v, want %s %s", name, c, status, reason)
	}
	return nil
}

func TestRequestedClusterIPs(t *testing.T) {
	env := controllertest.New(t, nil)
	env.Start(constructors())
	st := env.Store
	withIP := func(name, ip string) *corev1.Service {
		s := newService(name, corev1.ServiceTypeClusterIP)
		s.Spec.ClusterIP = ip
		return s
	}
	create(t, st, withIP("first", "10.96.5.5"))
	env.Eventually(10*time.Second, "requested IP honoured", func() error {
		s := getService(t, st, "first")
		if s.Spec.ClusterIP != "10.96.5.5" || len(s.Spec.ClusterIPs) != 1 {
			return fmt.Errorf("first: %q %v", s.Spec.ClusterIP, s.Spec.ClusterIPs)
		}
		if claimKeys(t, st)["serviceips/10.96.5.5"] != "first" {
			return fmt.Errorf("no claim for first's IP: %v", claimKeys(t, st))
		}
		return nil
	})
	create(t, st, withIP("second", "10.96.5.5"))
	create(t, st, withIP("outside", "10.97.0.9"))
	create(t, st, withIP("reserved", "10.96.0.1"))
	create(t, st, withIP("kubernetes", "10.96.0.1"))
	env.Eventually(10*time.Second, "conflicts refused", func() error {
		for _, c := range []struct{ name, reason string }{
			{"second", service.ReasonClusterIPAlreadyAllocated},
			{"outside", service.ReasonClusterIPOutOfRange},
			{"reserved", service.ReasonClusterIPAlreadyAllocated},
		} {
			if err := wantCondition(t, st, c.name, metav1.ConditionFalse, c.reason); err != nil {
				return err
			}
			if err := hasEvent(env, c.name, c.reason); err != nil {
				return err
			}
		}
		if conditionOf(t, st, "kubernetes") != nil || claimKeys(t, st)["serviceips/10.96.0.1"] != "kubernetes" {
			return fmt.Errorf("the API service did not get 10.96.0.1: %v", claimKeys(t, st))
		}
		return nil
	})
	if owner := claimKeys(t, st)["serviceips/10.96.5.5"]; owner != "first" {
		t.Fatalf("10.96.5.5 is claimed by %q, want first", owner)
	}
	// Deleting the holder lets the waiting service through.
	if _, err := st.Delete(env.Ctx, resource.Services, "default", "first", store.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	env.Eventually(10*time.Second, "second gets the freed IP", func() error {
		if err := wantCondition(t, st, "second", metav1.ConditionTrue, "Allocated"); err != nil {
			return err
		}
		if owner := claimKeys(t, st)["serviceips/10.96.5.5"]; owner != "second" {
			return fmt.Errorf("10.96.5.5 claimed by %q", owner)
		}
		return nil
	})
}

func TestNodePorts(t *testing.T) {
	env := controllertest.New(t, nil)
	env.Start(constructors())
	st := env.Store
	fixed := newService("fixed", corev1.ServiceTypeNodePort, corev1.ServicePort{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP, NodePort: 30080})
	create(t, st, fixed)
	env.Eventually(10*time.Second, "requested node port claimed", func() error {
		if claimKeys(t, st)["nodeports/30080"] != "fixed" {
			return fmt.Errorf("claims %v", claimKeys(t, st))
		}
		return nil
	})
	clash := newService("clash", corev1.ServiceTypeNodePort, corev1.ServicePort{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP, NodePort: 30080})
	create(t, st, clash)
	outside := newService("outside", corev1.ServiceTypeNodePort, corev1.ServicePort{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP, NodePort: 8080})
	create(t, st, outside)
	dns := newService("dns", corev1.ServiceTypeNodePort,
		corev1.ServicePort{Name: "dns-tcp", Port: 53, Protocol: corev1.ProtocolTCP},
		corev1.ServicePort{Name: "dns-udp", Port: 53, Protocol: corev1.ProtocolUDP})
	create(t, st, dns)
	env.Eventually(10*time.Second, "node port conflicts refused", func() error {
		if err := wantCondition(t, st, "clash", metav1.ConditionFalse, service.ReasonPortAlreadyAllocated); err != nil {
			return err
		}
		if err := wantCondition(t, st, "outside", metav1.ConditionFalse, service.ReasonPortOutOfRange); err != nil {
			return err
		}
		d := getService(t, st, "dns")
		if d.Spec.Ports[0].NodePort == 0 || d.Spec.Ports[0].NodePort != d.Spec.Ports[1].NodePort {
			return fmt.Errorf("TCP and UDP on port 53 got node ports %d and %d, want one shared", d.Spec.Ports[0].NodePort, d.Spec.Ports[1].NodePort)
		}
		return nil
	})
	// Changing the type to ClusterIP clears and releases the node ports.
	d := getService(t, st, "dns")
	np := strconv.Itoa(int(d.Spec.Ports[0].NodePort))
	d.Spec.Type = corev1.ServiceTypeClusterIP
	if _, err := st.Update(env.Ctx, resource.Services, d); err != nil {
		t.Fatal(err)
	}
	env.Eventually(10*time.Second, "node ports released on type change", func() error {
		d := getService(t, st, "dns")
		if d.Spec.Ports[0].NodePort != 0 || d.Spec.Ports[1].NodePort != 0 {
			return fmt.Errorf("node ports still in spec: %+v", d.Spec.Ports)
		}
		if owner, ok := claimKeys(t, st)["nodeports/"+np]; ok {
			return fmt.Errorf("node port %s still claimed by %s", np, owner)
		}
		return nil
	})
}

func TestReleaseOnDelete(t *testing.T) {
	st := storetest.NewStore(t)
	stop := startAllocator(t, st)
	for _, s := range mixedServices("svc", 12) {
		create(t, st, s)
	}
	eventually(t, "allocated", func() error { return checkUnique(st, services(t, st)) })
	for i := range 6 {
		if _, err := st.Delete(context.Background(), resource.Services, "default", fmt.Sprintf("svc%d", i), store.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "claims of deleted services released", func() error { return checkUnique(st, services(t, st)) })

	// Deletions while no allocator runs are repaired at the next start.
	stop()
	for i := 6; i < 12; i++ {
		if _, err := st.Delete(context.Background(), resource.Services, "default", fmt.Sprintf("svc%d", i), store.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if len(claimKeys(t, st)) == 0 {
		t.Fatal("claims vanished without an allocator")
	}
	startAllocator(t, st)
	eventually(t, "claims released at restart", func() error {
		if c := claimKeys(t, st); len(c) != 0 {
			return fmt.Errorf("claims left: %v", c)
		}
		return nil
	})
}

func eventually(t *testing.T, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	var err error
	for time.Now().Before(deadline) {
		if err = cond(); err == nil {
			return
		}
		time.Sleep(25 * time.Millisecond)
	}
	t.Fatalf("%s: %v", what, err)
}

func TestUniqueAcrossRestart(t *testing.T) {
	st := storetest.NewStore(t)
	stop := startAllocator(t, st)
	for _, s := range mixedServices("before", 30) {
		create(t, st, s)
	}
	eventually(t, "first batch allocated", func() error { return checkUnique(st, services(t, st)) })
	before := map[string]string{}
	for _, s := range services(t, st) {
		before[s.Name] = fmt.Sprint(s.Spec.ClusterIP, s.Spec.Ports)
	}
	stop()
	startAllocator(t, st)
	for _, s := range mixedServices("after", 30) {
		create(t, st, s)
	}
	eventually(t, "both batches allocated", func() error { return checkUnique(st, services(t, st)) })
	for _, s := range services(t, st) {
		if b, ok := before[s.Name]; ok && b != fmt.Sprint(s.Spec.ClusterIP, s.Spec.Ports) {
			t.Errorf("%s changed across the restart: %s -> %s", s.Name, b, fmt.Sprint(s.Spec.ClusterIP, s.Spec.Ports))
		}
	}
}

func TestTwoAllocatorsAtOnce(t *testing.T) {
	st := storetest.NewStore(t)
	// A tiny range makes the two allocators compete for the same addresses.
	if _, err := st.Create(context.Background(), resource.Clusters, &bosunv1.Cluster{
		ObjectMeta: metav1.ObjectMeta{Name: "test"}, Spec: bosunv1.ClusterSpec{ServiceCIDR: "10.96.0.0/24"},
	}); err != nil {
		t.Fatal(err)
	}
	startAllocator(t, st)
	startAllocator(t, st)
	svcs := mixedServices("svc", 80)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < len(svcs); i += 4 {
				create(t, st, svcs[i])
			}
		}()
	}
	wg.Wait()
	eventually(t, "allocated once each, no leaked claims", func() error { return checkUnique(st, services(t, st)) })
}

func TestRangeFull(t *testing.T) {
	env := controllertest.New(t, nil)
	// 10.96.0.0/29: .1 reserved, .2-.6 allocatable.
	env.MustCreate(resource.Clusters, &bosunv1.Cluster{
		ObjectMeta: metav1.ObjectMeta{Name: "test"}, Spec: bosunv1.ClusterSpec{ServiceCIDR: "10.96.0.0/29"},
	})
	env.Start(constructors())
	for i := range 6 {
		create(t, env.Store, newService(fmt.Sprintf("s%d", i), corev1.ServiceTypeClusterIP))
	}
	env.Eventually(10*time.Second, "five allocated, one refused", func() error {
		got, full := map[string]bool{}, 0
		for _, s := range services(t, env.Store) {
			switch {
			case s.Spec.ClusterIP != "":
				got[s.Spec.ClusterIP] = true
			case wantCondition(t, env.Store, s.Name, metav1.ConditionFalse, service.ReasonClusterIPRangeFull) == nil:
				full++
			}
		}
		want := map[string]bool{"10.96.0.2": true, "10.96.0.3": true, "10.96.0.4": true, "10.96.0.5": true, "10.96.0.6": true}
		if fmt.Sprint(got) != fmt.Sprint(want) || full != 1 {
			return fmt.Errorf("allocated %v, %d full", got, full)
		}
		return nil
	})
}
