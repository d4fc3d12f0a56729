package nodeagent_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"os"
	"testing"
	"time"

	"github.com/bosun-gitops/bosun/internal/pki"
	"github.com/bosun-gitops/bosun/nodeagent"
	"github.com/bosun-gitops/bosun/nodeagent/node"
	"github.com/bosun-gitops/bosun/operator/store/storetest"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// joinNode joins node name as `bosun agent --token` does and returns its config, ready to run.
func (c *cluster) joinNode(t *testing.T, name string) nodeagent.Config {
	t.Helper()
	tok := c.token(t, "cred01", "0123456789abcdef", time.Now().Add(time.Hour))
	cfg, err := nodeagent.Join(context.Background(), nodeagent.JoinOptions{Server: c.srv.URL(), Token: tok, NodeName: name,
		NodeIP: "127.0.0.1", DataDir: t.TempDir(), CACertHash: c.caHash})
	if err != nil {
		t.Fatalf("Join: %v", err)
	}
	cfg.Listen, cfg.DebugListen, cfg.Logger = "127.0.0.1:0", "-", storetest.Logger(t)
	return cfg
}

// runAgent runs an agent without pod workers until the test ends and waits until it is ready.
func runAgent(t *testing.T, cfg nodeagent.Config, renewal time.Duration) *nodeagent.Agent {
	t.Helper()
	agent, err := nodeagent.New(cfg, nodeagent.Deps{
		RuntimeVersion:  func(context.Context) (string, error) { return "containerd://1.6.20", nil },
		Registrar:       func(nc *node.Config) { nc.LeaseInterval = 200 * time.Millisecond },
		RenewalInterval: renewal,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- agent.Run(ctx) }()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("agent Run: %v", err)
		}
	})
	select {
	case <-agent.Ready():
	case err := <-done:
		t.Fatalf("agent ended before ready: %v", err)
	case <-time.After(time.Minute):
		t.Fatal("agent not ready")
	}
	return agent
}

