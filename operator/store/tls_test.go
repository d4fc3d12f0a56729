package store

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bosun-gitops/bosun/internal/pki"
	"github.com/bosun-gitops/bosun/internal/resource"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func writePEM(t *testing.T, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestConnectTLS runs etcd with client-certificate authentication, as an external etcd cluster
// is usually run, and connects the way --etcd-endpoints with --etcd-cafile/certfile/keyfile does.
func TestConnectTLS(t *testing.T) {
	dir := t.TempDir()
	ca, err := pki.NewCA("etcd-ca")
	if err != nil {
		t.Fatal(err)
	}
	srvCert, srvKey, err := ca.IssueServing([]string{"127.0.0.1", "localhost"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cliCert, cliKey, err := ca.IssueClient("bosun-operator", nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	caFile := writePEM(t, dir, "ca.crt", ca.CertPEM)
	server := &TLSFiles{CertFile: writePEM(t, dir, "server.crt", srvCert), KeyFile: writePEM(t, dir, "server.key", srvKey), CAFile: caFile}
	ctx := context.Background()
	// The member's own client authenticates with the serving pair; that is enough for the test.
	etcd, err := StartEtcd(ctx, EtcdConfig{Name: "tls", DataDir: filepath.Join(dir, "etcd"), ClientTLS: server})
	if err != nil {
		t.Fatal(err)
	}
	defer etcd.Close()
	ep := etcd.Endpoints()
	if !strings.HasPrefix(ep[0], "https://") {
		t.Fatalf("endpoint %s is not https", ep[0])
	}

	client, err := Connect(ctx, ClientConfig{Endpoints: ep, CAFile: caFile,
		CertFile: writePEM(t, dir, "client.crt", cliCert), KeyFile: writePEM(t, dir, "client.key", cliKey)})
	if err != nil {
		t.Fatalf("Connect with a client certificate: %v", err)
	}
	defer client.Close()
	st := New(client, Options{})
	if _, err := st.Create(ctx, resource.ConfigMaps, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "over-tls"}}); err != nil {
		t.Fatalf("write over TLS: %v", err)
	}

	// Without a client certificate, and with a CA that did not sign the server, Connect fails.
	if c, err := Connect(ctx, ClientConfig{Endpoints: ep, CAFile: caFile, DialTimeout: 2 * time.Second}); err == nil {
		c.Close()
		t.Error("Connect without a client certificate succeeded; etcd requires one")
	}
	other, _ := pki.NewCA("other")
	if c, err := Connect(ctx, ClientConfig{Endpoints: ep, CAFile: writePEM(t, dir, "other.crt", other.CertPEM),
		CertFile: filepath.Join(dir, "client.crt"), KeyFile: filepath.Join(dir, "client.key"), DialTimeout: 2 * time.Second}); err == nil {
		c.Close()
		t.Error("Connect trusting the wrong CA succeeded")
	}
}
