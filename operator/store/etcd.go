package store

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
)

// EtcdConfig configures an embedded etcd member.
//
// By default the member is private to this user: clients connect over the unix socket
// DataDir/client.sock (mode 0600, DataDir mode 0700), and a single member opens no peer
// listener, so no TCP port is opened and other local users cannot read or write the data
// behind the API server's back.
type EtcdConfig struct {
	// Name of the member; "default" when empty.
	Name string
	// DataDir holds the member's WAL and snapshots, and the client socket.
	DataDir string
	// ClientURL, e.g. "http://127.0.0.1:2379"; empty means the unix socket DataDir/client.sock,
	// or a free 127.0.0.1 port with ClientTLS.
	ClientURL string
	// PeerURL, e.g. "http://127.0.0.1:2380"; empty means no peer listener for a single member
	// and a free 127.0.0.1 port for a member of InitialCluster.
	PeerURL string
	// InitialCluster is "name1=peerURL1,name2=peerURL2,..." for a multi-member cluster; empty
	// means a single member.
	InitialCluster string
	// Logger receives etcd's warnings and errors (etcd's info logs are dropped).
	Logger *slog.Logger
	// ProgressNotifyInterval is how often etcd sends watch progress notifications (the source
	// of watch bookmarks); default one minute.
	ProgressNotifyInterval time.Duration
	// ClientTLS, when set, serves clients over TLS and requires client certificates signed by
	// its CA (the member's own client uses the same files). URLs then use https.
	ClientTLS *TLSFiles
	// QuotaBackendBytes is the size of the database file past which etcd refuses writes (its
	// NOSPACE alarm); 0 is etcd's default, 2 GiB.
	QuotaBackendBytes int64
}

// TLSFiles are PEM files for one TLS identity and the CA it trusts.
type TLSFiles struct {
	CertFile, KeyFile, CAFile string
}

// Validate checks the fields that StartEtcd cannot default.
func (c EtcdConfig) Validate() error {
	if c.DataDir == "" {
		return errors.New("etcd DataDir is empty: set the directory that holds etcd's data")
	}
	for field, u := range map[string]string{"ClientURL": c.ClientURL, "PeerURL": c.PeerURL} {
		if u == "" {
			continue
		}
		if _, err := url.Parse(u); err != nil {
			return fmt.Errorf("etcd %s %q: %w", field, u, err)
		}
	}
	return nil
}

// ClientSocketName is the file name of the client socket in EtcdConfig.DataDir.
const ClientSocketName = "client.sock"

// maxSocketPath is the longest path a unix socket address holds on Linux (sun_path minus NUL).
const maxSocketPath = 107

// noPeerURL is what a single member without a peer listener advertises: etcd needs a peer URL
// for its cluster membership, but nothing dials it since there are no other members.
const noPeerURL = "http://localhost:2380"

// singleMemberCatchUpEntries is the raft log a single member keeps in memory after each of
// etcd's in-memory snapshots (taken every 100 entries).
const singleMemberCatchUpEntries = 100

// Etcd is a running embedded etcd member and a client connected to it.
type Etcd struct {
	server    *embed.Etcd
	client    *clientv3.Client
	endpoints []string
	peerURL   string
	name      string
	defrags   atomic.Uint64
}

// StartEtcd starts an embedded etcd member and waits until it serves requests (for a
// multi-member cluster: until the cluster has a leader, so start the members concurrently).
func StartEtcd(ctx context.Context, cfg EtcdConfig) (*Etcd, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	log = log.With("component", "etcd")
	if cfg.Name == "" {
		cfg.Name = "default"
	}
	if cfg.ClientURL == "" && cfg.ClientTLS == nil {
		if err := prepareSocketDir(cfg.DataDir); err != nil {
			return nil, err
		}
	}
	// A port picked free can be taken before etcd binds it; retry with new ports then.
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		e, err := startEtcdOnce(ctx, cfg, log)
		if err == nil {
			return e, nil
		}
		lastErr = err
		if !strings.Contains(err.Error(), "address already in use") || !picksPorts(cfg) {
			break
		}
	}
	return nil, lastErr
}