// signAged signs pub as ca would, but issued long ago: it expires in expiresIn, and most of its
// validity has passed.
func signAged(t *testing.T, ca *pki.CA, pub any, subject pkix.Name, usage x509.ExtKeyUsage, ips []string, expiresIn time.Duration) []byte {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      subject,
		NotBefore:    time.Now().Add(-300 * 24 * time.Hour),
		NotAfter:     time.Now().Add(expiresIn),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{usage},
	}
	for _, ip := range ips {
		tmpl.IPAddresses = append(tmpl.IPAddresses, net.ParseIP(ip))
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, pub, ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	return pki.EncodeCert(der)
}

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	c, err := pki.ReadCert(path)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// presented is the certificate the agent's logs endpoint presents.
func presented(t *testing.T, agent *nodeagent.Agent, roots *x509.CertPool) *x509.Certificate {
	t.Helper()
	conn, err := tls.Dial("tcp", agent.ListenAddr().String(), &tls.Config{RootCAs: roots, ServerName: "127.0.0.1"})
	if err != nil {
		t.Fatalf("dialing the logs endpoint: %v", err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0]
}

func verifies(c *x509.Certificate, roots *x509.CertPool) bool {
	_, err := c.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	return err == nil
}

// TestAgentReplacesServingCertificateFromTheClusterCA: a node that joined before the node serving
// CA existed holds a serving certificate from the cluster CA; its agent replaces it at start, and
// the operator's log proxy reads logs through the new one.
func TestAgentReplacesServingCertificateFromTheClusterCA(t *testing.T) {
	c := startCluster(t)
	cfg := c.joinNode(t, "node-a")
	// What the join endpoint issued before: the same subject and names, from the cluster CA.
	oldCert, oldKey, err := c.srv.CA().IssueNodeServing("node-a", []string{"node-a", "127.0.0.1"}, pki.CertValidity)
	if err != nil {
		t.Fatal(err)
	}
	if err := pki.WriteFile(cfg.ServingKeyFile, oldKey, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := pki.WriteFile(cfg.ServingCertFile, oldCert, 0o644); err != nil {
		t.Fatal(err)
	}

	agent := runAgent(t, cfg, 0)
	stored := readCert(t, cfg.ServingCertFile)
	if !verifies(stored, c.srv.NodeServingCA().Pool()) || verifies(stored, c.srv.CA().Pool()) {
		t.Errorf("serving.crt after start is from %q, want the node serving CA", stored.Issuer.CommonName)
	}
	if got := presented(t, agent, c.srv.NodeServingCA().Pool()); !got.Equal(stored) {
		t.Error("the logs endpoint does not present the new serving certificate")
	}
	if st, err := os.Stat(cfg.ServingKeyFile); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("serving.key: %v, want mode 0600", err)
	}

	// The operator's log proxy reads a log through the new certificate.
	ctx := context.Background()
	pod, err := c.admin.CoreV1().Pods("default").Create(ctx, testPod("p", "node-a", "c"), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	writeLog(t, cfg.DataDir, pod.UID, "c", 0, "hello\n")
	waitFor(t, "the agent to see the pod", func() bool { return len(agent.Pods()) == 1 })
	b, err := c.admin.CoreV1().Pods("default").GetLogs("p", &corev1.PodLogOptions{}).DoRaw(ctx)
	if err != nil || string(b) != "hello\n" {
		t.Errorf("logs through the API: %q, %v", b, err)
	}
}

// TestAgentRenewsItsCertificates: the agent renews its client certificate (keeping its key) and
// its serving certificate once less than a third of their validity remains, at start and while
// it runs.
func TestAgentRenewsItsCertificates(t *testing.T) {
	c := startCluster(t)
	cfg := c.joinNode(t, "node-a")
	keyBefore, err := os.ReadFile(cfg.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	key, err := pki.ParseKey(keyBefore)
	if err != nil {
		t.Fatal(err)
	}
	nodeSubject := pkix.Name{CommonName: "system:node:node-a", Organization: []string{"system:nodes"}}
	ageClientCert := func() {
		t.Helper()
		aged := signAged(t, c.srv.CA(), key.Public(), nodeSubject, x509.ExtKeyUsageClientAuth, nil, 10*24*time.Hour)
		if err := pki.WriteFile(cfg.CertFile, aged, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	renewed := func(c *x509.Certificate) bool { return time.Until(c.NotAfter) > 300*24*time.Hour }
	ageClientCert()

	agent := runAgent(t, cfg, 100*time.Millisecond)
	client := readCert(t, cfg.CertFile)
	if !renewed(client) {
		t.Errorf("node.crt after start expires %s, want renewed", client.NotAfter)
	}
	if client.Subject.CommonName != "system:node:node-a" || !verifiesClient(client, c.srv.CA().Pool()) {
		t.Errorf("renewed node.crt: CN %q from %q", client.Subject.CommonName, client.Issuer.CommonName)
	}
	if keyAfter, _ := os.ReadFile(cfg.KeyFile); !bytes.Equal(keyAfter, keyBefore) {
		t.Error("node.key changed: the renewal keeps the key")
	}
	if _, err := tls.LoadX509KeyPair(cfg.CertFile, cfg.KeyFile); err != nil {
		t.Errorf("node.crt and node.key: %v", err)
	}

	// While it runs.
	ageClientCert()
	servingKey, err := pki.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	servingKeyPEM, _ := pki.EncodeKey(servingKey)
	agedServing := signAged(t, c.srv.NodeServingCA(), servingKey.Public(), nodeSubject, x509.ExtKeyUsageServerAuth, []string{"127.0.0.1"}, 10*24*time.Hour)
	if err := pki.WriteFile(cfg.ServingKeyFile, servingKeyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := pki.WriteFile(cfg.ServingCertFile, agedServing, 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "node.crt renewed while running", func() bool { return renewed(readCert(t, cfg.CertFile)) })
	waitFor(t, "serving.crt renewed while running", func() bool { return renewed(readCert(t, cfg.ServingCertFile)) })
	waitFor(t, "the logs endpoint presenting the renewed certificate", func() bool {
		return renewed(presented(t, agent, c.srv.NodeServingCA().Pool()))
	})
	// The agent still talks to the API with the renewed client certificate.
	if _, err := c.admin.CoreV1().Pods("default").Create(context.Background(), testPod("after", "node-a", "c"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the agent to see a new pod", func() bool { return len(agent.Pods()) == 1 })
}

func verifiesClient(c *x509.Certificate, roots *x509.CertPool) bool {
	_, err := c.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	return err == nil
}
