package bootstrap

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// AgentConfig is the part of the agent's configuration file (nodeagent.Config, `bosun agent
// --config`) that the bootstrap writes. Field names match nodeagent's; the package does not import
// nodeagent, which pulls in containerd.
type AgentConfig struct {
	Server          string            `json:"server"`
	CAFile          string            `json:"caFile"`
	CertFile        string            `json:"certFile"`
	KeyFile         string            `json:"keyFile"`
	ServingCertFile string            `json:"servingCertFile,omitempty"`
	ServingKeyFile  string            `json:"servingKeyFile,omitempty"`
	NodeName        string            `json:"nodeName"`
	NodeIP          string            `json:"nodeIP,omitempty"`
	DataDir         string            `json:"dataDir"`
	ClusterCIDR     string            `json:"clusterCIDR,omitempty"`
	ClusterDomain   string            `json:"clusterDomain,omitempty"`
	Labels          map[string]string `json:"labels,omitempty"`
	Taints          []corev1.Taint    `json:"taints,omitempty"`
	Registry        RegistryConfig    `json:"registry,omitempty"`
	ProxyMode       string            `json:"proxyMode,omitempty"`
}

// RegistryConfig is nodeagent.RegistryConfig.
type RegistryConfig struct {
	Mirrors   map[string][]string `json:"mirrors,omitempty"`
	PlainHTTP []string            `json:"plainHTTP,omitempty"`
}

// render fills the paths from the layout and encodes the file (deterministically: map keys sorted).
func (c AgentConfig) render(l Layout) ([]byte, error) {
	pki := l.PKIDir()
	c.CAFile, c.CertFile, c.KeyFile = pki+"/ca.crt", pki+"/node.crt", pki+"/node.key"
	c.ServingCertFile, c.ServingKeyFile = pki+"/serving.crt", pki+"/serving.key"
	c.DataDir = l.DataDir
	b, err := yaml.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("encoding agent config: %w", err)
	}
	return append([]byte("# Written by the Bosun operator; changes are overwritten at the next bootstrap.\n"), b...), nil
}
