package service

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseRange(t *testing.T) {
	tests := []struct {
		cidr        string
		wantErr     bool
		first, last uint64
		firstAddr   string
		lastAddr    string
	}{
		{cidr: "10.96.0.0/16", first: 1, last: 65534, firstAddr: "10.96.0.1", lastAddr: "10.96.255.254"},
		{cidr: "10.96.7.9/24", first: 1, last: 254, firstAddr: "10.96.7.1", lastAddr: "10.96.7.254"},
		{cidr: "192.168.0.0/30", first: 1, last: 2, firstAddr: "192.168.0.1", lastAddr: "192.168.0.2"},
		{cidr: "192.168.0.0/31", wantErr: true},
		{cidr: "fd00::/112", first: 1, last: 65535, firstAddr: "fd00::1", lastAddr: "fd00::ffff"},
		{cidr: "fd00::/64", first: 1, last: maxRangeSize - 1, firstAddr: "fd00::1", lastAddr: "fd00::f:ffff"},
		{cidr: "nonsense", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.cidr, func(t *testing.T) {
			r, err := parseRange(tt.cidr)
			if (err != nil) != tt.wantErr {
				t.Fatalf("parseRange(%q) error = %v, wantErr %v", tt.cidr, err, tt.wantErr)
			}
			if err != nil {
				return
			}
			got := []any{r.first, r.last, r.addr(r.first).String(), r.addr(r.last).String()}
			want := []any{tt.first, tt.last, tt.firstAddr, tt.lastAddr}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("range (-want +got):\n%s", diff)
			}
		})
	}
}

func TestRangeOffset(t *testing.T) {
	r, err := parseRange("10.96.0.0/16")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		ip     string
		offset uint64
		ok     bool
	}{
		{"10.96.0.1", 1, true},
		{"10.96.1.0", 256, true},
		{"10.96.255.254", 65534, true},
		{"10.96.0.0", 0, false},     // network
		{"10.96.255.255", 0, false}, // broadcast
		{"10.97.0.1", 0, false},
		{"fd00::1", 0, false},
		{"not-an-ip", 0, false},
	}
	for _, tt := range tests {
		off, ok := r.offset(tt.ip)
		if ok != tt.ok || (ok && off != tt.offset) {
			t.Errorf("offset(%s) = %d, %v; want %d, %v", tt.ip, off, ok, tt.offset, tt.ok)
		}
		if ok && r.addr(off).String() != tt.ip {
			t.Errorf("addr(offset(%s)) = %s", tt.ip, r.addr(off))
		}
	}
}
