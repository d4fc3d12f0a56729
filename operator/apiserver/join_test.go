package apiserver_test

import (
	"bytes"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bosun-gitops/bosun/internal/pki"
	"github.com/bosun-gitops/bosun/operator/apiserver"
	"github.com/bosun-gitops/bosun/operator/store/storetest"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
)

const joinPath = "/apis/bosun.dev/v1alpha1/join"

// bootstrapToken stores a bootstrap token as `bosun token create` does and returns it.
func (ts *testServer) bootstrapToken(t *testing.T) string {
	t.Helper()
	ts.createNamespace(t, "kube-system")
	id, secret := "abcdef", "0123456789abcdef"
	_, err := ts.client.CoreV1().Secrets("kube-system").Create(testCtx(t), &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "bootstrap-token-" + id},
		Type:       "bootstrap.kubernetes.io/token",
		Data: map[string][]byte{"token-id": []byte(id), "token-secret": []byte(secret),
			"usage-bootstrap-authentication": []byte("true"),
			"expiration":                     []byte(time.Now().Add(time.Hour).UTC().Format(time.RFC3339))},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return id + "." + secret
}

// joinRequest is what an agent sends: a client CSR for node, and a serving CSR for the names.
func joinRequest(t *testing.T, node string, names ...string) apiserver.JoinRequest {
	t.Helper()
	clientCSR, _, err := pki.NewCSR("system:node:"+node, []string{"system:nodes"})
	if err != nil {
		t.Fatal(err)
	}
	key, err := pki.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.CertificateRequest{Subject: pkix.Name{CommonName: "system:node:" + node}}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	return apiserver.JoinRequest{NodeName: node, CSR: string(clientCSR),
		ServingCSR: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))}
}

// joinOverTLS posts req to the join endpoint as an agent does (from this machine).
func (ts *testServer) joinOverTLS(t *testing.T, token string, req apiserver.JoinRequest) apiserver.JoinResponse {
	t.Helper()
	tlsCfg, err := rest.TLSConfigFor(&rest.Config{TLSClientConfig: rest.TLSClientConfig{CAData: ts.config.CAData}})
	if err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(req)
	hreq, _ := http.NewRequestWithContext(testCtx(t), http.MethodPost, ts.srv.URL()+joinPath, bytes.NewReader(body))
	hreq.Header.Set("Authorization", "Bearer "+token)
	resp, err := (&http.Client{Transport: &http.Transport{TLSClientConfig: tlsCfg}}).Do(hreq)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out apiserver.JoinResponse
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&out) != nil {
		t.Fatalf("join: %s", resp.Status)
	}
	return out
}

// joinFrom posts req to the server's handler as if it came from the peer address remote: the
// rules for a node's names depend on whether it is the operator's own machine, and every real
// connection in a test is.
func (ts *testServer) joinFrom(t *testing.T, remote, token string, req apiserver.JoinRequest) *httptest.ResponseRecorder {
	t.Helper()
	body, _ := json.Marshal(req)
	hreq := httptest.NewRequestWithContext(testCtx(t), http.MethodPost, joinPath, bytes.NewReader(body))
	hreq.RemoteAddr = remote
	hreq.Header.Set("Authorization", "Bearer "+token)
	rec := httptest.NewRecorder()
	ts.srv.Handler().ServeHTTP(rec, hreq)
	return rec
}

// TestJoinServingCertificateIsFromTheNodeServingCA: a joined node's serving certificate verifies
// against the node serving CA and not against the cluster CA that the API's clients trust, so it
// can never pass for the API server's; its client certificate is the other way round.
func TestJoinServingCertificateIsFromTheNodeServingCA(t *testing.T) {
	ts := startServer(t)
	token := ts.bootstrapToken(t)
	resp := ts.joinOverTLS(t, token, joinRequest(t, "n1", "n1", "10.1.2.3"))

	serving, err := pki.ParseCert([]byte(resp.ServingCertificate))
	if err != nil {
		t.Fatal(err)
	}
	if serving.Subject.CommonName != "system:node:n1" {
		t.Errorf("serving certificate CN %q, want system:node:n1", serving.Subject.CommonName)
	}
	apiClients := x509.NewCertPool() // what client-go trusts: the admin kubeconfig's CA data
	if !apiClients.AppendCertsFromPEM(ts.config.CAData) {
		t.Fatal("admin kubeconfig holds no CA")
	}
	for _, tc := range []struct {
		name   string
		cert   *x509.Certificate
		usage  x509.ExtKeyUsage
		roots  *x509.CertPool
		wantOK bool
	}{
		{"serving against the node serving CA", serving, x509.ExtKeyUsageServerAuth, ts.srv.NodeServingCA().Pool(), true},
		{"serving against the cluster CA", serving, x509.ExtKeyUsageServerAuth, ts.srv.CA().Pool(), false},
		{"serving against the admin kubeconfig's CA", serving, x509.ExtKeyUsageServerAuth, apiClients, false},
		{"client against the cluster CA", mustParse(t, resp.Certificate), x509.ExtKeyUsageClientAuth, ts.srv.CA().Pool(), true},
		{"client against the node serving CA", mustParse(t, resp.Certificate), x509.ExtKeyUsageClientAuth, ts.srv.NodeServingCA().Pool(), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.cert.Verify(x509.VerifyOptions{Roots: tc.roots, KeyUsages: []x509.ExtKeyUsage{tc.usage}})
			if (err == nil) != tc.wantOK {
				t.Errorf("Verify: %v, want ok=%v", err, tc.wantOK)
			}
		})
	}
	if err := serving.VerifyHostname("10.1.2.3"); err != nil {
		t.Error(err)
	}
	if resp.CA != string(ts.srv.CA().CertPEM) {
		t.Error("the join response's CA is not the cluster CA")
	}

	// The node serving CA lives beside the cluster CA and survives a restart.
	for name, want := range map[string]os.FileMode{"node-serving-ca.crt": 0o644, "node-serving-ca.key": 0o600} {
		info, err := os.Stat(filepath.Join(ts.dataDir, "pki", name))
		if err != nil {
			t.Fatal(err)
		}
		if info.Mode().Perm() != want {
			t.Errorf("pki/%s mode %v, want %v", name, info.Mode().Perm(), want)
		}
	}
	ts2 := startServerOn(t, ts.store, ts.dataDir)
	if !ts2.srv.NodeServingCA().Cert.Equal(ts.srv.NodeServingCA().Cert) {
		t.Error("a restart created a new node serving CA")
	}
}

