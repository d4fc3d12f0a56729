package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// runCmd runs the root command with args, as main does, and returns its output and error.
func runCmd(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	root := newRootCmd()
	var out, errOut bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetArgs(args)
	err = root.Execute()
	return out.String(), errOut.String(), err
}

func TestInitThenValidate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "repo")
	out, _, err := runCmd(t, "init", dir)
	if err != nil {
		t.Fatalf("bosun init: %v", err)
	}
	for _, want := range []string{"bosun.yaml", "machines/example.yaml", "apps/web/deployment.yaml", "README.md", "bosun up --repo"} {
		if !strings.Contains(out, want) {
			t.Errorf("bosun init output lacks %q:\n%s", want, out)
		}
	}
	out, errOut, err := runCmd(t, "validate", dir)
	if err != nil {
		t.Fatalf("bosun validate: %v\n%s", err, errOut)
	}
	if diff := cmp.Diff("valid: 4 objects in 4 files\n", out); diff != "" {
		t.Errorf("stdout (-want +got):\n%s", diff)
	}
}

func TestValidateInvalid(t *testing.T) {
	dir := t.TempDir()
	bad := "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: Bad_Name\n---\napiVersion: v1\nkind: Gadget\nmetadata: {name: g}\n"
	if err := os.WriteFile(filepath.Join(dir, "bad.yaml"), []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	out, errOut, err := runCmd(t, "validate", dir)
	var ee exitError
	if !errors.As(err, &ee) || ee.code != 1 {
		t.Fatalf("err = %v, want exitError{1}", err)
	}
	if out != "" {
		t.Errorf("stdout = %q, want nothing", out)
	}
	lines := strings.Split(strings.TrimSpace(errOut), "\n")
	want := []string{
		`bad.yaml:4: metadata.name: Invalid value: "Bad_Name": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')`,
		`bad.yaml:7: kind: unknown kind "Gadget"; the repository may declare Cluster, ConfigMap, DaemonSet, Deployment, Machine, Namespace, Pod, ReplicaSet, ReplicationController, Secret, Service`,
		"invalid: 2 errors",
	}
	if diff := cmp.Diff(want, lines); diff != "" {
		t.Errorf("stderr (-want +got):\n%s", diff)
	}
}

func TestValidateMissingDir(t *testing.T) {
	_, _, err := runCmd(t, "validate", filepath.Join(t.TempDir(), "absent"))
	var ee exitError
	if err == nil || errors.As(err, &ee) {
		t.Fatalf("err = %v, want an I/O error (exit 1 through main)", err)
	}
}

func TestInitNonEmpty(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "x"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := runCmd(t, "init", dir); err == nil {
		t.Fatal("bosun init into a non-empty directory succeeded")
	}
}
