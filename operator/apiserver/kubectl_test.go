package apiserver_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestKubectl drives the kubectl binary, when installed, against the server.
func TestKubectl(t *testing.T) {
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		t.Skip("kubectl not installed")
	}
	ts := startServer(t)
	ts.createNamespace(t, "default")
	manifest := filepath.Join(t.TempDir(), "cm.yaml")
	if err := os.WriteFile(manifest, []byte("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  a: \"1\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(kubectl, append([]string{"--kubeconfig", ts.srv.AdminKubeconfigPath(), "--cache-dir", t.TempDir()}, args...)...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	if out := run("get", "namespaces"); !strings.Contains(out, "default") {
		t.Errorf("get namespaces:\n%s", out)
	}
	// No OpenAPI documents are served, so client-side validation is off.
	run("apply", "--validate=false", "-f", manifest)
	if out := run("get", "configmap", "settings", "-o", "jsonpath={.data.a}"); out != "1" {
		t.Errorf("configmap data a = %q", out)
	}
	if err := os.WriteFile(manifest, []byte("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  a: \"2\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	run("apply", "--validate=false", "-f", manifest)
	if out := run("get", "cm", "settings", "-o", "jsonpath={.data.a}"); out != "2" {
		t.Errorf("after second apply, data a = %q", out)
	}
	run("label", "configmap", "settings", "tier=web")
	if out := run("get", "cm", "-l", "tier=web", "-o", "name"); strings.TrimSpace(out) != "configmap/settings" {
		t.Errorf("get by label:\n%s", out)
	}
	if out := run("api-resources"); !strings.Contains(out, "machines") || !strings.Contains(out, "deployments") {
		t.Errorf("api-resources:\n%s", out)
	}
	run("delete", "configmap", "settings")
	if out := run("get", "cm", "-o", "name"); strings.TrimSpace(out) != "" {
		t.Errorf("after delete:\n%s", out)
	}
}
