package daemonset

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

func TestRollingUpdateMath(t *testing.T) {
	oldA := func(n string) []podState { return []podState{{Name: n + "-old", Available: true}} }
	oldU := func(n string) []podState { return []podState{{Name: n + "-old"}} }
	newA := func(n string) []podState { return []podState{{Name: n + "-new", Updated: true, Available: true}} }
	newU := func(n string) []podState { return []podState{{Name: n + "-new", Updated: true}} }
	both := func(n string, newAvail bool) []podState {
		return []podState{{Name: n + "-old", Available: true}, {Name: n + "-new", Updated: true, Available: newAvail}}
	}
	tests := []struct {
		name                    string
		nodes                   map[string][]podState
		surge, unavail          int
		wantDeletes, wantCreate []string
	}{
		{name: "one at a time", nodes: map[string][]podState{"a": oldA("a"), "b": oldA("b"), "c": oldA("c")}, unavail: 1,
			wantDeletes: []string{"a-old"}},
		{name: "two at a time", nodes: map[string][]podState{"a": oldA("a"), "b": oldA("b"), "c": oldA("c")}, unavail: 2,
			wantDeletes: []string{"a-old", "b-old"}},
		{name: "waits for the new pod to be available", nodes: map[string][]podState{"a": newU("a"), "b": oldA("b")}, unavail: 1},
		{name: "continues once available", nodes: map[string][]podState{"a": newA("a"), "b": oldA("b")}, unavail: 1,
			wantDeletes: []string{"b-old"}},
		{name: "unavailable old pods go at once", nodes: map[string][]podState{"a": newU("a"), "b": oldU("b"), "c": oldA("c")}, unavail: 1,
			wantDeletes: []string{"b-old"}},
		{name: "node without pod counts as unavailable", nodes: map[string][]podState{"a": nil, "b": oldA("b")}, unavail: 1},
		{name: "done", nodes: map[string][]podState{"a": newA("a"), "b": newA("b")}, unavail: 1},
		{name: "surge one", nodes: map[string][]podState{"a": oldA("a"), "b": oldA("b")}, surge: 1,
			wantCreate: []string{"a"}},
		{name: "surge waits for availability", nodes: map[string][]podState{"a": both("a", false), "b": oldA("b")}, surge: 1},
		{name: "surge deletes the old pod once the new one is available", nodes: map[string][]podState{"a": both("a", true), "b": oldA("b")}, surge: 1,
			wantDeletes: []string{"a-old"}, wantCreate: []string{"b"}},
		{name: "surge replaces unavailable old pods at once", nodes: map[string][]podState{"a": both("a", false), "b": oldU("b"), "c": oldA("c")}, surge: 1,
			wantCreate: []string{"b"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			deletes, creates := rollingUpdate(tt.nodes, tt.surge, tt.unavail)
			if diff := cmp.Diff(tt.wantDeletes, deletes, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("deletes (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantCreate, creates, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("creates (-want +got):\n%s", diff)
			}
		})
	}
}

func TestUpdateBudget(t *testing.T) {
	pct := func(s string) *intstr.IntOrString { v := intstr.FromString(s); return &v }
	num := func(i int32) *intstr.IntOrString { v := intstr.FromInt32(i); return &v }
	tests := []struct {
		name                string
		ru                  *appsv1.RollingUpdateDaemonSet
		desired             int
		wantSurge, wantUnav int
	}{
		{"defaults", nil, 10, 0, 1},
		{"percent rounds up", &appsv1.RollingUpdateDaemonSet{MaxUnavailable: pct("25%")}, 10, 0, 3},
		{"surge only", &appsv1.RollingUpdateDaemonSet{MaxUnavailable: num(0), MaxSurge: num(2)}, 10, 2, 0},
		{"both zero", &appsv1.RollingUpdateDaemonSet{MaxUnavailable: num(0), MaxSurge: num(0)}, 10, 0, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ds := &appsv1.DaemonSet{Spec: appsv1.DaemonSetSpec{UpdateStrategy: appsv1.DaemonSetUpdateStrategy{RollingUpdate: tt.ru}}}
			s, u, err := updateBudget(ds, tt.desired)
			if err != nil || s != tt.wantSurge || u != tt.wantUnav {
				t.Fatalf("updateBudget = %d, %d, %v; want %d, %d", s, u, err, tt.wantSurge, tt.wantUnav)
			}
		})
	}
}
