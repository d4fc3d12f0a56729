package endpoints

import (
	"testing"

	"k8s.io/apimachinery/pkg/labels"
)

// TestSelectsMatchesLabelSelector: selects agrees with the selector apimachinery builds from a
// Service's selector.
func TestSelectsMatchesLabelSelector(t *testing.T) {
	sets := []map[string]string{
		nil,
		{},
		{"app": "web"},
		{"app": "web", "tier": "backend"},
		{"app": "api"},
		{"app": ""},
		{"tier": "backend"},
		{"app": "web", "tier": "frontend", "extra": "x"},
	}
	for _, selector := range sets[2:] { // a Service without a selector selects nothing and is skipped earlier
		for _, pod := range sets {
			want := labels.SelectorFromValidatedSet(selector).Matches(labels.Set(pod))
			if got := selects(selector, pod); got != want {
				t.Errorf("selects(%v, %v) = %v, want %v", selector, pod, got, want)
			}
		}
	}
}
