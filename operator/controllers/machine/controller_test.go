package machine

import (
	"testing"

	bosunv1 "github.com/bosun-gitops/bosun/repo-layout/v1alpha1"
	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestStaleCache: after a job wrote a machine's status, an older cached copy must not start
// another job; the copy with the written version (or newer) may.
func TestStaleCache(t *testing.T) {
	mc := &Controller{written: map[string]int64{}}
	at := func(rv string) *bosunv1.Machine {
		return &bosunv1.Machine{ObjectMeta: metav1.ObjectMeta{Name: "m1", ResourceVersion: rv}}
	}
	var got []bool
	got = append(got, mc.staleCacheLocked(at("5"))) // nothing written yet
	mc.noteWritten(at("10"))
	got = append(got, mc.staleCacheLocked(at("9")), mc.staleCacheLocked(at("10")), mc.staleCacheLocked(at("9")))
	mc.noteWritten(at("20"))
	got = append(got, mc.staleCacheLocked(at("25")), mc.staleCacheLocked(at("11")))
	want := []bool{false, true, false, false, false, false}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("staleCacheLocked (-want +got):\n%s", diff)
	}
}

func TestReason(t *testing.T) {
	for _, tc := range []struct{ step, want string }{
		{"wait-ready", "WaitReady"}, {"probe", "Probe"}, {"", ""},
	} {
		if got := reason(tc.step); got != tc.want {
			t.Errorf("reason(%q) = %q, want %q", tc.step, got, tc.want)
		}
	}
}