func mustParse(t *testing.T, certPEM string) *x509.Certificate {
	t.Helper()
	c, err := pki.ParseCert([]byte(certPEM))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestJoinChecksServingNames: a node's serving certificate names the node only. Nodes elsewhere
// may not name the API server's names and addresses or loopback; the agent on the operator's own
// machine (bosun up) shares them and may.
func TestJoinChecksServingNames(t *testing.T) {
	ts := startServerWith(t, storetest.NewStore(t), t.TempDir(), func(c *apiserver.Config) {
		c.ServerNames = []string{"api.example.com", "192.0.2.100"}
	})
	token := ts.bootstrapToken(t)
	const (
		remote = "192.0.2.7:40000" // TEST-NET-1: no address of this machine
		local  = "127.0.0.1:40000"
	)
	for _, tc := range []struct {
		name    string
		from    string
		node    string
		names   []string
		wantErr string // "" = signed
	}{
		{"the node's name and address", remote, "n1", []string{"n1", "n1.example.com", "10.1.2.3"}, ""},
		{"wildcard", remote, "n1", []string{"*.n1.example.com"}, "wildcard names are not allowed"},
		{"wildcard from the operator's machine", local, "n1", []string{"*"}, "wildcard names are not allowed"},
		{"another node's name", remote, "n1", []string{"n2"}, `DNS name "n2" is not node n1's`},
		{"the API server's name", remote, "api", []string{"api.example.com"}, `DNS name "api.example.com" is the API server's`},
		{"the API server's address", remote, "n1", []string{"n1", "192.0.2.100"}, "IP address 192.0.2.100 is the API server's"},
		{"loopback", remote, "n1", []string{"n1", "127.0.0.1"}, "IP address 127.0.0.1 is a loopback address"},
		{"IPv6 loopback", remote, "n1", []string{"::1"}, "IP address ::1 is a loopback address"},
		{"unspecified", remote, "n1", []string{"0.0.0.0"}, "IP address 0.0.0.0 cannot be a node's address"},
		{"loopback from the operator's machine", local, "n1", []string{"n1", "127.0.0.1"}, ""},
		{"the API server's address from the operator's machine", local, "n1", []string{"n1", "192.0.2.100"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := ts.joinFrom(t, tc.from, token, joinRequest(t, tc.node, tc.names...))
			if tc.wantErr == "" {
				if rec.Code != http.StatusOK {
					t.Fatalf("join: %d %s, want 200", rec.Code, rec.Body)
				}
				var resp apiserver.JoinResponse
				if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil {
					t.Fatal(err)
				}
				if _, err := mustParse(t, resp.ServingCertificate).Verify(x509.VerifyOptions{Roots: ts.srv.NodeServingCA().Pool()}); err != nil {
					t.Errorf("serving certificate: %v", err)
				}
				return
			}
			var st metav1.Status
			if err := json.Unmarshal(rec.Body.Bytes(), &st); err != nil {
				t.Fatalf("join: %d %s: %v", rec.Code, rec.Body, err)
			}
			if rec.Code != http.StatusBadRequest || !strings.HasPrefix(st.Message, "servingCSR: ") || !strings.Contains(st.Message, tc.wantErr) {
				t.Errorf("join: %d %q, want 400 with %q", rec.Code, st.Message, tc.wantErr)
			}
		})
	}
}

// stubAgent is an HTTPS endpoint standing in for an agent's logs endpoint, presenting whatever
// certificate the test sets and requiring the operator's client certificate as agents do.
type stubAgent struct {
	addr *net.TCPAddr
	cert chan *tls.Certificate
}

func startStubAgent(t *testing.T, clusterCA *x509.CertPool) *stubAgent {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := &stubAgent{addr: ln.Addr().(*net.TCPAddr), cert: make(chan *tls.Certificate, 1)}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.TLS.PeerCertificates[0].Subject.CommonName != apiserver.OperatorClientUser {
				http.Error(w, "not the operator", http.StatusForbidden)
				return
			}
			w.Write([]byte("a log line\n"))
		}),
		TLSConfig: &tls.Config{
			ClientAuth: tls.RequireAndVerifyClientCert,
			ClientCAs:  clusterCA,
			GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
				c := <-a.cert
				a.cert <- c
				return c, nil
			},
		},
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          log.New(io.Discard, "", 0), // the refused handshakes are the test
	}
	go srv.ServeTLS(ln, "", "")
	t.Cleanup(func() { srv.Close() })
	return a
}

