// Package pki is Bosun's small certificate authority: it creates or loads CAs under the data
// directory (the operator keeps two: the cluster CA and the node serving CA), issues serving
// certificates (with SANs) and client certificates (CN = user, O = groups, as Kubernetes reads
// them), and signs agents' certificate requests. Keys are ECDSA P-256, which Go's TLS stack and
// client-go accept everywhere; private keys are written with mode 0600.
package pki

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// Validity periods of what this package issues.
const (
	CAValidity   = 10 * 365 * 24 * time.Hour
	CertValidity = 365 * 24 * time.Hour
	// renewBefore is how close to expiry a stored leaf certificate is reissued.
	renewBefore = 30 * 24 * time.Hour
)

// CA is a certificate authority: its certificate and the key that signs with it.
type CA struct {
	Cert    *x509.Certificate
	CertPEM []byte
	Key     crypto.Signer
}

// Node identities as Kubernetes reads them: a node's certificates are for CN=NodeUserPrefix+name,
// O=NodesGroup.
const (
	NodeUserPrefix = "system:node:"
	NodesGroup     = "system:nodes"
)

// LoadOrCreateCA loads ca.crt and ca.key from dir, or creates a new self-signed CA named
// commonName there when neither exists. Only one of the two existing is an error.
func LoadOrCreateCA(dir, commonName string) (*CA, error) {
	return LoadOrCreateNamedCA(dir, "ca", commonName)
}

// LoadOrCreateNamedCA is LoadOrCreateCA for the files name.crt and name.key: a directory may hold
// several CAs.
func LoadOrCreateNamedCA(dir, name, commonName string) (*CA, error) {
	certPath, keyPath := filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	certPEM, certErr := os.ReadFile(certPath)
	keyPEM, keyErr := os.ReadFile(keyPath)
	switch {
	case certErr == nil && keyErr == nil:
		ca, err := ParseCA(certPEM, keyPEM)
		if err != nil {
			return nil, fmt.Errorf("loading CA from %s: %w", dir, err)
		}
		return ca, nil
	case errors.Is(certErr, fs.ErrNotExist) && errors.Is(keyErr, fs.ErrNotExist):
	case certErr != nil && !errors.Is(certErr, fs.ErrNotExist):
		return nil, fmt.Errorf("reading CA certificate: %w", certErr)
	case keyErr != nil && !errors.Is(keyErr, fs.ErrNotExist):
		return nil, fmt.Errorf("reading CA key: %w", keyErr)
	default:
		return nil, fmt.Errorf("CA in %s is incomplete: restore both %s.crt and %s.key, or remove both to create a new CA (every certificate it issued becomes invalid)", dir, name, name)
	}
	ca, err := NewCA(commonName)
	if err != nil {
		return nil, err
	}
	keyPEM, err = EncodeKey(ca.Key)
	if err != nil {
		return nil, err
	}
	if err := WriteFile(keyPath, keyPEM, 0o600); err != nil {
		return nil, err
	}
	if err := WriteFile(certPath, ca.CertPEM, 0o644); err != nil {
		return nil, err
	}
	return ca, nil
}

// NewCA creates a self-signed CA in memory.
func NewCA(commonName string) (*CA, error) {
	key, err := NewKey()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          mustSerial(),
		Subject:               pkix.Name{CommonName: commonName},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(CAValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("creating CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parsing new CA certificate: %w", err)
	}
	return &CA{Cert: cert, CertPEM: EncodeCert(der), Key: key}, nil
}

// ParseCA builds a CA from PEM blocks.
func ParseCA(certPEM, keyPEM []byte) (*CA, error) {
	cert, err := ParseCert(certPEM)
	if err != nil {
		return nil, err
	}
	if !cert.IsCA {
		return nil, fmt.Errorf("certificate %q is not a CA", cert.Subject.CommonName)
	}
	key, err := ParseKey(keyPEM)
	if err != nil {
		return nil, err
	}
	if !publicKeysEqual(cert.PublicKey, key.Public()) {
		return nil, errors.New("CA key does not match CA certificate")
	}
	return &CA{Cert: cert, CertPEM: certPEM, Key: key}, nil
}

// Pool returns a certificate pool holding only the CA.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

// IssueServing issues a TLS server certificate for names: IP addresses become IP SANs, everything
// else DNS SANs. The first name is the common name.
func (ca *CA) IssueServing(names []string, validity time.Duration) (certPEM, keyPEM []byte, err error) {
	if len(names) == 0 {
		return nil, nil, errors.New("issuing serving certificate: no names")
	}
	key, err := NewKey()
	if err != nil {
		return nil, nil, err
	}
	tmpl := ca.leafTemplate(pkix.Name{CommonName: names[0]}, validity, x509.ExtKeyUsageServerAuth)
	tmpl.IPAddresses, tmpl.DNSNames = splitNames(names)
	return ca.sign(tmpl, key)
}

