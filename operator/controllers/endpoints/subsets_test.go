package endpoints

import (
	"math/rand/v2"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
)

func addr(ip string, uid types.UID) corev1.EndpointAddress {
	a := corev1.EndpointAddress{IP: ip}
	if uid != "" {
		a.TargetRef = &corev1.ObjectReference{Kind: "Pod", Name: string(uid), UID: uid}
	}
	return a
}

func addrs(as ...corev1.EndpointAddress) []corev1.EndpointAddress { return as }

func port(name string, p int32) corev1.EndpointPort {
	return corev1.EndpointPort{Name: name, Port: p, Protocol: corev1.ProtocolTCP}
}

func ports(ps ...corev1.EndpointPort) []corev1.EndpointPort { return ps }

// The cases follow Kubernetes' pkg/api/v1/endpoints TestPackSubsets.
func TestRepackSubsets(t *testing.T) {
	tests := []struct {
		name  string
		given []corev1.EndpointSubset
		want  []corev1.EndpointSubset
	}{
		{name: "empty", given: nil, want: []corev1.EndpointSubset{}},
		{
			name:  "one address one port",
			given: []corev1.EndpointSubset{{Addresses: addrs(addr("1.2.3.4", "")), Ports: ports(port("", 111))}},
			want:  []corev1.EndpointSubset{{Addresses: addrs(addr("1.2.3.4", "")), Ports: ports(port("", 111))}},
		},
		{
			name:  "address without ports is kept",
			given: []corev1.EndpointSubset{{Addresses: addrs(addr("1.2.3.4", ""))}},
			want:  []corev1.EndpointSubset{{Addresses: addrs(addr("1.2.3.4", ""))}},
		},
		{
			name: "not-ready address without ports",
			given: []corev1.EndpointSubset{
				{Addresses: addrs(addr("1.2.3.4", "a"))},
				{NotReadyAddresses: addrs(addr("5.6.7.8", "b"))},
			},
			want: []corev1.EndpointSubset{{Addresses: addrs(addr("1.2.3.4", "a")), NotReadyAddresses: addrs(addr("5.6.7.8", "b"))}},
		},
		{
			name: "duplicate address and port",
			given: []corev1.EndpointSubset{
				{Addresses: addrs(addr("1.2.3.4", "a")), Ports: ports(port("", 111))},
				{Addresses: addrs(addr("1.2.3.4", "a")), Ports: ports(port("", 111))},
			},
			want: []corev1.EndpointSubset{{Addresses: addrs(addr("1.2.3.4", "a")), Ports: ports(port("", 111))}},
		},
		{
			name: "same IP, two pods: two addresses",
			given: []corev1.EndpointSubset{
				{Addresses: addrs(addr("1.2.3.4", "b")), Ports: ports(port("", 111))},
				{Addresses: addrs(addr("1.2.3.4", "a")), Ports: ports(port("", 111))},
			},
			want: []corev1.EndpointSubset{{Addresses: addrs(addr("1.2.3.4", "a"), addr("1.2.3.4", "b")), Ports: ports(port("", 111))}},
		},
		{
			name: "addresses merge per port set, IPs sorted as strings",
			given: []corev1.EndpointSubset{
				{Addresses: addrs(addr("10.0.0.9", "a")), Ports: ports(port("", 111))},
				{Addresses: addrs(addr("10.0.0.10", "b")), Ports: ports(port("", 111))},
			},
			want: []corev1.EndpointSubset{{Addresses: addrs(addr("10.0.0.10", "b"), addr("10.0.0.9", "a")), Ports: ports(port("", 111))}},
		},
		{
			name: "ports merge per address set",
			given: []corev1.EndpointSubset{
				{Addresses: addrs(addr("1.2.3.4", "a")), Ports: ports(port("p", 111))},
				{Addresses: addrs(addr("1.2.3.4", "a")), Ports: ports(port("q", 222))},
			},
			want: []corev1.EndpointSubset{{Addresses: addrs(addr("1.2.3.4", "a")), Ports: SortSubsets([]corev1.EndpointSubset{{Ports: ports(port("p", 111), port("q", 222))}})[0].Ports}},
		},
		{
			name: "not ready trumps ready",
			given: []corev1.EndpointSubset{
				{Addresses: addrs(addr("1.2.3.4", "a")), Ports: ports(port("", 111))},
				{NotReadyAddresses: addrs(addr("1.2.3.4", "a")), Ports: ports(port("", 111))},
			},
			want: []corev1.EndpointSubset{{NotReadyAddresses: addrs(addr("1.2.3.4", "a")), Ports: ports(port("", 111))}},
		},
		{
			name: "ready and not-ready addresses of one port share a subset",
			given: []corev1.EndpointSubset{
				{Addresses: addrs(addr("1.2.3.4", "a")), Ports: ports(port("", 111))},
				{NotReadyAddresses: addrs(addr("5.6.7.8", "b")), Ports: ports(port("", 111))},
			},
			want: []corev1.EndpointSubset{{Addresses: addrs(addr("1.2.3.4", "a")), NotReadyAddresses: addrs(addr("5.6.7.8", "b")), Ports: ports(port("", 111))}},
		},
		{
			name: "different port sets: separate subsets",
			given: []corev1.EndpointSubset{
				{Addresses: addrs(addr("1.2.3.4", "a")), Ports: ports(port("http", 8080))},
				{Addresses: addrs(addr("5.6.7.8", "b")), Ports: ports(port("http", 8081))},
				{Addresses: addrs(addr("1.2.3.4", "a"), addr("5.6.7.8", "b")), Ports: ports(port("metrics", 9090))},
			},
			want: SortSubsets([]corev1.EndpointSubset{
				{Addresses: addrs(addr("1.2.3.4", "a")), Ports: ports(port("http", 8080))},
				{Addresses: addrs(addr("5.6.7.8", "b")), Ports: ports(port("http", 8081))},
				{Addresses: addrs(addr("1.2.3.4", "a"), addr("5.6.7.8", "b")), Ports: ports(port("metrics", 9090))},
			}),
		},
		{
			name: "same port number, different protocols",
			given: []corev1.EndpointSubset{
				{Addresses: addrs(addr("1.2.3.4", "a")), Ports: ports(port("", 53), corev1.EndpointPort{Port: 53, Protocol: corev1.ProtocolUDP})},
			},
			want: SortSubsets([]corev1.EndpointSubset{
				{Addresses: addrs(addr("1.2.3.4", "a")), Ports: ports(port("", 53), corev1.EndpointPort{Port: 53, Protocol: corev1.ProtocolUDP})},
			}),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, RepackSubsets(tt.given)); diff != "" {
				t.Errorf("RepackSubsets (-want +got):\n%s", diff)
			}
			// The result is canonical: the order of the input does not matter.
			for range 5 {
				shuffled := shuffle(tt.given)
				if diff := cmp.Diff(tt.want, RepackSubsets(shuffled)); diff != "" {
					t.Fatalf("RepackSubsets of shuffled input (-want +got):\n%s", diff)
				}
			}
		})
	}
}

