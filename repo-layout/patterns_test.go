package repolayout

import (
	"fmt"
	"sort"
	"testing"

	"github.com/google/go-cmp/cmp"
	"go.yaml.in/yaml/v3"
)

// TestPatternSet matches overlapping patterns in one walk: every pattern reports every value it
// names, with the concrete path, as if it were matched alone.
func TestPatternSet(t *testing.T) {
	var doc map[string]any
	if err := yaml.Unmarshal([]byte(`
spec:
  containers:
  - name: a
    ports: [{containerPort: 80, protocol: TCP}, {containerPort: 53, protocol: SCTP}]
    resources: {limits: {cpu: 1, example.com/gpu: 2}}
  - name: b
  volumes: [{name: v, emptyDir: {medium: Memory}}]
  "[*]": odd
metadata:
  labels: {app: web, tier: db}
`), &doc); err != nil {
		t.Fatal(err)
	}
	patterns := []string{
		"spec.containers[*].ports[*].protocol",
		"spec.containers[*].resources.limits.*",
		"spec.containers[*].name",
		"spec.containers[*]",
		"spec.volumes[*]",
		"spec.volumes[*].emptyDir.medium",
		"spec.[*]",
		"metadata.labels.*",
		"metadata.labels.app",
		"metadata.missing.*",
		"spec.containers.name", // a list is not an object
		"spec.*",
	}
	var got []string
	newPatternSet(patterns).match(doc, func(i int, p string, v any) {
		got = append(got, fmt.Sprintf("%d %s", i, p))
	})
	sort.Strings(got)
	want := []string{
		"0 spec.containers[0].ports[0].protocol",
		"0 spec.containers[0].ports[1].protocol",
		"1 spec.containers[0].resources.limits[cpu]",
		"1 spec.containers[0].resources.limits[example.com/gpu]",
		"11 spec[[*]]",
		"11 spec[containers]",
		"11 spec[volumes]",
		"2 spec.containers[0].name",
		"2 spec.containers[1].name",
		"3 spec.containers[0]",
		"3 spec.containers[1]",
		"4 spec.volumes[0]",
		"5 spec.volumes[0].emptyDir.medium",
		"6 spec[[*]]",
		"7 metadata.labels[app]",
		"7 metadata.labels[tier]",
		"8 metadata.labels.app",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("matches (-want +got):\n%s", diff)
	}

	// Each pattern alone finds the same.
	var alone []string
	for i, p := range patterns {
		matchPaths(doc, p, func(path string, v any) { alone = append(alone, fmt.Sprintf("%d %s", i, path)) })
	}
	sort.Strings(alone)
	if diff := cmp.Diff(got, alone); diff != "" {
		t.Errorf("patterns matched alone (-together +alone):\n%s", diff)
	}
}
