package network

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containernetworking/cni/libcni"
	"github.com/google/go-cmp/cmp"

	"github.com/bosun-gitops/bosun/nodeagent/pods"
)

func pluginTypes(l *libcni.NetworkConfigList) []string {
	var out []string
	for _, p := range l.Plugins {
		out = append(out, p.Network.Type)
	}
	return out
}

func TestWithoutPlugin(t *testing.T) {
	data, err := Conflist(Config{PodCIDR: "10.250.0.0/24"})
	if err != nil {
		t.Fatal(err)
	}
	list, err := libcni.ConfListFromBytes(data)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		typ  string
		want []string
	}{
		{"portmap", []string{"bridge"}},
		{"bridge", []string{"portmap"}},
		{"none", []string{"bridge", "portmap"}},
	}
	for _, tt := range tests {
		got := withoutPlugin(list, tt.typ)
		if diff := cmp.Diff(tt.want, pluginTypes(got)); diff != "" {
			t.Errorf("without %s (-want +got):\n%s", tt.typ, diff)
		}
		if got.Name != list.Name || got.CNIVersion != list.CNIVersion {
			t.Errorf("without %s: name %q version %q", tt.typ, got.Name, got.CNIVersion)
		}
	}
	if diff := cmp.Diff([]string{"bridge", "portmap"}, pluginTypes(list)); diff != "" {
		t.Errorf("original list changed (-want +got):\n%s", diff)
	}
}

// TestPodWithoutHostPorts sets up a pod without hostPorts (ADD skips portmap) and tears it down
// with the whole list: nothing is left behind.
func TestPodWithoutHostPorts(t *testing.T) {
	nw, cfg := testNetwork(t)
	ctx := context.Background()
	pod := pods.PodRef{UID: "5d1e2f3a-noports-test", Namespace: "default", Name: "plain"}
	pn, err := nw.SetupPod(ctx, pod, nil)
	if err != nil {
		t.Fatalf("SetupPod: %v", err)
	}
	t.Cleanup(func() { _ = nw.TeardownPod(context.Background(), pod) })
	if pn.IP == "" || pn.NetnsPath != nw.NetnsPath(pod.UID) {
		t.Errorf("SetupPod = %+v", pn)
	}
	if err := nw.TeardownPod(ctx, pod); err != nil {
		t.Fatalf("TeardownPod: %v", err)
	}
	if _, err := os.Stat(pn.NetnsPath); !os.IsNotExist(err) {
		t.Errorf("netns pin left: %v", err)
	}
	if _, err := os.Stat(filepath.Join(cfg.DataDir, "ipam", NetworkName, pn.IP)); !os.IsNotExist(err) {
		t.Errorf("host-local allocation of %s left: %v", pn.IP, err)
	}
	for _, l := range strings.Split(iptablesSave(t), "\n") {
		if strings.Contains(l, pn.IP) || strings.Contains(l, pod.UID) {
			t.Errorf("iptables rule left: %s", l)
		}
	}
}