func shuffle(in []corev1.EndpointSubset) []corev1.EndpointSubset {
	out := make([]corev1.EndpointSubset, len(in))
	for i := range in {
		s := *in[i].DeepCopy()
		rand.Shuffle(len(s.Addresses), func(a, b int) { s.Addresses[a], s.Addresses[b] = s.Addresses[b], s.Addresses[a] })
		rand.Shuffle(len(s.Ports), func(a, b int) { s.Ports[a], s.Ports[b] = s.Ports[b], s.Ports[a] })
		out[i] = s
	}
	rand.Shuffle(len(out), func(a, b int) { out[a], out[b] = out[b], out[a] })
	return out
}

// Ports are ordered by their hash, not by the input order.
func TestSortSubsetsIsStableAndNotInputOrder(t *testing.T) {
	a := []corev1.EndpointPort{port("a", 1), port("b", 2), port("c", 3), port("d", 4)}
	b := []corev1.EndpointPort{port("d", 4), port("c", 3), port("b", 2), port("a", 1)}
	sa := SortSubsets([]corev1.EndpointSubset{{Ports: a}})[0].Ports
	sb := SortSubsets([]corev1.EndpointSubset{{Ports: b}})[0].Ports
	if diff := cmp.Diff(sa, sb); diff != "" {
		t.Fatalf("port order depends on the input (-a +b):\n%s", diff)
	}
}

func TestInputNotModified(t *testing.T) {
	given := []corev1.EndpointSubset{
		{Addresses: addrs(addr("5.6.7.8", "b"), addr("1.2.3.4", "a")), Ports: ports(port("q", 2), port("p", 1))},
	}
	before := given[0].DeepCopy()
	RepackSubsets(given)
	if diff := cmp.Diff(*before, given[0]); diff != "" {
		t.Fatalf("input modified (-before +after):\n%s", diff)
	}
}
