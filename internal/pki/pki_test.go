package pki

import (
	"crypto/x509"
	"os"
	"path/filepath"
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
