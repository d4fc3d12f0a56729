package apiserver

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/bosun-gitops/bosun/internal/pki"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation"
)

// The join protocol (`bosun agent --server URL --token TOKEN`):
//
//  1. GET  /apis/bosun.dev/v1alpha1/cluster-ca (anonymous) → {"ca": PEM}. The agent fetches it
//     without verifying TLS and compares "sha256:<hex of SHA-256 over the CA's
//     SubjectPublicKeyInfo>" (kubeadm's --discovery-token-ca-cert-hash) with its --ca-cert-hash;
//     from then on it verifies the server with that CA.
//  2. POST /apis/bosun.dev/v1alpha1/join with "Authorization: Bearer <bootstrap token>" and
//     JoinRequest → JoinResponse. The client CSR must ask for CN system:node:<nodeName>,
//     O system:nodes; it is signed as a client certificate. The optional serving CSR (IP and DNS
//     SANs of the node) is signed as the agent's HTTPS serving certificate (logs endpoint).
//
// A node already holding its client certificate may call the join endpoint again, for its own
// name only, to renew both certificates (for example when its address changed).
const (
	joinPath      = "/apis/bosun.dev/v1alpha1/join"
	clusterCAPath = "/apis/bosun.dev/v1alpha1/cluster-ca"
	// maxJoinBody bounds the request: two CSRs are a few KiB.
	maxJoinBody = 64 << 10
	// maxServingNames bounds the SANs a node may ask for.
	maxServingNames = 32
)

// JoinRequest is the body of POST /apis/bosun.dev/v1alpha1/join.
type JoinRequest struct {
	NodeName string `json:"nodeName"`
	// CSR is a PEM certificate request for CN=system:node:<nodeName>, O=system:nodes.
	CSR string `json:"csr"`
	// ServingCSR is an optional PEM certificate request whose IP addresses and DNS names become
	// the SANs of the node's serving certificate.
	ServingCSR string `json:"servingCSR,omitempty"`
}

// JoinResponse is the answer to a JoinRequest.
type JoinResponse struct {
	Certificate        string `json:"certificate"`
	ServingCertificate string `json:"servingCertificate,omitempty"`
	CA                 string `json:"ca"`
}

// ClusterCA is the body of GET /apis/bosun.dev/v1alpha1/cluster-ca.
type ClusterCA struct {
	CA string `json:"ca"`
}

// CACertHash is the pin of a CA certificate as kubeadm writes it: "sha256:<hex>" over its
// SubjectPublicKeyInfo.
func CACertHash(c *x509.Certificate) string {
	sum := sha256.Sum256(c.RawSubjectPublicKeyInfo)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// serveJoinPaths serves the join protocol's paths; it returns the caller's identity for the
// access log, and false when the path is not one of them.
func (s *Server) serveJoinPaths(w http.ResponseWriter, r *http.Request) (*userInfo, bool) {
	switch r.URL.Path {
	case clusterCAPath:
		if r.Method != http.MethodGet {
			writeError(w, apierrors.NewMethodNotSupported(joinGR(), r.Method))
			return anonymousUser, true
		}
		writeJSON(w, http.StatusOK, ClusterCA{CA: string(s.ca.CertPEM)})
		return anonymousUser, true
	case joinPath:
		return s.serveJoin(w, r), true
	}
	return nil, false
}

func (s *Server) serveJoin(w http.ResponseWriter, r *http.Request) *userInfo {
	if r.Method != http.MethodPost {
		writeError(w, apierrors.NewMethodNotSupported(joinGR(), r.Method))
		return anonymousUser
	}
	u, err := s.authenticateJoin(r)
	if err != nil {
		writeError(w, apierrors.NewUnauthorized(err.Error()))
		return anonymousUser
	}
	var req JoinRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, maxJoinBody)).Decode(&req); err != nil {
		writeError(w, apierrors.NewBadRequest(fmt.Sprintf("decoding join request: %v", err)))
		return u
	}
	if errs := validation.IsDNS1123Subdomain(req.NodeName); len(errs) > 0 {
		writeError(w, apierrors.NewBadRequest(fmt.Sprintf("nodeName %q: %s", req.NodeName, strings.Join(errs, "; "))))
		return u
	}
	if node, ok := u.nodeName(); ok && !u.inGroup(groupMasters) && node != req.NodeName {
		writeError(w, apierrors.NewForbidden(joinGR(), req.NodeName,
			fmt.Errorf("node %q may only renew its own certificates", node)))
		return u
	}
	resp, err := s.signJoin(req)
	if err != nil {
		writeError(w, apierrors.NewBadRequest(err.Error()))
		return u
	}
	s.log.Info("node joined", "node", req.NodeName, "by", u.Name)
	writeJSON(w, http.StatusOK, resp)
	return u
}

