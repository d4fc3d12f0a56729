package apiserver

import (
	"crypto/sha256"
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
//     O system:nodes; it is signed by the cluster CA as a client certificate. The optional
//     serving CSR (IP and DNS SANs of the node) is signed as the agent's HTTPS serving
//     certificate (logs endpoint) by the node serving CA, which only the operator's log proxy
//     trusts: a node's certificate never passes for the API server's. Its names are checked
//     (checkServingCSR): the node's name and addresses, no wildcard, not the operator's own.
//
// A node already holding its client certificate may call the join endpoint again, for its own
// name only, to renew both certificates (when they near expiry, or its address changed).
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
	resp, err := s.signJoin(req, fromOperatorMachine(r))
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

// signJoin checks the CSRs' identities and signs them: the client certificate with the cluster
// CA, the serving certificate with the node serving CA. local says that the request came from the
// operator's own machine (see fromOperatorMachine).
func (s *Server) signJoin(req JoinRequest, local bool) (*JoinResponse, error) {
	wantCN := nodeUserPrefix + req.NodeName
	csr, err := parseCSR(req.CSR)
	if err != nil {
		return nil, fmt.Errorf("csr: %w", err)
	}
	if csr.Subject.CommonName != wantCN || !slices.Equal(csr.Subject.Organization, []string{groupNodes}) {
		return nil, fmt.Errorf("csr: subject must be CN=%s, O=%s (got CN=%q, O=%q)", wantCN, groupNodes,
			csr.Subject.CommonName, csr.Subject.Organization)
	}
	// The serving CSR is checked before anything is signed: a refused join issues nothing.
	var serving *x509.CertificateRequest
	if req.ServingCSR != "" {
		if serving, err = s.checkServingCSR(req.ServingCSR, req.NodeName, local); err != nil {
			return nil, fmt.Errorf("servingCSR: %w", err)
		}
	}
	certPEM, err := s.ca.SignCSR([]byte(req.CSR), pki.CertValidity)
	if err != nil {
		return nil, err
	}
	resp := &JoinResponse{Certificate: string(certPEM), CA: string(s.ca.CertPEM)}
	if serving != nil {
		subject := pkix.Name{CommonName: wantCN, Organization: []string{groupNodes}}
		servingPEM, err := s.nodeCA.SignServing(serving.PublicKey, subject, serving.IPAddresses, serving.DNSNames, pki.CertValidity)
		if err != nil {
			return nil, fmt.Errorf("servingCSR: %w", err)
		}
		resp.ServingCertificate = string(servingPEM)
	}
	return resp, nil
}

// checkServingCSR parses the node's serving CSR and checks its names: the node's name (or a DNS
// name under it) and IP addresses, no wildcard, none of the API server's own names and addresses
// and no loopback address — except for a request from the operator's own machine (the local agent
// of `bosun up`, which shares the operator's addresses). Only the public key and the names are
// used: the subject is always CN=system:node:<nodeName>, O=system:nodes.
func (s *Server) checkServingCSR(csrPEM, nodeName string, local bool) (*x509.CertificateRequest, error) {
	csr, err := parseCSR(csrPEM)
	if err != nil {
		return nil, err
	}
	if len(csr.URIs) > 0 || len(csr.EmailAddresses) > 0 {
		return nil, errors.New("only IP addresses and DNS names may be asked for, no URIs or email addresses")
	}
	if len(csr.IPAddresses)+len(csr.DNSNames) == 0 {
		return nil, errors.New("no IP addresses or DNS names")
	}
	if len(csr.IPAddresses)+len(csr.DNSNames) > maxServingNames {
		return nil, fmt.Errorf("more than %d names", maxServingNames)
	}
	for _, n := range csr.DNSNames {
		switch {
		case strings.Contains(n, "*"):
			return nil, fmt.Errorf("DNS name %q: wildcard names are not allowed in a node's serving certificate", n)
		case len(validation.IsDNS1123Subdomain(n)) > 0:
			return nil, fmt.Errorf("DNS name %q: %s", n, strings.Join(validation.IsDNS1123Subdomain(n), "; "))
		case n != nodeName && !strings.HasPrefix(n, nodeName+"."):
			return nil, fmt.Errorf("DNS name %q is not node %s's: a node's serving certificate may name the node (%s, or a name under it such as %s.example.com) and its IP addresses",
				n, nodeName, nodeName, nodeName)
		case !local && slices.Contains(s.apiNames, n):
			return nil, fmt.Errorf("DNS name %q is the API server's: a node's serving certificate may not name the operator", n)
		}
	}
	for _, ip := range csr.IPAddresses {
		switch {
		case ip.IsUnspecified() || ip.IsMulticast():
			return nil, fmt.Errorf("IP address %s cannot be a node's address", ip)
		case !local && ip.IsLoopback():
			return nil, fmt.Errorf("IP address %s is a loopback address: only the agent on the operator's own machine may name one; "+
				"give the agent the address the operator reaches it on (--node-ip)", ip)
		case !local && slices.ContainsFunc(s.apiIPs, ip.Equal):
			return nil, fmt.Errorf("IP address %s is the API server's: a node's serving certificate may not name the operator; "+
				"give the agent its own address (--node-ip)", ip)
		}
	}
	return csr, nil
}

// fromOperatorMachine reports whether the request came from the operator's own machine: its peer
// address is a loopback address or one of this machine's own addresses. A remote host cannot
// complete a TCP handshake with such a source address, since the answers never leave the machine.
func fromOperatorMachine(r *http.Request) bool {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return false
	}
	peer := net.ParseIP(host)
	if peer == nil {
		return false
	}
	if peer.IsLoopback() {
		return true
	}
	if local, ok := r.Context().Value(http.LocalAddrContextKey).(*net.TCPAddr); ok && local.IP.Equal(peer) {
		return true
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return false
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.Equal(peer) {
			return true
		}
	}
	return false
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
