package routes

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func node(name, ip string, cidrs ...string) *corev1.Node {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.NodeSpec{PodCIDRs: cidrs}}
	if len(cidrs) > 0 {
		n.Spec.PodCIDR = cidrs[0]
	}
	if ip != "" {
		n.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeHostName, Address: name}, {Type: corev1.NodeInternalIP, Address: ip}}
	}
	return n
}

func TestDesired(t *testing.T) {
	cluster := netip.MustParsePrefix("10.244.0.0/16")
	r := func(dst, gw, n string) Route {
		return Route{Dst: netip.MustParsePrefix(dst), Gw: netip.MustParseAddr(gw), Node: n}
	}
	tests := []struct {
		name    string
		nodes   []*corev1.Node
		want    []Route
		skipped []string
	}{
		{"self is not routed", []*corev1.Node{node("a", "192.0.2.1", "10.244.1.0/24")}, nil, nil},
		{
			"others sorted by address",
			[]*corev1.Node{node("c", "192.0.2.3", "10.244.10.0/24"), node("a", "192.0.2.1", "10.244.1.0/24"), node("b", "192.0.2.2", "10.244.2.0/24")},
			[]Route{r("10.244.2.0/24", "192.0.2.2", "b"), r("10.244.10.0/24", "192.0.2.3", "c")},
			nil,
		},
		{
			"joining nodes are skipped",
			[]*corev1.Node{node("b", "", "10.244.2.0/24"), node("c", "192.0.2.3")},
			nil,
			[]string{"node b: no IPv4 InternalIP yet", "node c: no pod CIDR yet"},
		},
		{
			"outside the cluster network and duplicates are refused",
			[]*corev1.Node{node("b", "192.0.2.2", "10.99.0.0/24"), node("c", "192.0.2.3", "10.244.3.0/24"), node("d", "192.0.2.4", "10.244.3.0/24"), node("e", "192.0.2.5", "10.0.0.0/8")},
			[]Route{r("10.244.3.0/24", "192.0.2.3", "c")},
			[]string{
				"node b: pod CIDR 10.99.0.0/24 is outside the cluster pod network 10.244.0.0/16",
				"node d: pod CIDR 10.244.3.0/24 is also node c's",
				"node e: pod CIDR 10.0.0.0/8 is outside the cluster pod network 10.244.0.0/16",
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, skipped := Desired("a", cluster, tc.nodes)
			if diff := cmp.Diff(tc.want, got, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b }), cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
				t.Errorf("routes (-want +got):\n%s", diff)
			}
			var gotSkipped []string
			for _, s := range skipped {
				gotSkipped = append(gotSkipped, s.Error())
			}
			if diff := cmp.Diff(tc.skipped, gotSkipped); diff != "" {
				t.Errorf("skipped (-want +got):\n%s", diff)
			}
		})
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		cfg  Config
		want string
	}{
		{Config{NodeName: "a", ClusterPodCIDR: "10.244.0.0/16"}, ""},
		{Config{ClusterPodCIDR: "10.244.0.0/16"}, "NodeName: empty"},
		{Config{NodeName: "a", ClusterPodCIDR: "10.244.1.0/16"}, "ClusterPodCIDR: 10.244.1.0/16 has host bits set (did you mean 10.244.0.0/16?)"},
		{Config{NodeName: "a", ClusterPodCIDR: "fd00::/48"}, "ClusterPodCIDR: fd00::/48 is not IPv4 (only IPv4 pod networks are supported)"},
	}
	for i, tc := range tests {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			got := ""
			if err := tc.cfg.Validate(); err != nil {
				got = err.Error()
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}
