package nodeagent

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/bosun-gitops/bosun/internal/pki"
)

// The agent's certificates, all renewed through the join endpoint authenticated with the node's
// client certificate (operator/apiserver/join.go):
//
//	certFile (node.crt)          client certificate for the API, signed by the cluster CA; renewed
//	                             with the same key (keyFile) once a third of its validity remains
//	servingCertFile (serving.crt) the logs endpoint's certificate, signed by the node serving CA
//	                             (which only the operator's log proxy trusts); renewed with a new
//	                             key once a third of its validity remains, when it lacks the node
//	                             IP, and at start when the cluster CA signed it (issued before the
//	                             node serving CA existed)
//
// The check runs at start and every renewalInterval while the agent runs; client-go re-reads
// certFile by itself, and the logs endpoint serves the current serving certificate.
const defaultRenewalInterval = time.Hour

// credentials are the agent's certificates as loaded at start and after each renewal.
type credentials struct {
	clusterCA *x509.Certificate
	pool      *x509.CertPool // the cluster CA: the operator's client certificate is checked against it
	serving   atomic.Pointer[tls.Certificate]
}

// getServing is the logs endpoint's tls.Config.GetCertificate.
func (c *credentials) getServing(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return c.serving.Load(), nil
}

// loadCredentials reads the cluster CA and brings the certificates up to date (renewCredentials).
func (a *Agent) loadCredentials(ctx context.Context, nodeIP string) (*credentials, error) {
	ca, err := pki.ReadCert(a.cfg.CAFile)
	if err != nil {
		return nil, fmt.Errorf("reading caFile: %w", err)
	}
	c := &credentials{clusterCA: ca, pool: x509.NewCertPool()}
	c.pool.AddCert(ca)
	if err := a.renewCredentials(ctx, c, nodeIP, true); err != nil {
		return nil, err
	}
	return c, nil
}

// renewLoop checks the certificates every interval until ctx ends. A failed renewal is logged
// and retried at the next check: the certificates it would replace are still valid for a while.
func (a *Agent) renewLoop(ctx context.Context, c *credentials, nodeIP string, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := a.renewCredentials(ctx, c, nodeIP, false); err != nil && ctx.Err() == nil {
				a.log.Error("renewing the node's certificates failed; retrying at the next check", "err", err, "next", interval)
			}
		}
	}
}

func (a *Agent) servingPaths() (certFile, keyFile string) {
	if a.cfg.ServingCertFile != "" {
		return a.cfg.ServingCertFile, a.cfg.ServingKeyFile
	}
	return filepath.Join(a.cfg.DataDir, "pki", "serving.crt"), filepath.Join(a.cfg.DataDir, "pki", "serving.key")
}

