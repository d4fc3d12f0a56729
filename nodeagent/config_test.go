package nodeagent

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

func TestConfigValidate(t *testing.T) {
	good := Config{Server: "https://127.0.0.1:6443", CAFile: "ca", CertFile: "c", KeyFile: "k", NodeName: "n1", DataDir: "/d",
		Listen: ":10250", DebugListen: "127.0.0.1:10248"}
	for _, tc := range []struct {
		name string
		edit func(*Config)
		want string
	}{
		{"valid", func(*Config) {}, ""},
		{"no server", func(c *Config) { c.Server = "" }, "server is required"},
		{"bad node name", func(c *Config) { c.NodeName = "Bad_Name" }, `nodeName "Bad_Name"`},
		{"debug not loopback", func(c *Config) { c.DebugListen = "0.0.0.0:1" }, "debugListen"},
		{"bad taint", func(c *Config) { c.Taints = []corev1.Taint{{Key: "k", Effect: "Never"}} }, "taints[0].effect"},
		{"half serving pair", func(c *Config) { c.ServingCertFile = "x" }, "servingCertFile and servingKeyFile"},
		{"nftables proxy", func(c *Config) { c.ProxyMode = "nftables" }, ""},
		{"iptables proxy", func(c *Config) { c.ProxyMode = "iptables" }, ""},
		{"unknown proxy mode", func(c *Config) { c.ProxyMode = "ipvs" }, `proxyMode "ipvs": must be "iptables" (the default) or "nftables"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := good
			tc.edit(&c)
			err := c.Validate()
			if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Errorf("Validate() = %v, want %q", err, tc.want)
			}
		})
	}
}
