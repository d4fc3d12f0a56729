package nodeagent

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/bosun-gitops/bosun/internal/pki"
)

// Paths of the join protocol served by the operator (operator/apiserver/join.go).
const (
	joinPath      = "/apis/bosun.dev/v1alpha1/join"
	clusterCAPath = "/apis/bosun.dev/v1alpha1/cluster-ca"
)

// ErrNoCAPin is returned by Join without a CA hash pin and without InsecureSkipCAVerification.
var ErrNoCAPin = errors.New("refusing to trust the server's CA without a pin: pass --ca-cert-hash sha256:<hex> " +
	"(printed by `bosun token create`), or --insecure-skip-ca-verification to trust whatever CA answers")

// JoinOptions are the inputs of the join flow (`bosun agent --server URL --token TOKEN`).
type JoinOptions struct {
	Server   string
	Token    string
	NodeName string
	DataDir  string
	// NodeIP is the node's InternalIP for the serving certificate; empty = detected.
	NodeIP string
	// CACertHash pins the cluster CA: "sha256:<hex of SHA-256 over its SubjectPublicKeyInfo>".
	CACertHash string
	// InsecureSkipCAVerification trusts the first CA the server presents (no pin).
	InsecureSkipCAVerification bool
	// Template holds the other Config fields (labels, taints, registry, listeners) to write.
	Template Config
}

// joinRequest and joinResponse are the wire format of the join endpoint.
type joinRequest struct {
	NodeName   string `json:"nodeName"`
	CSR        string `json:"csr"`
	ServingCSR string `json:"servingCSR,omitempty"`
}

type joinResponse struct {
	Certificate        string `json:"certificate"`
	ServingCertificate string `json:"servingCertificate,omitempty"`
	CA                 string `json:"ca"`
}

// CACertHash is the kubeadm-style pin of a CA certificate.
func CACertHash(c *x509.Certificate) string {
	sum := sha256.Sum256(c.RawSubjectPublicKeyInfo)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// Join obtains the node's credentials with a bootstrap token and writes them with the config to
// DataDir (pki/ca.crt, pki/node.crt, pki/node.key, pki/serving.crt, pki/serving.key,
// agent.yaml; keys 0600). It returns the written config; later starts use it without a token.
func Join(ctx context.Context, o JoinOptions) (Config, error) {
	if o.Server == "" || o.Token == "" {
		return Config{}, errors.New("joining needs --server and --token")
	}
	cfg := o.Template
	cfg.Server = strings.TrimRight(o.Server, "/")
	cfg.NodeName = o.NodeName
	cfg.DataDir = o.DataDir
	cfg.NodeIP = o.NodeIP
	cfg.SetDefaults()
	if cfg.NodeName == "" {
		return Config{}, errors.New("joining: no node name: pass --node-name")
	}
	u, err := url.Parse(cfg.Server)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return Config{}, fmt.Errorf("joining: --server %q must be an https:// URL", o.Server)
	}
	caPEM, err := discoverCA(ctx, cfg.Server, o.CACertHash, o.InsecureSkipCAVerification)
	if err != nil {
		return Config{}, err
	}
	if cfg.NodeIP == "" {
		if cfg.NodeIP, err = detectNodeIP(u.Host); err != nil {
			return Config{}, err
		}
	}
	csrPEM, keyPEM, err := pki.NewCSR("system:node:"+cfg.NodeName, []string{"system:nodes"})
	if err != nil {
		return Config{}, err
	}
	servingCSR, servingKey, err := newServingCSR(cfg.NodeName, cfg.NodeIP)
	if err != nil {
		return Config{}, err
	}
	resp, err := postJoin(ctx, cfg.Server, caPEM, o.Token, joinRequest{NodeName: cfg.NodeName, CSR: string(csrPEM), ServingCSR: string(servingCSR)})
	if err != nil {
		return Config{}, err
	}
	if !bytes.Equal(bytes.TrimSpace([]byte(resp.CA)), bytes.TrimSpace(caPEM)) {
		return Config{}, errors.New("joining: the server answered with a different CA than it presented")
	}
	dir := filepath.Join(cfg.DataDir, "pki")
	cfg.CAFile = filepath.Join(dir, "ca.crt")
	cfg.CertFile = filepath.Join(dir, "node.crt")
	cfg.KeyFile = filepath.Join(dir, "node.key")
	cfg.ServingCertFile = filepath.Join(dir, "serving.crt")
	cfg.ServingKeyFile = filepath.Join(dir, "serving.key")
	for _, f := range []struct {
		path string
		data []byte
		mode os.FileMode
	}{
		{cfg.CAFile, caPEM, 0o644},
		{cfg.KeyFile, keyPEM, 0o600},
		{cfg.CertFile, []byte(resp.Certificate), 0o644},
		{cfg.ServingKeyFile, servingKey, 0o600},
		{cfg.ServingCertFile, []byte(resp.ServingCertificate), 0o644},
	} {
		if err := pki.WriteFile(f.path, f.data, f.mode); err != nil {
			return Config{}, err
		}
	}
	if err := WriteConfig(filepath.Join(cfg.DataDir, ConfigFileName), cfg); err != nil {
		return Config{}, err
	}
	cfg.Logger = o.Template.Logger
	return cfg, nil
}