func joinGR() schema.GroupResource { return schema.GroupResource{Group: "bosun.dev", Resource: "join"} }

// authenticateJoin accepts a valid bootstrap token, the admin token, or a node's client
// certificate; the error explains a refusal.
func (s *Server) authenticateJoin(r *http.Request) (*userInfo, error) {
	if auth := r.Header.Get("Authorization"); auth != "" {
		scheme, token, _ := strings.Cut(auth, " ")
		token = strings.TrimSpace(token)
		if !strings.EqualFold(scheme, "bearer") || token == "" {
			return nil, errors.New("the Authorization header must be \"Bearer <token>\"")
		}
		if u := s.tokens.lookup(token); u != nil {
			return u, nil
		}
		return s.bootstrapUser(r.Context(), token, time.Now())
	}
	u, ok := s.authenticate(r)
	if !ok || u.anonymous() {
		return nil, errors.New("joining needs a bootstrap token: create one with `bosun token create` and pass it with --token")
	}
	if _, isNode := u.nodeName(); !isNode && !u.inGroup(groupMasters) {
		return nil, fmt.Errorf("user %q may not join nodes", u.Name)
	}
	return u, nil
}

// signJoin checks the CSRs' identities and signs them.
func (s *Server) signJoin(req JoinRequest) (*JoinResponse, error) {
	wantCN := nodeUserPrefix + req.NodeName
	csr, err := parseCSR(req.CSR)
	if err != nil {
		return nil, fmt.Errorf("csr: %w", err)
	}
	if csr.Subject.CommonName != wantCN || !slices.Equal(csr.Subject.Organization, []string{groupNodes}) {
		return nil, fmt.Errorf("csr: subject must be CN=%s, O=%s (got CN=%q, O=%q)", wantCN, groupNodes,
			csr.Subject.CommonName, csr.Subject.Organization)
	}
	certPEM, err := s.ca.SignCSR([]byte(req.CSR), pki.CertValidity)
	if err != nil {
		return nil, err
	}
	resp := &JoinResponse{Certificate: string(certPEM), CA: string(s.ca.CertPEM)}
	if req.ServingCSR != "" {
		serving, err := s.signServingCSR(req.ServingCSR, req.NodeName)
		if err != nil {
			return nil, fmt.Errorf("servingCSR: %w", err)
		}
		resp.ServingCertificate = string(serving)
	}
	return resp, nil
}

// signServingCSR signs the node's serving certificate: CN=system:node:<name>, the CSR's IP and
// DNS SANs, server auth only.
func (s *Server) signServingCSR(csrPEM, nodeName string) ([]byte, error) {
	csr, err := parseCSR(csrPEM)
	if err != nil {
		return nil, err
	}
	if len(csr.IPAddresses)+len(csr.DNSNames) == 0 {
		return nil, errors.New("no IP addresses or DNS names")
	}
	if len(csr.IPAddresses)+len(csr.DNSNames) > maxServingNames {
		return nil, fmt.Errorf("more than %d names", maxServingNames)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("serial number: %w", err)
	}
	now := time.Now()
	notAfter := now.Add(pki.CertValidity)
	if notAfter.After(s.ca.Cert.NotAfter) {
		notAfter = s.ca.Cert.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: nodeUserPrefix + nodeName, Organization: []string{groupNodes}},
		NotBefore:    now.Add(-5 * time.Minute),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  csr.IPAddresses,
		DNSNames:     csr.DNSNames,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, s.ca.Cert, csr.PublicKey, s.ca.Key)
	if err != nil {
		return nil, fmt.Errorf("signing serving certificate for %q: %w", nodeName, err)
	}
	return pki.EncodeCert(der), nil
}

func parseCSR(csrPEM string) (*x509.CertificateRequest, error) {
	block, _ := pem.Decode([]byte(csrPEM))
	if block == nil || block.Type != "CERTIFICATE REQUEST" {
		return nil, errors.New("no CERTIFICATE REQUEST PEM block")
	}
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return nil, err
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("bad signature: %w", err)
	}
	return csr, nil
}