// picksPorts tells whether StartEtcd picks a free TCP port, which may be taken before etcd
// binds it.
func picksPorts(cfg EtcdConfig) bool {
	return (cfg.ClientURL == "" && cfg.ClientTLS != nil) || (cfg.PeerURL == "" && cfg.InitialCluster != "")
}

// prepareSocketDir makes the directory of the client socket private (0700) and refuses to start
// when a live etcd already serves the socket: etcd would remove it and take over its path.
func prepareSocketDir(dir string) error {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return fmt.Errorf("etcd data dir %s: %w", dir, err)
	}
	sock := filepath.Join(abs, ClientSocketName)
	if len(sock) > maxSocketPath {
		return fmt.Errorf("etcd client socket %s is longer than the %d bytes a unix socket path may have: use a shorter data directory", sock, maxSocketPath)
	}
	if err := os.MkdirAll(abs, 0o700); err != nil {
		return fmt.Errorf("creating the etcd data dir: %w", err)
	}
	if err := os.Chmod(abs, 0o700); err != nil {
		return fmt.Errorf("making the etcd data dir private: %w", err)
	}
	if c, err := net.DialTimeout("unix", sock, time.Second); err == nil {
		c.Close()
		return fmt.Errorf("an etcd already serves %s: another operator runs with this data directory; stop it or use another --data-dir", sock)
	}
	return nil
}

