package proxy

import (
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
)

// cluster is an in-memory informer store pair, read through real client-go listers.
type cluster struct {
	svcs, eps cache.Indexer
}

func newCluster() *cluster {
	idx := func() cache.Indexer {
		return cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	}
	return &cluster{svcs: idx(), eps: idx()}
}

func (c *cluster) serviceLister() ServiceLister {
	return corelisters.NewServiceLister(c.svcs)
}
func (c *cluster) endpointsLister() EndpointsLister {
	return corelisters.NewEndpointsLister(c.eps)
}

func (c *cluster) set(t testing.TB, objs ...any) {
	t.Helper()
	for _, o := range objs {
		var err error
		switch o := o.(type) {
		case *corev1.Service:
			err = c.svcs.Update(o)
		case *corev1.Endpoints:
			err = c.eps.Update(o)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

type portSpec struct {
	name     string
	proto    corev1.Protocol
	port     int32
	target   int32
	nodePort int32
}

func service(ns, name, clusterIP string, ports ...portSpec) *corev1.Service {
	s := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       corev1.ServiceSpec{ClusterIP: clusterIP, Type: corev1.ServiceTypeClusterIP},
	}
	for _, p := range ports {
		s.Spec.Ports = append(s.Spec.Ports, corev1.ServicePort{
			Name: p.name, Protocol: p.proto, Port: p.port, TargetPort: intstr.FromInt32(p.target), NodePort: p.nodePort,
		})
		if p.nodePort != 0 {
			s.Spec.Type = corev1.ServiceTypeNodePort
		}
	}
	return s
}

// endpoints makes one subset with the target ports of ports, ready and notReady addresses.
func endpoints(ns, name string, ready, notReady []string, ports ...portSpec) *corev1.Endpoints {
	e := &corev1.Endpoints{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	if len(ready)+len(notReady) == 0 {
		return e
	}
	var ss corev1.EndpointSubset
	for _, ip := range ready {
		ss.Addresses = append(ss.Addresses, corev1.EndpointAddress{IP: ip})
	}
	for _, ip := range notReady {
		ss.NotReadyAddresses = append(ss.NotReadyAddresses, corev1.EndpointAddress{IP: ip})
	}
	for _, p := range ports {
		ss.Ports = append(ss.Ports, corev1.EndpointPort{Name: p.name, Protocol: p.proto, Port: p.target})
	}
	e.Subsets = []corev1.EndpointSubset{ss}
	return e
}

var (
	webPorts = []portSpec{{"http", corev1.ProtocolTCP, 80, 8080, 0}, {"https", corev1.ProtocolTCP, 443, 8443, 0}}
	npPorts  = []portSpec{{"", corev1.ProtocolTCP, 80, 80, 30080}}
	dnsPorts = []portSpec{{"dns", corev1.ProtocolUDP, 53, 53, 0}, {"dns-tcp", corev1.ProtocolTCP, 53, 53, 0}}
	udpNP    = []portSpec{{"syslog", corev1.ProtocolUDP, 514, 5514, 30514}}
)

// representative returns the services of the golden test: multi-port, NodePort, no endpoints,
// ClientIP affinity, UDP (with a NodePort), headless, failed allocation, ExternalName.
func representative() []any {
	sticky := service("default", "sticky", "10.96.0.13", portSpec{"", corev1.ProtocolTCP, 80, 8080, 0})
	sticky.Spec.SessionAffinity = corev1.ServiceAffinityClientIP
	timeout := int32(600)
	sticky.Spec.SessionAffinityConfig = &corev1.SessionAffinityConfig{ClientIP: &corev1.ClientIPConfig{TimeoutSeconds: &timeout}}
	headless := service("default", "headless", corev1.ClusterIPNone, portSpec{"", corev1.ProtocolTCP, 80, 80, 0})
	failed := service("default", "failed", "10.96.0.99", portSpec{"", corev1.ProtocolTCP, 80, 80, 0})
	failed.Status.Conditions = []metav1.Condition{{Type: "Allocated", Status: metav1.ConditionFalse, Reason: "ClusterIPAlreadyAllocated"}}
	external := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "ext"},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName, ExternalName: "example.com"}}
	return []any{
		service("default", "web", "10.96.0.10", webPorts...),
		endpoints("default", "web", []string{"10.244.1.5", "10.244.0.4", "10.244.2.6"}, []string{"10.244.3.33"}, webPorts...),
		service("default", "np", "10.96.0.11", npPorts...),
		endpoints("default", "np", []string{"10.244.0.7", "10.244.1.7"}, nil, npPorts...),
		service("default", "empty", "10.96.0.12", portSpec{"", corev1.ProtocolTCP, 80, 80, 30081}),
		endpoints("default", "empty", nil, []string{"10.244.0.8"}, portSpec{"", corev1.ProtocolTCP, 80, 80, 0}),
		sticky,
		endpoints("default", "sticky", []string{"10.244.0.9", "10.244.1.9"}, nil, portSpec{"", corev1.ProtocolTCP, 80, 8080, 0}),
		service("kube-system", "kube-dns", "10.96.0.3", dnsPorts...),
		endpoints("kube-system", "kube-dns", []string{"10.244.0.2"}, nil, dnsPorts...),
		service("default", "syslog", "10.96.0.14", udpNP...),
		endpoints("default", "syslog", []string{"10.244.2.3"}, nil, udpNP...),
		headless,
		endpoints("default", "headless", []string{"10.244.0.20", "10.244.1.20"}, nil, portSpec{"", corev1.ProtocolTCP, 80, 80, 0}),
		failed,
		external,
	}
}

// synthetic returns n one-port services with eps endpoints each (≈ 32 rules per service with
// 10 endpoints, as in DESIGN.md's measurements).
func synthetic(n, eps int) []any {
	var out []any
	for i := range n {
		ports := []portSpec{{"http", corev1.ProtocolTCP, 80, 8080, 0}}
		name := fmt.Sprintf("svc-%05d", i)
		s := service(fmt.Sprintf("ns-%d", i%50), name, fmt.Sprintf("10.96.%d.%d", i/250, i%250+1), ports...)
		s.ResourceVersion = "1"
		var ips []string
		for j := range eps {
			ips = append(ips, fmt.Sprintf("10.%d.%d.%d", 100+j, i/250, i%250+1))
		}
		out = append(out, s, endpoints(s.Namespace, name, ips, nil, ports...))
	}
	return out
}