// startLogNode starts a stub agent for node n1 (InternalIP 127.0.0.1, its port published as the
// kubelet endpoint) and creates pod a/p bound to n1.
func startLogNode(t *testing.T, ts *testServer) *stubAgent {
	t.Helper()
	ctx := testCtx(t)
	ts.createNamespace(t, "a")
	agent := startStubAgent(t, ts.srv.CA().Pool())
	node, err := ts.client.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	node.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "127.0.0.1"}}
	node.Status.DaemonEndpoints.KubeletEndpoint.Port = int32(agent.addr.Port)
	if _, err := ts.client.CoreV1().Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := ts.client.CoreV1().Pods("a").Create(ctx, testPod("p", "n1", nil), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return agent
}

func (a *stubAgent) present(t *testing.T, certPEM, keyPEM []byte) {
	t.Helper()
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-a.cert:
	default:
	}
	a.cert <- &pair
}

// TestPodLogsProxyChecksTheNodesCertificate: the log proxy reads logs only from an endpoint whose
// certificate is node n1's (CN system:node:n1, its InternalIP) from the node serving CA — or, for
// agents that have not replaced it yet, from the cluster CA that signed serving certificates
// before the node serving CA existed. Anything else is refused before a request is sent.
func TestPodLogsProxyChecksTheNodesCertificate(t *testing.T) {
	ts := startServer(t)
	ctx := testCtx(t)
	agent := startLogNode(t, ts)
	otherCA, err := pki.NewCA("someone-else")
	if err != nil {
		t.Fatal(err)
	}
	issue := func(ca *pki.CA, node string, names ...string) func() ([]byte, []byte, error) {
		return func() ([]byte, []byte, error) { return ca.IssueNodeServing(node, names, time.Hour) }
	}
	for _, tc := range []struct {
		name    string
		issue   func() ([]byte, []byte, error)
		wantErr string // "" = the log is read
	}{
		{"node serving CA", issue(ts.srv.NodeServingCA(), "n1", "n1", "127.0.0.1"), ""},
		{"cluster CA, before the node serving CA", issue(ts.srv.CA(), "n1", "n1", "127.0.0.1"), ""},
		{"another node's certificate", issue(ts.srv.NodeServingCA(), "n2", "n2", "127.0.0.1"),
			`the agent presented a certificate for "system:node:n2", not "system:node:n1"`},
		{"another node's certificate from the cluster CA", issue(ts.srv.CA(), "n2", "n2", "127.0.0.1"),
			`not "system:node:n1"`},
		{"not for the node's address", issue(ts.srv.NodeServingCA(), "n1", "n1", "10.1.2.3"), "certificate is valid for 10.1.2.3, not 127.0.0.1"},
		{"the API server's kind of certificate", func() ([]byte, []byte, error) {
			return ts.srv.CA().IssueServing([]string{"localhost", "127.0.0.1"}, time.Hour)
		}, `the agent presented a certificate for "localhost"`},
		{"an unknown CA", issue(otherCA, "n1", "n1", "127.0.0.1"), "unknown authority"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			certPEM, keyPEM, err := tc.issue()
			if err != nil {
				t.Fatal(err)
			}
			agent.present(t, certPEM, keyPEM)
			b, err := ts.client.CoreV1().Pods("a").GetLogs("p", &corev1.PodLogOptions{}).DoRaw(ctx)
			if tc.wantErr == "" {
				if err != nil || string(b) != "a log line\n" {
					t.Fatalf("logs: %q, %v; want the agent's line", b, err)
				}
				return
			}
			// DoRaw's error is the status code; the body says why.
			var st metav1.Status
			if err == nil || json.Unmarshal(b, &st) != nil || !strings.Contains(st.Message, tc.wantErr) {
				t.Errorf("logs: %q, %v; want an error with %q", b, err, tc.wantErr)
			}
		})
	}
}
