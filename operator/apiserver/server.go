package apiserver

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"time"

	"github.com/bosun-gitops/bosun/internal/pki"
	"github.com/prometheus/client_golang/prometheus"
)

// Server is the HTTPS API server.
type Server struct {
	cfg    Config
	log    *slog.Logger
	ca     *pki.CA // the cluster CA: the API's serving certificate, every client certificate
	nodeCA *pki.CA // the node serving CA: agents' serving certificates, trusted by the log proxy only
	cert   tls.Certificate
	// apiNames and apiIPs are the names and addresses of the API's serving certificate, which
	// no node's serving certificate may name.
	apiNames []string
	apiIPs   []net.IP
	tokens   *tokenAuthenticator
	listener net.Listener
	url      string
	ready    chan struct{}
	handler  http.Handler
	metrics  *metrics
	codec    *codec
	registry *prometheus.Registry
	nodes    *nodeProxy // reaches agents' HTTPS endpoints (pod logs)
}

// New prepares the server: it creates the CAs, serving certificate, admin token and
// admin.kubeconfig on first start (and reuses them afterwards) and binds the listen address, so
// URL is known before Run.
func New(ctx context.Context, cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "apiserver")
	reg := cfg.Metrics
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	c, err := newCodec()
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, log: log, ready: make(chan struct{}), metrics: m, registry: reg, codec: c}

	pkiDir := filepath.Join(cfg.DataDir, "pki")
	s.ca, err = pki.LoadOrCreateCA(pkiDir, "bosun-ca")
	if err != nil {
		return nil, err
	}
	s.nodeCA, err = pki.LoadOrCreateNamedCA(pkiDir, NodeServingCAName, "bosun-node-serving-ca")
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("listening on %s: %w", cfg.Listen, err)
	}
	s.listener = ln
	addr := ln.Addr().(*net.TCPAddr)
	host := "127.0.0.1"
	if !addr.IP.IsUnspecified() && !addr.IP.IsLoopback() {
		host = addr.IP.String()
	}
	s.url = "https://" + net.JoinHostPort(host, fmt.Sprint(addr.Port))

	names := []string{"localhost", "127.0.0.1", "::1"}
	if !addr.IP.IsUnspecified() && !addr.IP.IsLoopback() {
		names = append(names, addr.IP.String())
	}
	names = append(names, cfg.ServerNames...)
	s.cert, err = s.ca.LoadOrIssueServing(pkiDir, "apiserver", names)
	if err != nil {
		ln.Close()
		return nil, err
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			s.apiIPs = append(s.apiIPs, ip)
		} else {
			s.apiNames = append(s.apiNames, n)
		}
	}
	s.nodes, err = newNodeProxy(s.ca, s.nodeCA, log)
	if err != nil {
		ln.Close()
		return nil, err
	}
	s.tokens, err = s.setupAdmin()
	if err != nil {
		ln.Close()
		return nil, err
	}
	s.handler = s.buildHandler()
	return s, nil
}

// Run serves until ctx ends, then shuts down gracefully (open watches end with ctx).
func (s *Server) Run(ctx context.Context) error {
	srv := &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		BaseContext:       func(net.Listener) context.Context { return ctx },
		TLSConfig: &tls.Config{
			MinVersion:   tls.VersionTLS12,
			Certificates: []tls.Certificate{s.cert},
			ClientAuth:   tls.VerifyClientCertIfGiven,
			ClientCAs:    s.ca.Pool(),
			NextProtos:   []string{"h2", "http/1.1"},
		},
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.ServeTLS(s.listener, "", "") }()
	close(s.ready)
	s.log.Info("serving", "url", s.url)
	select {
	case err := <-errc:
		return fmt.Errorf("serving %s: %w", s.url, err)
	case <-ctx.Done():
	}
	shutCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutCtx); err != nil {
		srv.Close()
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serving %s: %w", s.url, err)
	}
	return nil
}

// Ready is closed once the server accepts connections.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// URL is the server's base URL, e.g. https://127.0.0.1:6443.
func (s *Server) URL() string { return s.url }

// AdminKubeconfigPath is DataDir/admin.kubeconfig.
func (s *Server) AdminKubeconfigPath() string {
	return filepath.Join(s.cfg.DataDir, "admin.kubeconfig")
}

// NodeServingCAName is the base name of the node serving CA's files in DataDir/pki.
const NodeServingCAName = "node-serving-ca"

// CA is the cluster CA: clients verify the API server with it, and it signs agents' client
// certificates.
func (s *Server) CA() *pki.CA { return s.ca }

// NodeServingCA signs agents' serving certificates (their logs endpoint). Only the operator's log
// proxy trusts it; no client of the API does.
func (s *Server) NodeServingCA() *pki.CA { return s.nodeCA }

// Handler serves the API without TLS (for tests; client certificates then cannot authenticate).
func (s *Server) Handler() http.Handler { return s.handler }
