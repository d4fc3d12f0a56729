package repolayout

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/bosun-gitops/bosun/nodeagent/node"
)

// TestNodeMonitorGracePeriodMinimum refuses grace periods that a healthy node's lease renewals
// cannot keep up with, at the line that sets them.
func TestNodeMonitorGracePeriodMinimum(t *testing.T) {
	const msg = "must be at least 20s: agents renew their node lease every 10s, so a shorter grace period marks healthy nodes NotReady; the default is 40s"
	tests := []struct {
		value string
		want  []string
	}{
		{"40s", nil},
		{"20s", nil},
		{"5m", nil},
		{"19.9s", []string{`bosun.yaml:6: spec.nodeMonitorGracePeriod: Invalid value: "19.9s": ` + msg}},
		{"10s", []string{`bosun.yaml:6: spec.nodeMonitorGracePeriod: Invalid value: "10s": ` + msg}},
		{"3s", []string{`bosun.yaml:6: spec.nodeMonitorGracePeriod: Invalid value: "3s": ` + msg}},
		{"0s", []string{`bosun.yaml:6: spec.nodeMonitorGracePeriod: Invalid value: "0s": ` + msg}},
		{"-1m", []string{`bosun.yaml:6: spec.nodeMonitorGracePeriod: Invalid value: "-1m0s": ` + msg}},
	}
	for _, tt := range tests {
		t.Run(tt.value, func(t *testing.T) {
			dir := writeTree(t, map[string]string{"bosun.yaml": "apiVersion: bosun.dev/v1alpha1\nkind: Cluster\nmetadata: {name: c}\nspec:\n" +
				"  podEvictionTimeout: 5m\n  nodeMonitorGracePeriod: " + tt.value + "\n"})
			_, err := LoadDir(dir)
			if diff := cmp.Diff(tt.want, errorLines(t, err)); diff != "" {
				t.Errorf("errors (-want +got):\n%s", diff)
			}
		})
	}
}

// TestNodeLeaseRenewIntervalIsTheAgents keeps the minimum tied to what agents really do.
func TestNodeLeaseRenewIntervalIsTheAgents(t *testing.T) {
	if NodeLeaseRenewInterval != node.DefaultLeaseInterval {
		t.Fatalf("NodeLeaseRenewInterval = %s, but agents renew every %s (nodeagent/node.DefaultLeaseInterval)", NodeLeaseRenewInterval, node.DefaultLeaseInterval)
	}
}