func startEtcdOnce(ctx context.Context, cfg EtcdConfig, log *slog.Logger) (*Etcd, error) {
	clientURL, peerURL := cfg.ClientURL, cfg.PeerURL
	var err error
	socket := ""
	switch {
	case clientURL != "":
	case cfg.ClientTLS != nil:
		// A socket's TLS server name would be its file name; keep TLS on loopback TCP.
		if clientURL, err = FreeLocalURL(); err != nil {
			return nil, err
		}
	default:
		if socket, err = filepath.Abs(filepath.Join(cfg.DataDir, ClientSocketName)); err != nil {
			return nil, err
		}
		// Escaped, so that a path holding "%", "#" or "?" survives the URL parsing of etcd's
		// listener and of gRPC's unix resolver (both use the decoded path).
		clientURL = (&url.URL{Scheme: "unix", Path: socket}).String()
	}
	listenPeer := true
	switch {
	case peerURL != "":
	case cfg.InitialCluster != "":
		if peerURL, err = FreeLocalURL(); err != nil {
			return nil, err
		}
	default:
		peerURL, listenPeer = noPeerURL, false
	}
	cu, err := url.Parse(clientURL)
	if err != nil {
		return nil, fmt.Errorf("etcd client URL %q: %w", clientURL, err)
	}
	pu, err := url.Parse(peerURL)
	if err != nil {
		return nil, fmt.Errorf("etcd peer URL %q: %w", peerURL, err)
	}

	if cfg.ClientTLS != nil {
		cu.Scheme = "https"
	}
	ec := embed.NewConfig()
	ec.Name = cfg.Name
	ec.Dir = cfg.DataDir
	ec.ListenClientUrls = []url.URL{*cu}
	ec.AdvertiseClientUrls = []url.URL{*cu}
	if socket != "" {
		// etcd wants host:port in advertised URLs; clients of a socket find it by its path.
		ec.AdvertiseClientUrls = []url.URL{}
	}
	ec.ListenPeerUrls = nil
	if listenPeer {
		ec.ListenPeerUrls = []url.URL{*pu}
	}
	ec.AdvertisePeerUrls = []url.URL{*pu}
	ec.InitialCluster = cfg.InitialCluster
	if ec.InitialCluster == "" {
		ec.InitialCluster = ec.InitialClusterFromName(cfg.Name)
	}
	ec.InitialClusterToken = "bosun"
	var clientTLS *tls.Config
	if t := cfg.ClientTLS; t != nil {
		ec.ClientTLSInfo = transport.TLSInfo{CertFile: t.CertFile, KeyFile: t.KeyFile, TrustedCAFile: t.CAFile, ClientCertAuth: true}
		if clientTLS, err = ec.ClientTLSInfo.ClientConfig(); err != nil {
			return nil, fmt.Errorf("etcd client TLS: %w", err)
		}
	}
	ec.ListenMetricsUrls = nil
	ec.QuotaBackendBytes = cfg.QuotaBackendBytes
	ec.WatchProgressNotifyInterval = cfg.ProgressNotifyInterval
	if ec.WatchProgressNotifyInterval <= 0 {
		ec.WatchProgressNotifyInterval = time.Minute
	}
	if cfg.InitialCluster == "" {
		// etcd keeps SnapshotCatchUpEntries raft entries in memory (5 000 by default, each a
		// whole write: a Git sync's batches hold megabytes) so that a slow follower can catch up
		// without a snapshot. A single member has no followers.
		ec.SnapshotCatchUpEntries = singleMemberCatchUpEntries
	}
	// NewConfig leaves this at 0, which logs every request as "expensive".
	ec.WarningUnaryRequestDuration = embed.DefaultWarningUnaryRequestDuration
	zl := newZapLogger(log)
	ec.Logger = "zap"
	ec.LogLevel = "warn"
	ec.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zl)

	srv, err := embed.StartEtcd(ec)
	if err != nil {
		return nil, fmt.Errorf("starting etcd member %s in %s: %w", cfg.Name, cfg.DataDir, err)
	}
	select {
	case <-srv.Server.ReadyNotify():
	case err := <-srv.Err():
		srv.Close()
		return nil, fmt.Errorf("starting etcd member %s: %w", cfg.Name, err)
	case <-ctx.Done():
		srv.Server.Stop()
		srv.Close()
		return nil, fmt.Errorf("waiting for etcd member %s to be ready: %w", cfg.Name, ctx.Err())
	}
	if socket != "" {
		// The directory (0700) already keeps other users out; the socket's own mode follows the
		// umask, so narrow it too.
		if err := os.Chmod(socket, 0o600); err != nil {
			srv.Close()
			return nil, fmt.Errorf("making the etcd socket private: %w", err)
		}
	}
	endpoints := []string{cu.String()}
	client, err := clientv3.New(clientv3.Config{
		Endpoints:   endpoints,
		DialTimeout: 5 * time.Second,
		Logger:      zl,
		// Objects may be up to etcd's 1.5 MiB request limit; let etcd, not gRPC, refuse them.
		MaxCallSendMsgSize: 4 << 20,
		TLS:                clientTLS,
	})
	if err != nil {
		srv.Close()
		return nil, fmt.Errorf("connecting to embedded etcd at %s: %w", cu, err)
	}
	if !listenPeer {
		peerURL = ""
	}
	log.Debug("etcd ready", "name", cfg.Name, "client", cu.String(), "peer", peerURL)
	return &Etcd{server: srv, client: client, endpoints: endpoints, peerURL: peerURL, name: cfg.Name}, nil
}

// Client returns a client connected to this member only.
func (e *Etcd) Client() *clientv3.Client { return e.client }

// Endpoints returns the member's client URLs: "unix:///DATA-DIR/client.sock" by default.
func (e *Etcd) Endpoints() []string { return append([]string(nil), e.endpoints...) }

// PeerURL returns the member's peer URL; "" when it has no peer listener.
func (e *Etcd) PeerURL() string { return e.peerURL }

// Name returns the member's name.
func (e *Etcd) Name() string { return e.name }

// Close closes the client and stops the member. It is safe to call more than once.
func (e *Etcd) Close() error {
	var err error
	if e.client != nil {
		if cerr := e.client.Close(); cerr != nil && !errors.Is(cerr, context.Canceled) {
			err = fmt.Errorf("closing etcd client: %w", cerr)
		}
		e.client = nil
	}
	if e.server != nil {
		e.server.Close()
		e.server = nil
	}
	return err
}

// FreeLocalURL returns "http://127.0.0.1:<port>" for a port that was free a moment ago.
func FreeLocalURL() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("picking a free loopback port: %w", err)
	}
	defer l.Close()
	return "http://" + l.Addr().String(), nil
}
