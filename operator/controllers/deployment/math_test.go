package deployment

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"
)

func rolling(replicas int32, surge, unavailable intstr.IntOrString) *appsv1.Deployment {
	return &appsv1.Deployment{Spec: appsv1.DeploymentSpec{Replicas: ptr.To(replicas), Strategy: appsv1.DeploymentStrategy{
		Type:          appsv1.RollingUpdateDeploymentStrategyType,
		RollingUpdate: &appsv1.RollingUpdateDeployment{MaxSurge: &surge, MaxUnavailable: &unavailable}}}}
}

func TestResolveFenceposts(t *testing.T) {
	pct := intstr.FromString
	num := intstr.FromInt32
	tests := []struct {
		name                       string
		surge, unavailable         intstr.IntOrString
		desired                    int32
		wantSurge, wantUnavailable int32
	}{
		{"defaults of 10", pct("25%"), pct("25%"), 10, 3, 2}, // surge rounds up, unavailable down
		{"defaults of 1", pct("25%"), pct("25%"), 1, 1, 0},   // 0.25 -> surge 1, unavailable 0
		{"defaults of 4", pct("25%"), pct("25%"), 4, 1, 1},
		{"both zero", num(0), num(0), 5, 0, 1}, // never both 0
		{"both zero percent", pct("0%"), pct("0%"), 5, 0, 1},
		{"numbers", num(2), num(1), 5, 2, 1},
		{"small percent of many", pct("1%"), pct("1%"), 150, 2, 1},
		{"zero replicas", pct("25%"), pct("25%"), 0, 0, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, u, err := ResolveFenceposts(&tt.surge, &tt.unavailable, tt.desired)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff([2]int32{tt.wantSurge, tt.wantUnavailable}, [2]int32{s, u}); diff != "" {
				t.Errorf("(surge, unavailable) (-want +got):\n%s", diff)
			}
		})
	}
}

func TestMaxUnavailableCappedAtReplicas(t *testing.T) {
	d := rolling(2, intstr.FromInt32(1), intstr.FromInt32(5))
	if got := MaxUnavailable(d); got != 2 {
		t.Fatalf("MaxUnavailable = %d, want 2", got)
	}
	d.Spec.Strategy = appsv1.DeploymentStrategy{Type: appsv1.RecreateDeploymentStrategyType}
	if MaxUnavailable(d) != 0 || MaxSurge(d) != 0 {
		t.Fatal("Recreate has no surge and no unavailability budget")
	}
}

func TestRollingArithmetic(t *testing.T) {
	d := rolling(10, intstr.FromString("25%"), intstr.FromString("25%")) // surge 3, unavailable 2
	tests := []struct {
		name          string
		old, newRS    rsState
		wantNewSize   int32
		wantMaxDown   int32
		wantDownQuota int32
	}{
		{
			name: "start: new RS surges by 3", old: rsState{Spec: 10, Pods: 10, Available: 10}, newRS: rsState{},
			wantNewSize: 3, wantMaxDown: 2, wantDownQuota: 2,
		},
		{
			name: "surge used up, new pods not ready", old: rsState{Spec: 10, Pods: 10, Available: 10}, newRS: rsState{Spec: 3, Pods: 3},
			wantNewSize: 3, wantMaxDown: 13 - 8 - 3, wantDownQuota: 2,
		},
		{
			name: "old scaled down, its pods not yet deleted: no growth", old: rsState{Spec: 8, Pods: 10, Available: 8}, newRS: rsState{Spec: 3, Pods: 3},
			wantNewSize: 3, wantMaxDown: 11 - 8 - 3, wantDownQuota: 0,
		},
		{
			name: "old pods gone: new grows to the surge", old: rsState{Spec: 8, Pods: 8, Available: 8}, newRS: rsState{Spec: 3, Pods: 3, Available: 3},
			wantNewSize: 5, wantMaxDown: 11 - 8, wantDownQuota: 3,
		},
		{
			name: "new complete", old: rsState{}, newRS: rsState{Spec: 10, Pods: 10, Available: 10},
			wantNewSize: 10, wantMaxDown: 2, wantDownQuota: 2,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			all := []rsState{tt.old, tt.newRS}
			got := [3]int32{NewRSNewReplicas(d, all, tt.newRS), MaxScaledDown(d, all, tt.newRS), ScaleDownBudget(d, all)}
			want := [3]int32{tt.wantNewSize, tt.wantMaxDown, tt.wantDownQuota}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("(new size, max scaled down, scale-down budget) (-want +got):\n%s", diff)
			}
		})
	}
}