// renewCredentials renews whichever certificate is due (one join request for both) and stores
// the serving certificate in c. atStart also replaces a serving certificate signed by the cluster
// CA; later checks do not, so that an agent newer than its operator asks once per start only.
func (a *Agent) renewCredentials(ctx context.Context, c *credentials, nodeIP string, atStart bool) error {
	now := time.Now()
	certFile, keyFile := a.servingPaths()
	serving, servingWhy := a.servingDue(c, certFile, keyFile, nodeIP, now, atStart)
	clientWhy := a.clientDue(now)
	if servingWhy == "" && clientWhy == "" {
		c.serving.Store(serving)
		return nil
	}
	clientKeyPEM, err := os.ReadFile(a.cfg.KeyFile)
	if err != nil {
		return fmt.Errorf("reading keyFile: %w", err)
	}
	clientKey, err := pki.ParseKey(clientKeyPEM)
	if err != nil {
		return fmt.Errorf("keyFile %s: %w", a.cfg.KeyFile, err)
	}
	clientCSR, err := pki.NewCSRForKey(clientKey, pki.NodeUserPrefix+a.cfg.NodeName, []string{pki.NodesGroup})
	if err != nil {
		return err
	}
	req := joinRequest{NodeName: a.cfg.NodeName, CSR: string(clientCSR)}
	var servingKeyPEM []byte
	if servingWhy != "" {
		var csrPEM []byte
		if csrPEM, servingKeyPEM, err = newServingCSR(a.cfg.NodeName, nodeIP); err != nil {
			return err
		}
		req.ServingCSR = string(csrPEM)
	}
	a.log.Info("renewing the node's certificates", "client", orCurrent(clientWhy), "serving", orCurrent(servingWhy), "nodeIP", nodeIP)
	resp, err := renewWithClientCert(ctx, a.cfg, req)
	if err != nil {
		err = fmt.Errorf("renewing the node's certificates: %w (an expired client certificate (certFile) cannot renew: "+
			"remove %s and join again with a token from `bosun token create`)", err, ConfigFileName)
		if serving == nil {
			return err
		}
		// The current certificates still work: an unreachable operator must not keep the agent
		// (and the node's logs endpoint) from starting.
		a.log.Warn("keeping the current certificates for now", "err", err)
		c.serving.Store(serving)
		return nil
	}
	// The client certificate keeps its key, so writing the certificate alone is atomic; client-go
	// picks it up by itself.
	if err := checkClientCert(resp.Certificate, clientKeyPEM, c.clusterCA, a.cfg.NodeName); err != nil {
		return fmt.Errorf("renewing the node's certificates: the operator's answer: %w", err)
	}
	if err := pki.WriteFile(a.cfg.CertFile, []byte(resp.Certificate), 0o644); err != nil {
		return err
	}
	if servingWhy == "" {
		c.serving.Store(serving)
		return nil
	}
	if resp.ServingCertificate == "" {
		return errors.New("renewing the node's certificates: the operator's answer holds no serving certificate")
	}
	pair, err := tls.X509KeyPair([]byte(resp.ServingCertificate), servingKeyPEM)
	if err != nil {
		return fmt.Errorf("loading the new serving certificate: %w", err)
	}
	// Key first: a crash between the two writes leaves a pair that does not load, which the next
	// start replaces.
	if err := pki.WriteFile(keyFile, servingKeyPEM, 0o600); err != nil {
		return err
	}
	if err := pki.WriteFile(certFile, []byte(resp.ServingCertificate), 0o644); err != nil {
		return err
	}
	c.serving.Store(&pair)
	return nil
}

func orCurrent(why string) string {
	if why == "" {
		return "current"
	}
	return why
}

// servingDue returns the stored serving certificate when it is usable (nil when it is missing,
// expired or lacks the node IP) and, when it must be replaced, why.
func (a *Agent) servingDue(c *credentials, certFile, keyFile, nodeIP string, now time.Time, atStart bool) (*tls.Certificate, string) {
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, "missing"
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	switch {
	case err != nil:
		return nil, "unreadable"
	case !servingCovers(leaf, nodeIP):
		return nil, "lacks the node IP"
	case !now.Before(leaf.NotAfter):
		return nil, "expired"
	case pki.RenewalDue(leaf, now):
		return &pair, "expires " + leaf.NotAfter.UTC().Format(time.DateOnly)
	case atStart && leaf.CheckSignatureFrom(c.clusterCA) == nil:
		return &pair, "issued by the cluster CA, replaced by one from the node serving CA"
	}
	return &pair, ""
}

// clientDue says why the client certificate must be renewed, "" when it need not.
func (a *Agent) clientDue(now time.Time) string {
	cert, err := pki.ReadCert(a.cfg.CertFile)
	if err != nil || !pki.RenewalDue(cert, now) {
		return "" // unreadable: the API client reports it; without it the agent cannot renew anyway
	}
	return "expires " + cert.NotAfter.UTC().Format(time.DateOnly)
}

// checkClientCert checks a renewed client certificate before it replaces the current one.
func checkClientCert(certPEM string, keyPEM []byte, clusterCA *x509.Certificate, nodeName string) error {
	if _, err := tls.X509KeyPair([]byte(certPEM), keyPEM); err != nil {
		return fmt.Errorf("the client certificate does not match the node's key: %w", err)
	}
	cert, err := pki.ParseCert([]byte(certPEM))
	if err != nil {
		return err
	}
	if err := cert.CheckSignatureFrom(clusterCA); err != nil {
		return fmt.Errorf("the client certificate is not signed by the cluster CA: %w", err)
	}
	if cert.Subject.CommonName != pki.NodeUserPrefix+nodeName {
		return fmt.Errorf("the client certificate is for %q", cert.Subject.CommonName)
	}
	return nil
}

func servingCovers(c *x509.Certificate, nodeIP string) bool {
	ip := net.ParseIP(nodeIP)
	for _, x := range c.IPAddresses {
		if x.Equal(ip) {
			return true
		}
	}
	return false
}
