package bootstrap

import (
	"context"
	"crypto/x509"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bosun-gitops/bosun/internal/pki"
)

// localShell runs the steps' commands on this machine, as a machine's root shell would.
type localShell struct{}

func (localShell) Run(ctx context.Context, cmd string, stdin io.Reader) ([]byte, error) {
	c := exec.CommandContext(ctx, "sh", "-c", cmd)
	c.Stdin = stdin
	return c.CombinedOutput()
}

// TestCredentialsStepUsesTheNodeServingCA: the credentials step installs a serving certificate
// from the node serving CA (CN system:node:<name>, the node's name and IP), never from the cluster
// CA, and replaces one from the cluster CA, as bootstraps installed before the node serving CA.
func TestCredentialsStepUsesTheNodeServingCA(t *testing.T) {
	ca, err := pki.NewCA("cluster")
	if err != nil {
		t.Fatal(err)
	}
	nodeCA, err := pki.NewCA("node-serving")
	if err != nil {
		t.Fatal(err)
	}
	layout := DefaultLayout()
	layout.DataDir = filepath.Join(t.TempDir(), "agent")
	r := &run{plan: Plan{NodeName: "db-1", NodeIP: "192.0.2.10", Layout: layout, CA: ca, NodeServingCA: nodeCA},
		remote: localShell{}, progress: nopProgress{}, step: StepCredentials}
	ctx := context.Background()

	if ok, err := checkCredentials(ctx, r); err != nil || ok {
		t.Fatalf("check on an empty machine: %v %v, want not ok", ok, err)
	}
	if err := applyCredentials(ctx, r); err != nil {
		t.Fatal(err)
	}
	if ok, err := checkCredentials(ctx, r); err != nil || !ok {
		t.Fatalf("check after the action: %v %v, want ok", ok, err)
	}
	serving := readPEMCert(t, filepath.Join(layout.PKIDir(), "serving.crt"))
	opts := x509.VerifyOptions{Roots: nodeCA.Pool(), DNSName: "192.0.2.10", KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	if _, err := serving.Verify(opts); err != nil {
		t.Errorf("serving.crt against the node serving CA: %v", err)
	}
	opts.Roots = ca.Pool()
	if _, err := serving.Verify(opts); err == nil {
		t.Error("serving.crt verifies against the cluster CA")
	}
	if serving.Subject.CommonName != "system:node:db-1" || serving.VerifyHostname("db-1") != nil {
		t.Errorf("serving.crt: CN %q, DNS names %v", serving.Subject.CommonName, serving.DNSNames)
	}
	client := readPEMCert(t, filepath.Join(layout.PKIDir(), "node.crt"))
	if _, err := client.Verify(x509.VerifyOptions{Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("node.crt against the cluster CA: %v", err)
	}

	// A serving certificate from the cluster CA (what bootstraps installed before) is replaced.
	old, _, err := ca.IssueNodeServing("db-1", []string{"db-1", "192.0.2.10"}, pki.CertValidity)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(layout.PKIDir(), "serving.crt"), old, 0o644); err != nil {
		t.Fatal(err)
	}
	var seen recordedProgress
	r.progress = &seen
	if ok, err := checkCredentials(ctx, r); err != nil || ok {
		t.Fatalf("check with a serving certificate from the cluster CA: %v %v, want not ok", ok, err)
	}
	if !strings.Contains(seen.String(), "serving.crt is not signed by the node serving CA") {
		t.Errorf("the check said %q, want it to name the serving certificate's CA", seen.String())
	}
}

type recordedProgress struct{ strings.Builder }

func (p *recordedProgress) Step(string) {}
func (p *recordedProgress) Output(_, what string, out []byte) {
	p.WriteString(what + ": " + string(out) + "\n")
}

func readPEMCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	c, err := pki.ReadCert(path)
	if err != nil {
		t.Fatal(err)
	}
	if time.Until(c.NotAfter) < 300*24*time.Hour {
		t.Errorf("%s expires %s", path, c.NotAfter)
	}
	return c
}