func TestProportion(t *testing.T) {
	// 10 -> 20 replicas mid-rollout with surge 3 (annotated max 13): an RS of 8 gets its share.
	d := rolling(20, intstr.FromString("25%"), intstr.FromString("25%")) // surge 5 -> target 25
	tests := []struct {
		name               string
		size, annotated    int32
		toAdd, added, want int32
	}{
		{"share of growth", 8, 13, 12, 0, 7},          // round(8*25/13)=15 -> +7
		{"bounded by what is left", 8, 13, 12, 10, 2}, // only 2 left
		{"empty RS gets nothing", 0, 13, 12, 0, 0},
		{"nothing to add", 8, 13, 0, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := proportion(tt.size, tt.annotated, d, tt.toAdd, tt.added); got != tt.want {
				t.Errorf("proportion = %d, want %d", got, tt.want)
			}
		})
	}
	d0 := rolling(0, intstr.FromString("25%"), intstr.FromString("25%"))
	if got := proportion(8, 13, d0, -8, 0); got != -8 {
		t.Errorf("scaling to 0: proportion = %d, want -8", got)
	}
}

func TestComputeHash(t *testing.T) {
	tmpl := &corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "nginx:1"}}}}
	h := ComputeHash(tmpl, nil)
	if h != ComputeHash(tmpl.DeepCopy(), nil) {
		t.Fatal("hash is not deterministic")
	}
	if h == ComputeHash(tmpl, ptr.To[int32](1)) {
		t.Fatal("collisionCount must change the hash")
	}
	other := tmpl.DeepCopy()
	other.Spec.Containers[0].Image = "nginx:2"
	if h == ComputeHash(other, nil) {
		t.Fatal("a different template must hash differently")
	}
	for _, r := range h {
		if r == 'a' || r == 'e' || r == 'i' || r == 'o' || r == 'u' || r == '0' || r == '1' || r == '3' {
			t.Fatalf("hash %q has characters SafeEncodeString never produces", h)
		}
	}
	withHash := tmpl.DeepCopy()
	withHash.Labels[appsv1.DefaultDeploymentUniqueLabelKey] = h
	if !EqualIgnoreHash(tmpl, withHash) || EqualIgnoreHash(tmpl, other) {
		t.Fatal("EqualIgnoreHash")
	}
}

func TestMaxReplicasBeforeScale(t *testing.T) {
	d := rolling(10, intstr.FromInt32(2), intstr.FromInt32(0))
	d.Status.Replicas = 7
	for _, tc := range []struct {
		name        string
		annotations map[string]string
		want        int32
	}{
		{"annotated", map[string]string{MaxReplicasAnnotation: "12"}, 12},
		{"missing: status.replicas", nil, 7},
		{"not a number: status.replicas", map[string]string{MaxReplicasAnnotation: "twelve"}, 7},
		{"zero: status.replicas", map[string]string{MaxReplicasAnnotation: "0"}, 7},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rs := &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Annotations: tc.annotations}}
			if got := maxReplicasBeforeScale(rs, d); got != tc.want {
				t.Errorf("maxReplicasBeforeScale = %d, want %d", got, tc.want)
			}
		})
	}
	// A ReplicaSet of 4 of a Deployment that had 7 pods grows to 4*12/7 ≈ 7 when the annotation
	// says 0; without the fallback it would not grow at all.
	rs := &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{MaxReplicasAnnotation: "0"}}}
	if got := proportion(4, maxReplicasBeforeScale(rs, d), d, 5, 0); got != 3 {
		t.Errorf("proportion with a zeroed annotation = %d, want 3", got)
	}
}

func TestStatusUnavailableReplicas(t *testing.T) {
	rs := func(spec, available int32) *appsv1.ReplicaSet {
		return &appsv1.ReplicaSet{Spec: appsv1.ReplicaSetSpec{Replicas: ptr.To(spec)},
			Status: appsv1.ReplicaSetStatus{Replicas: spec, AvailableReplicas: available}}
	}
	for _, tc := range []struct {
		name string
		rss  []*appsv1.ReplicaSet
		want int32
	}{
		// Mid-rollout with surge: 3 + 2 pods wanted, 3 available.
		{"all replica sets' spec", []*appsv1.ReplicaSet{rs(3, 1), rs(2, 2), nil}, 2},
		// Scaled down to 1 while 3 are still available: never negative.
		{"scale-down", []*appsv1.ReplicaSet{rs(1, 3)}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := rolling(3, intstr.FromInt32(2), intstr.FromInt32(0))
			s := &syncer{dc: &Controller{clock: clock.RealClock{}}, d: d}
			if got := s.calculateStatus(tc.rss, nil).UnavailableReplicas; got != tc.want {
				t.Errorf("unavailableReplicas = %d, want %d", got, tc.want)
			}
		})
	}
}
