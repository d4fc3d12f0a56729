package bootstrap

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/bosun-gitops/bosun/nodeagent"
	corev1 "k8s.io/api/core/v1"
)

// TestAgentConfigLoadsInTheAgent keeps AgentConfig in step with nodeagent.Config: the file the
// bootstrap writes must load with the agent's strict decoder, field for field.
func TestAgentConfigLoadsInTheAgent(t *testing.T) {
	l := DefaultLayout()
	in := AgentConfig{
		Server: "https://192.0.2.1:6443", NodeName: "db-1", NodeIP: "192.0.2.10",
		ClusterCIDR: "10.244.0.0/16", ClusterDomain: "cluster.local",
		Labels:    map[string]string{"disk": "ssd"},
		Taints:    []corev1.Taint{{Key: "dedicated", Value: "db", Effect: corev1.TaintEffectNoSchedule}},
		Registry:  RegistryConfig{PlainHTTP: []string{"192.0.2.5:5000"}, Mirrors: map[string][]string{"docker.io": {"http://192.0.2.5:5000"}}},
		ProxyMode: "nftables",
	}
	data, err := in.render(l)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "agent.yaml")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := nodeagent.LoadConfig(path)
	if err != nil {
		t.Fatalf("the agent refuses the bootstrap's config: %v\n%s", err, data)
	}
	if got.Server != in.Server || got.NodeName != in.NodeName || got.NodeIP != in.NodeIP ||
		got.DataDir != l.DataDir || got.CAFile != l.PKIDir()+"/ca.crt" || got.ServingKeyFile != l.PKIDir()+"/serving.key" ||
		got.ClusterCIDR != in.ClusterCIDR || got.Labels["disk"] != "ssd" || len(got.Taints) != 1 ||
		len(got.Registry.PlainHTTP) != 1 || len(got.Registry.Mirrors["docker.io"]) != 1 || got.ProxyMode != in.ProxyMode {
		t.Errorf("the agent read %+v from\n%s", got, data)
	}
}