// IssueNodeServing issues the serving certificate of node nodeName (its agent's HTTPS endpoint):
// CN=system:node:<nodeName>, O=system:nodes, which the operator's log proxy checks against the
// node it dials, and names as SANs (IP addresses become IP SANs, everything else DNS SANs). The
// caller decides that the names are the node's.
func (ca *CA) IssueNodeServing(nodeName string, names []string, validity time.Duration) (certPEM, keyPEM []byte, err error) {
	if nodeName == "" || len(names) == 0 {
		return nil, nil, errors.New("issuing node serving certificate: no node name or no names")
	}
	key, err := NewKey()
	if err != nil {
		return nil, nil, err
	}
	ips, dnsNames := splitNames(names)
	certPEM, err = ca.SignServing(key.Public(), pkix.Name{CommonName: NodeUserPrefix + nodeName, Organization: []string{NodesGroup}},
		ips, dnsNames, validity)
	if err != nil {
		return nil, nil, err
	}
	keyPEM, err = EncodeKey(key)
	if err != nil {
		return nil, nil, err
	}
	return certPEM, keyPEM, nil
}

// SignServing signs pub as a TLS server certificate for subject with the given SANs (server
// auth only). It checks nothing: the caller has decided that subject and names are allowed.
func (ca *CA) SignServing(pub crypto.PublicKey, subject pkix.Name, ips []net.IP, dnsNames []string, validity time.Duration) ([]byte, error) {
	tmpl := ca.leafTemplate(subject, validity, x509.ExtKeyUsageServerAuth)
	tmpl.IPAddresses, tmpl.DNSNames = ips, dnsNames
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, pub, ca.Key)
	if err != nil {
		return nil, fmt.Errorf("signing serving certificate for %q: %w", subject.CommonName, err)
	}
	return EncodeCert(der), nil
}

func splitNames(names []string) (ips []net.IP, dnsNames []string) {
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			ips = append(ips, ip)
		} else {
			dnsNames = append(dnsNames, n)
		}
	}
	return ips, dnsNames
}

// IssueClient issues a TLS client certificate for user (the CN) in groups (the O entries), the
// way Kubernetes reads client certificates: a node is CN=system:node:<name>, O=system:nodes.
func (ca *CA) IssueClient(user string, groups []string, validity time.Duration) (certPEM, keyPEM []byte, err error) {
	if user == "" {
		return nil, nil, errors.New("issuing client certificate: empty user")
	}
	key, err := NewKey()
	if err != nil {
		return nil, nil, err
	}
	tmpl := ca.leafTemplate(pkix.Name{CommonName: user, Organization: groups}, validity, x509.ExtKeyUsageClientAuth)
	return ca.sign(tmpl, key)
}

// SignCSR signs a PEM certificate request as a client certificate, keeping only its subject
// (CN and O) and public key: the caller decides whether that identity is allowed. It returns the
// certificate PEM.
func (ca *CA) SignCSR(csrPEM []byte, validity time.Duration) ([]byte, error) {
	block, _ := pem.Decode(csrPEM)
	if block == nil || block.Type != "CERTIFICATE REQUEST" {
		return nil, errors.New("signing CSR: no CERTIFICATE REQUEST PEM block")
	}
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("signing CSR: %w", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("signing CSR: bad signature: %w", err)
	}
	tmpl := ca.leafTemplate(pkix.Name{CommonName: csr.Subject.CommonName, Organization: csr.Subject.Organization},
		validity, x509.ExtKeyUsageClientAuth)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, csr.PublicKey, ca.Key)
	if err != nil {
		return nil, fmt.Errorf("signing CSR for %q: %w", csr.Subject.CommonName, err)
	}
	return EncodeCert(der), nil
}

// NewCSR creates a key and a certificate request for user in groups (what an agent sends to join).
func NewCSR(user string, groups []string) (csrPEM, keyPEM []byte, err error) {
	key, err := NewKey()
	if err != nil {
		return nil, nil, err
	}
	csrPEM, err = NewCSRForKey(key, user, groups)
	if err != nil {
		return nil, nil, err
	}
	keyPEM, err = EncodeKey(key)
	if err != nil {
		return nil, nil, err
	}
	return csrPEM, keyPEM, nil
}

