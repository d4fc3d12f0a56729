package pki

import (
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestLoadOrCreateCAReusesFiles(t *testing.T) {
	dir := t.TempDir()
	ca1, err := LoadOrCreateCA(dir, "test-ca")
	if err != nil {
		t.Fatal(err)
	}
	ca2, err := LoadOrCreateCA(dir, "test-ca")
	if err != nil {
		t.Fatal(err)
	}
	if !ca1.Cert.Equal(ca2.Cert) {
		t.Error("second load created a new CA")
	}
	for name, want := range map[string]os.FileMode{"ca.key": 0o600, "ca.crt": 0o644} {
		info, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if info.Mode().Perm() != want {
			t.Errorf("%s mode %v, want %v", name, info.Mode().Perm(), want)
		}
	}
	if err := os.Remove(filepath.Join(dir, "ca.key")); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreateCA(dir, "test-ca"); err == nil {
		t.Error("a CA without its key loaded without error")
	}
}

func TestIssuedCertificatesVerify(t *testing.T) {
	ca, err := NewCA("test-ca")
	if err != nil {
		t.Fatal(err)
	}
	other, err := NewCA("other")
	if err != nil {
		t.Fatal(err)
	}
	servingPEM, _, err := ca.IssueServing([]string{"localhost", "127.0.0.1", "api.example"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	clientPEM, _, err := ca.IssueClient("system:node:n1", []string{"system:nodes"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	csrPEM, _, err := NewCSR("system:node:n2", []string{"system:nodes"})
	if err != nil {
		t.Fatal(err)
	}
	signedPEM, err := ca.SignCSR(csrPEM, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	nodeServingPEM, _, err := ca.IssueNodeServing("n3", []string{"n3", "10.0.0.3"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		certPEM []byte
		usage   x509.ExtKeyUsage
		host    string
		wantCN  string
		wantO   []string
	}{
		{"serving", servingPEM, x509.ExtKeyUsageServerAuth, "127.0.0.1", "localhost", nil},
		{"client", clientPEM, x509.ExtKeyUsageClientAuth, "", "system:node:n1", []string{"system:nodes"}},
		{"signed CSR", signedPEM, x509.ExtKeyUsageClientAuth, "", "system:node:n2", []string{"system:nodes"}},
		{"node serving", nodeServingPEM, x509.ExtKeyUsageServerAuth, "10.0.0.3", "system:node:n3", []string{"system:nodes"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := ParseCert(tc.certPEM)
			if err != nil {
				t.Fatal(err)
			}
			opts := x509.VerifyOptions{Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{tc.usage}, DNSName: tc.host}
			if _, err := c.Verify(opts); err != nil {
				t.Errorf("verify against CA: %v", err)
			}
			opts.Roots = other.Pool()
			if _, err := c.Verify(opts); err == nil {
				t.Error("verified against an unrelated CA")
			}
			if c.Subject.CommonName != tc.wantCN {
				t.Errorf("CN %q, want %q", c.Subject.CommonName, tc.wantCN)
			}
			if diff := cmp.Diff(tc.wantO, c.Subject.Organization); diff != "" {
				t.Errorf("O (-want +got):\n%s", diff)
			}
		})
	}
	if _, err := ca.SignCSR([]byte("garbage"), time.Hour); err == nil {
		t.Error("signed garbage")
	}
}

func TestLoadOrIssueServingReissuesWhenNamesChange(t *testing.T) {
	dir := t.TempDir()
	ca, err := LoadOrCreateCA(dir, "test-ca")
	if err != nil {
		t.Fatal(err)
	}
	first, err := ca.LoadOrIssueServing(dir, "srv", []string{"localhost", "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	same, err := ca.LoadOrIssueServing(dir, "srv", []string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	if string(first.Certificate[0]) != string(same.Certificate[0]) {
		t.Error("reissued although the names were covered")
	}
	more, err := ca.LoadOrIssueServing(dir, "srv", []string{"localhost", "127.0.0.1", "10.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	if string(first.Certificate[0]) == string(more.Certificate[0]) {
		t.Error("not reissued for a new name")
	}
	info, err := os.Stat(filepath.Join(dir, "srv.key"))
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Errorf("srv.key: %v mode %v", err, info.Mode().Perm())
	}
}

// TestNamedCAsAreSeparate: two CAs in one directory keep their own files (the operator's cluster
// CA and node serving CA), with the modes of LoadOrCreateCA.
func TestNamedCAsAreSeparate(t *testing.T) {
	dir := t.TempDir()
	cluster, err := LoadOrCreateCA(dir, "cluster")
	if err != nil {
		t.Fatal(err)
	}
	node, err := LoadOrCreateNamedCA(dir, "node-serving-ca", "node-serving")
	if err != nil {
		t.Fatal(err)
	}
	if cluster.Cert.Equal(node.Cert) {
		t.Fatal("the named CA is the cluster CA")
	}
	again, err := LoadOrCreateNamedCA(dir, "node-serving-ca", "node-serving")
	if err != nil {
		t.Fatal(err)
	}
	if !again.Cert.Equal(node.Cert) {
		t.Error("second load created a new named CA")
	}
	for name, want := range map[string]os.FileMode{"ca.key": 0o600, "ca.crt": 0o644, "node-serving-ca.key": 0o600, "node-serving-ca.crt": 0o644} {
		info, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if info.Mode().Perm() != want {
			t.Errorf("%s mode %v, want %v", name, info.Mode().Perm(), want)
		}
	}
	if err := os.Remove(filepath.Join(dir, "node-serving-ca.crt")); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreateNamedCA(dir, "node-serving-ca", "node-serving"); err == nil || !strings.Contains(err.Error(), "node-serving-ca.crt and node-serving-ca.key") {
		t.Errorf("a named CA without its certificate: %v, want an error naming its files", err)
	}
}

func TestRenewalDue(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name                string
		notBefore, notAfter time.Time
		want                bool
	}{
		{"fresh", now.Add(-time.Hour), now.Add(365 * 24 * time.Hour), false},
		{"two thirds left", now.Add(-120 * 24 * time.Hour), now.Add(245 * 24 * time.Hour), false},
		{"less than a third left", now.Add(-250 * 24 * time.Hour), now.Add(115 * 24 * time.Hour), true},
		{"expired", now.Add(-400 * 24 * time.Hour), now.Add(-time.Hour), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &x509.Certificate{NotBefore: tc.notBefore, NotAfter: tc.notAfter}
			if got := RenewalDue(c, now); got != tc.want {
				t.Errorf("RenewalDue = %v, want %v", got, tc.want)
			}
		})
	}
}
