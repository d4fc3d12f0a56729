package replicaset

import (
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clocktesting "k8s.io/utils/clock/testing"
)

func TestSlowStartBatch(t *testing.T) {
	errRefused := errors.New("refused")
	tests := []struct {
		name        string
		count       int
		failAfter   int // writes beyond this many fail (-1: never)
		wantBatches []int
		wantOK      int
		wantErr     bool
	}{
		{"zero", 0, -1, nil, 0, false},
		{"one", 1, -1, []int{1}, 1, false},
		{"ten", 10, -1, []int{1, 2, 4, 3}, 10, false},
		{"exact power sums", 15, -1, []int{1, 2, 4, 8}, 15, false},
		{"first write fails", 10, 0, []int{1}, 0, true},
		{"fails inside the third batch", 10, 4, []int{1, 2, 4}, 4, true},
		{"fails at the last batch", 10, 9, []int{1, 2, 4, 3}, 9, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var batches []int
			done := 0
			ok, err := SlowStartBatch(tt.count, 1, func(n int) (int, error) {
				batches = append(batches, n)
				succeeded := 0
				var err error
				for range n {
					if tt.failAfter >= 0 && done >= tt.failAfter {
						err = errRefused
						continue
					}
					done++
					succeeded++
				}
				return succeeded, err
			})
			if diff := cmp.Diff(tt.wantBatches, batches); diff != "" {
				t.Errorf("batches (-want +got):\n%s", diff)
			}
			if ok != tt.wantOK || (err != nil) != tt.wantErr {
				t.Errorf("SlowStartBatch = %d, %v; want %d, error %v", ok, err, tt.wantOK, tt.wantErr)
			}
		})
	}
}

func TestExpectations(t *testing.T) {
	clk := clocktesting.NewFakeClock(time.Unix(1000, 0))
	e := newExpectations(clk)
	if !e.satisfied("ns/rs") {
		t.Fatal("no record must be satisfied")
	}
	e.expectCreations("ns/rs", 2)
	e.creationObserved("ns/rs", 1)
	if e.satisfied("ns/rs") {
		t.Fatal("satisfied with one creation outstanding")
	}
	e.creationObserved("ns/rs", 1)
	if !e.satisfied("ns/rs") {
		t.Fatal("not satisfied after all creations were observed")
	}
	e.expectDeletions("ns/rs", []string{"ns/a", "ns/b"})
	e.deletionObserved("ns/rs", "ns/a")
	e.deletionObserved("ns/rs", "ns/a") // twice: an update with deletionTimestamp, then the delete
	if e.satisfied("ns/rs") {
		t.Fatal("satisfied with one deletion outstanding")
	}
	clk.Step(expectationsTTL + time.Second)
	if !e.satisfied("ns/rs") {
		t.Fatal("expectations must expire")
	}
}

func TestSortForDeletion(t *testing.T) {
	t0 := time.Unix(10000, 0)
	pod := func(name, node string, phase corev1.PodPhase, readySince time.Duration, created time.Duration) *corev1.Pod {
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name, CreationTimestamp: metav1.NewTime(t0.Add(created))},
			Spec:       corev1.PodSpec{NodeName: node},
			Status:     corev1.PodStatus{Phase: phase},
		}
		if readySince > 0 {
			p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue,
				LastTransitionTime: metav1.NewTime(t0.Add(readySince))}}
		}
		return p
	}
	tests := []struct {
		name string
		pods []*corev1.Pod
		want []string
	}{
		{
			name: "kubernetes order",
			pods: []*corev1.Pod{
				pod("ready-old", "n1", corev1.PodRunning, time.Second, 0),
				pod("running-not-ready", "n2", corev1.PodRunning, 0, 0),
				pod("pending", "n3", corev1.PodPending, 0, 0),
				pod("unscheduled", "", corev1.PodPending, 0, 0),
				pod("unknown", "n4", corev1.PodUnknown, 0, 0),
				pod("ready-new", "n5", corev1.PodRunning, time.Hour, time.Minute),
			},
			want: []string{"unscheduled", "pending", "unknown", "running-not-ready", "ready-new", "ready-old"},
		},
		{
			name: "doubled up before alone, then newer first",
			pods: []*corev1.Pod{
				pod("alone", "n1", corev1.PodRunning, time.Second, time.Minute),
				pod("shared-a", "n2", corev1.PodRunning, time.Second, 0),
				pod("shared-b", "n2", corev1.PodRunning, time.Second, time.Second),
			},
			want: []string{"shared-b", "shared-a", "alone"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sortForDeletion(tt.pods)
			var got []string
			for _, p := range tt.pods {
				got = append(got, p.Name)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("order (-want +got):\n%s", diff)
			}
		})
	}
}