// NewCSRForKey is a certificate request for user in groups with an existing key (what an agent
// sends to renew its client certificate).
func NewCSRForKey(key crypto.Signer, user string, groups []string) ([]byte, error) {
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: user, Organization: groups},
	}, key)
	if err != nil {
		return nil, fmt.Errorf("creating CSR: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), nil
}

// LoadOrIssueServing returns the serving key pair stored as name.crt/name.key in dir, issuing
// (and storing) a new one when none exists, when it was not signed by ca, when it lacks one of
// names, or when it expires within 30 days.
func (ca *CA) LoadOrIssueServing(dir, name string, names []string) (tls.Certificate, error) {
	certPath, keyPath := filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	if certPEM, err := os.ReadFile(certPath); err == nil {
		if keyPEM, err := os.ReadFile(keyPath); err == nil && ca.servingStillGood(certPEM, names) {
			if pair, err := tls.X509KeyPair(certPEM, keyPEM); err == nil {
				return pair, nil
			}
		}
	}
	certPEM, keyPEM, err := ca.IssueServing(names, CertValidity)
	if err != nil {
		return tls.Certificate{}, err
	}
	if err := WriteFile(keyPath, keyPEM, 0o600); err != nil {
		return tls.Certificate{}, err
	}
	if err := WriteFile(certPath, certPEM, 0o644); err != nil {
		return tls.Certificate{}, err
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("loading issued serving certificate: %w", err)
	}
	return pair, nil
}

func (ca *CA) servingStillGood(certPEM []byte, names []string) bool {
	cert, err := ParseCert(certPEM)
	if err != nil || cert.CheckSignatureFrom(ca.Cert) != nil || time.Until(cert.NotAfter) < renewBefore {
		return false
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			if !slices.ContainsFunc(cert.IPAddresses, ip.Equal) {
				return false
			}
		} else if !slices.Contains(cert.DNSNames, n) {
			return false
		}
	}
	return true
}

func (ca *CA) leafTemplate(subject pkix.Name, validity time.Duration, usage x509.ExtKeyUsage) *x509.Certificate {
	if validity <= 0 {
		validity = CertValidity
	}
	now := time.Now()
	notAfter := now.Add(validity)
	if notAfter.After(ca.Cert.NotAfter) {
		notAfter = ca.Cert.NotAfter
	}
	return &x509.Certificate{
		SerialNumber: mustSerial(),
		Subject:      subject,
		NotBefore:    now.Add(-5 * time.Minute), // tolerate small clock skew between machines
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{usage},
	}
}

func (ca *CA) sign(tmpl *x509.Certificate, key crypto.Signer) (certPEM, keyPEM []byte, err error) {
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.Key)
	if err != nil {
		return nil, nil, fmt.Errorf("issuing certificate for %q: %w", tmpl.Subject.CommonName, err)
	}
	keyPEM, err = EncodeKey(key)
	if err != nil {
		return nil, nil, err
	}
	return EncodeCert(der), keyPEM, nil
}

// NewKey generates an ECDSA P-256 private key.
func NewKey() (crypto.Signer, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating key: %w", err)
	}
	return k, nil
}

// EncodeKey encodes a private key as a PKCS#8 "PRIVATE KEY" PEM block.
func EncodeKey(key crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encoding private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// EncodeCert encodes a DER certificate as PEM.
func EncodeCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// ParseKey reads a PKCS#8, SEC1 (EC) or PKCS#1 (RSA) private key PEM block.
func ParseKey(keyPEM []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(keyPEM)
	if block == nil {
		return nil, errors.New("parsing private key: no PEM block")
	}
	var (
		k   any
		err error
	)
	switch block.Type {
	case "EC PRIVATE KEY":
		k, err = x509.ParseECPrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		k, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	default:
		k, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	}
	if err != nil {
		return nil, fmt.Errorf("parsing private key: %w", err)
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("parsing private key: %T cannot sign", k)
	}
	return s, nil
}

// ParseCert reads the first certificate of a PEM bundle.
func ParseCert(certPEM []byte) (*x509.Certificate, error) {
	block, _ := pem.Decode(certPEM)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, errors.New("parsing certificate: no CERTIFICATE PEM block")
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parsing certificate: %w", err)
	}
	return c, nil
}

// ReadCert reads the first certificate of the PEM file at path.
func ReadCert(path string) (*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	c, err := ParseCert(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// WriteFile writes data atomically (temporary file, then rename) with mode perm, creating the
// directory (0700) when needed. Use 0600 for keys and tokens.
func WriteFile(path string, data []byte, perm fs.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("creating %s: %w", filepath.Dir(path), err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

func mustSerial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(fmt.Sprintf("crypto/rand failed: %v", err)) // the platform RNG never fails on Linux
	}
	return n
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	ea, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	if ok {
		return ea.Equal(b)
	}
	da, err1 := x509.MarshalPKIXPublicKey(a)
	db, err2 := x509.MarshalPKIXPublicKey(b)
	return err1 == nil && err2 == nil && bytes.Equal(da, db)
}

// RenewalDue reports whether a leaf certificate should be replaced at now: once less than a third
// of its validity remains (about four months for CertValidity), which leaves a machine that is
// down for a while ample time to renew before it expires.
func RenewalDue(cert *x509.Certificate, now time.Time) bool {
	lifetime := cert.NotAfter.Sub(cert.NotBefore)
	return cert.NotAfter.Sub(now) < lifetime/3
}
