package nodeipam

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestAllocator(t *testing.T) {
	tests := []struct {
		name     string
		cluster  string
		bits     int
		occupy   map[string]string
		allocate []string
		want     []string
		wantFull bool
	}{
		{name: "lowest first", cluster: "10.244.0.0/16", bits: 24, allocate: []string{"a", "b"}, want: []string{"10.244.0.0/24", "10.244.1.0/24"}},
		{name: "skips occupied", cluster: "10.244.0.0/16", bits: 24, occupy: map[string]string{"x": "10.244.0.0/24", "y": "10.244.2.0/24"},
			allocate: []string{"a", "b"}, want: []string{"10.244.1.0/24", "10.244.3.0/24"}},
		{name: "same owner same cidr", cluster: "10.244.0.0/16", bits: 24, occupy: map[string]string{"a": "10.244.7.0/24"},
			allocate: []string{"a"}, want: []string{"10.244.7.0/24"}},
		{name: "outside the range is not tracked", cluster: "10.244.0.0/16", bits: 24, occupy: map[string]string{"x": "192.168.0.0/24"},
			allocate: []string{"a"}, want: []string{"10.244.0.0/24"}},
		{name: "full", cluster: "10.0.0.0/23", bits: 24, allocate: []string{"a", "b", "c"}, want: []string{"10.0.0.0/24", "10.0.1.0/24"}, wantFull: true},
		{name: "small cluster range is one subnet", cluster: "10.0.0.0/26", bits: 24, allocate: []string{"a"}, want: []string{"10.0.0.0/26"}},
		{name: "ipv6", cluster: "fd00:10::/56", bits: 64, allocate: []string{"a", "b"}, want: []string{"fd00:10::/64", "fd00:10:0:1::/64"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := NewAllocator(tt.cluster, tt.bits)
			if err != nil {
				t.Fatal(err)
			}
			for owner, cidr := range tt.occupy {
				if err := a.Occupy(owner, cidr); err != nil {
					t.Fatal(err)
				}
			}
			var got []string
			full := false
			for _, owner := range tt.allocate {
				cidr, err := a.Allocate(owner)
				if errors.Is(err, ErrFull) {
					full = true
					continue
				}
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, cidr)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("allocations (-want +got):\n%s", diff)
			}
			if full != tt.wantFull {
				t.Errorf("full = %v, want %v", full, tt.wantFull)
			}
		})
	}
}

func TestAllocatorConflictAndRelease(t *testing.T) {
	a, err := NewAllocator("10.0.0.0/23", 24)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Occupy("a", "10.0.1.0/24"); err != nil {
		t.Fatal(err)
	}
	if err := a.Occupy("b", "10.0.1.0/24"); err == nil {
		t.Fatal("two owners got 10.0.1.0/24")
	}
	a.Release("a")
	if err := a.Occupy("b", "10.0.1.0/24"); err != nil {
		t.Fatalf("after release: %v", err)
	}
}
