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
		{"log rotation settings", func(c *Config) { c.ContainerLogMaxSize, c.ContainerLogMaxFiles = "50Mi", 3 }, ""},
		{"bad log size", func(c *Config) { c.ContainerLogMaxSize = "ten megs" }, `containerLogMaxSize "ten megs": give a size such as 10Mi`},
		{"one log file", func(c *Config) { c.ContainerLogMaxFiles = 1 }, "containerLogMaxFiles 1: keep at least 2 files"},
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
