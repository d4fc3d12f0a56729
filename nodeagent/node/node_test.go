package node

import "testing"

func TestPodsFor(t *testing.T) {
	for _, tc := range []struct {
		cidr string
		want int64
	}{
		{"10.244.3.0/24", MaxPods}, // 253 addresses, more than MaxPods
		{"10.244.3.0/25", MaxPods},
		{"10.244.3.0/26", 61},
		{"10.244.3.0/28", 13},
		{"", MaxPods}, // no pod CIDR yet
		{"fd00::/64", MaxPods},
	} {
		if got := PodsFor(tc.cidr); got != tc.want {
			t.Errorf("PodsFor(%q) = %d, want %d", tc.cidr, got, tc.want)
		}
	}
}
