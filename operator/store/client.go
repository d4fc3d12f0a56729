package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// ClientConfig describes an existing etcd cluster (--etcd-endpoints and its TLS options).
type ClientConfig struct {
	Endpoints []string
	// CAFile verifies the servers; CertFile and KeyFile are the client certificate.
	CAFile, CertFile, KeyFile string
	// DialTimeout bounds the first connection; default 5s.
	DialTimeout time.Duration
	// Logger receives the client's warnings; default slog.Default().
	Logger *slog.Logger
}

// Validate checks the configuration and names the faulty field.
func (c ClientConfig) Validate() error {
	if len(c.Endpoints) == 0 {
		return errors.New("etcd endpoints: none given; pass at least one URL such as https://10.0.0.1:2379")
	}
	for _, ep := range c.Endpoints {
		u, err := url.Parse(ep)
		if err != nil {
			return fmt.Errorf("etcd endpoint %q: %w", ep, err)
		}
		if u.Scheme != "http" && u.Scheme != "https" && u.Scheme != "unix" && u.Scheme != "unixs" {
			return fmt.Errorf("etcd endpoint %q: scheme must be http, https, unix or unixs", ep)
		}
		if u.Host == "" && u.Scheme != "unix" && u.Scheme != "unixs" {
			return fmt.Errorf("etcd endpoint %q: no host", ep)
		}
	}
	if (c.CertFile == "") != (c.KeyFile == "") {
		return errors.New("etcd client certificate: CertFile and KeyFile must be given together")
	}
	if c.DialTimeout < 0 {
		return fmt.Errorf("etcd DialTimeout %s is negative", c.DialTimeout)
	}
	return nil
}

func (c ClientConfig) tls() bool { return c.CAFile != "" || c.CertFile != "" }

// Connect opens a client to an existing cluster and checks that one endpoint answers.
func Connect(ctx context.Context, cfg ClientConfig) (*clientv3.Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	timeout := cfg.DialTimeout
	if timeout == 0 {
		timeout = 5 * time.Second
	}
	ccfg := clientv3.Config{
		Endpoints:          cfg.Endpoints,
		DialTimeout:        timeout,
		Context:            context.WithoutCancel(ctx),
		Logger:             newZapLogger(log.With("component", "etcd-client")),
		MaxCallSendMsgSize: 4 << 20,
	}
	if cfg.tls() {
		info := transport.TLSInfo{CertFile: cfg.CertFile, KeyFile: cfg.KeyFile, TrustedCAFile: cfg.CAFile}
		tlsCfg, err := info.ClientConfig()
		if err != nil {
			return nil, fmt.Errorf("etcd client TLS: %w", err)
		}
		ccfg.TLS = tlsCfg
	}
	client, err := clientv3.New(ccfg)
	if err != nil {
		return nil, fmt.Errorf("connecting to etcd %v: %w", cfg.Endpoints, err)
	}
	// clientv3.New does not wait for a connection; make sure the cluster answers.
	var lastErr error
	for _, ep := range cfg.Endpoints {
		sctx, cancel := context.WithTimeout(ctx, timeout)
		_, err := client.Status(sctx, ep)
		cancel()
		if err == nil {
			return client, nil
		}
		lastErr = err
	}
	client.Close()
	return nil, fmt.Errorf("connecting to etcd %v: no endpoint answered: %w", cfg.Endpoints, lastErr)
}