// discoverCA fetches the cluster CA without verifying TLS and checks it against the pin.
func discoverCA(ctx context.Context, server, pin string, insecure bool) ([]byte, error) {
	if pin == "" && !insecure {
		return nil, ErrNoCAPin
	}
	if pin != "" && !strings.HasPrefix(pin, "sha256:") {
		return nil, fmt.Errorf("--ca-cert-hash %q: must be sha256:<hex>", pin)
	}
	c := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12}, //nolint:gosec // checked against the pin below
	}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, server+clusterCAPath, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetching the cluster CA from %s: %w", server, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetching the cluster CA from %s: %s", server, resp.Status)
	}
	var body struct {
		CA string `json:"ca"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&body); err != nil {
		return nil, fmt.Errorf("fetching the cluster CA from %s: %w", server, err)
	}
	ca, err := pki.ParseCert([]byte(body.CA))
	if err != nil {
		return nil, fmt.Errorf("the cluster CA from %s: %w", server, err)
	}
	if pin != "" {
		got := CACertHash(ca)
		if subtle.ConstantTimeCompare([]byte(strings.ToLower(pin)), []byte(got)) != 1 {
			return nil, fmt.Errorf("the server's CA has hash %s, not the pinned %s: wrong server, or a man in the middle", got, pin)
		}
	}
	return []byte(body.CA), nil
}

func postJoin(ctx context.Context, server string, caPEM []byte, token string, jr joinRequest) (*joinResponse, error) {
	return postJoinTLS(ctx, server, caPEM, token, nil, jr)
}

func postJoinTLS(ctx context.Context, server string, caPEM []byte, token string, cert *tls.Certificate, jr joinRequest) (*joinResponse, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, errors.New("joining: unusable CA certificate")
	}
	tlsCfg := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	if cert != nil {
		tlsCfg.Certificates = []tls.Certificate{*cert}
	}
	c := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsCfg}}
	body, err := json.Marshal(jr)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, server+joinPath, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, fmt.Errorf("joining %s: %w", server, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("joining %s: %w", server, err)
	}
	if resp.StatusCode != http.StatusOK {
		var st struct {
			Message string `json:"message"`
		}
		msg := strings.TrimSpace(string(data))
		if json.Unmarshal(data, &st) == nil && st.Message != "" {
			msg = st.Message
		}
		return nil, fmt.Errorf("joining %s: %s: %s", server, resp.Status, msg)
	}
	var out joinResponse
	if err := json.Unmarshal(data, &out); err != nil {
		return nil, fmt.Errorf("joining %s: decoding the answer: %w", server, err)
	}
	if out.Certificate == "" || out.CA == "" {
		return nil, fmt.Errorf("joining %s: the answer holds no certificate", server)
	}
	return &out, nil
}

// newServingCSR asks for the agent's serving certificate: the node IP and name as SANs.
func newServingCSR(nodeName, nodeIP string) (csrPEM, keyPEM []byte, err error) {
	key, err := pki.NewKey()
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.CertificateRequest{
		Subject:  pkix.Name{CommonName: "system:node:" + nodeName, Organization: []string{"system:nodes"}},
		DNSNames: []string{nodeName},
	}
	if ip := net.ParseIP(nodeIP); ip != nil {
		tmpl.IPAddresses = []net.IP{ip}
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		return nil, nil, fmt.Errorf("creating serving CSR: %w", err)
	}
	keyPEM, err = pki.EncodeKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), keyPEM, nil
}

// detectNodeIP is the local address the kernel picks to reach the server (no packet is sent).
func detectNodeIP(hostport string) (string, error) {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		host, port = hostport, "443"
	}
	c, err := net.Dial("udp", net.JoinHostPort(host, port))
	if err != nil {
		return "", fmt.Errorf("finding the node IP (the local address that reaches %s): %w; pass --node-ip", host, err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).IP.String(), nil
}

// renewWithClientCert calls the join endpoint authenticated with the node's client certificate
// (renewal of the node's certificates).
func renewWithClientCert(ctx context.Context, cfg Config, jr joinRequest) (*joinResponse, error) {
	caPEM, err := os.ReadFile(cfg.CAFile)
	if err != nil {
		return nil, fmt.Errorf("reading caFile: %w", err)
	}
	pair, err := tls.LoadX509KeyPair(cfg.CertFile, cfg.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("loading the node's client certificate: %w", err)
	}
	return postJoinTLS(ctx, cfg.Server, caPEM, "", &pair, jr)
}

func parseURL(server string) (string, error) {
	u, err := url.Parse(server)
	if err != nil {
		return "", err
	}
	return u.Host, nil
}
