package operator

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"time"

	"github.com/bosun-gitops/bosun/operator/gitsync"
	"github.com/bosun-gitops/bosun/operator/store"
)

// Config is the operator's validated runtime configuration.
type Config struct {
	// DataDir holds the embedded etcd, the PKI, the admin kubeconfig and the Git clone.
	DataDir string
	// Repo is the Git repository to sync: a path, file://, ssh:// or https:// URL; a user name
	// but no password (that goes in GitToken).
	Repo   string
	Branch string
	// Path is the sub-directory of the repository that holds the manifests.
	Path     string
	Interval time.Duration
	// FetchTimeout bounds one fetch of the repository (default 2m).
	FetchTimeout time.Duration
	// FollowForcePush applies a rewritten branch history (force-push) without `bosun sync
	// --accept-rewrite` (gitsync.Config.FollowRewrites).
	FollowForcePush bool
	// Listen is the API server's address.
	Listen string
	// ServerNames are extra names and addresses for the API server certificate.
	ServerNames []string
	// Etcd selects an existing etcd cluster; with no endpoints the operator embeds one.
	Etcd store.ClientConfig
	// SSHKeyFile and KnownHostsFile authenticate ssh:// remotes.
	SSHKeyFile     string
	KnownHostsFile string
	// GitToken authenticates https:// remotes (never sent over plain http:// but to loopback).
	GitToken string
	// GitCAFile is a PEM bundle of CAs trusted, on top of the system's, for https:// remotes.
	GitCAFile string
	// CompactInterval and CompactKeep control etcd history compaction.
	CompactInterval time.Duration
	CompactKeep     int64
	// WebhookSecret verifies webhook deliveries on /hooks/{github,gitea,gitlab,generic}; when
	// empty it is read from DataDir/webhook-secret, created on first start. A Secret named by
	// bosun.yaml's spec.webhook.secretRef replaces it once synced.
	WebhookSecret []byte
	// Forge ("gitea" or "github"; "" for none) receives plan and deploy commit statuses and
	// plan comments; ForgeURL is its base URL, ForgeToken its API token, ForgeRepo the synced
	// repository's "owner/name" (default: derived from Repo).
	Forge      string
	ForgeURL   string
	ForgeToken string
	ForgeRepo  string
	// PreviewLabel is the pull-request label that deploys a pull request into its own
	// namespace pr-<number> (package preview); "" turns previews off.
	PreviewLabel string
	// AdvertiseAddress is the address machines reach the API server on (it is added to the
	// serving certificate); bootstrapped agents use https://<AdvertiseAddress>:<Listen port>.
	AdvertiseAddress string
	// AgentPlainHTTPRegistries are registry hosts the bootstrapped agents pull from over plain HTTP.
	AgentPlainHTTPRegistries []string
	// Identity names this operator in leader election (default hostname-pid).
	Identity string
	// DebugListen, if set, serves net/http/pprof on this loopback host:port.
	DebugListen string
	// MemoryLimit, when above 0, is the Go runtime's soft memory limit for the process in bytes
	// (debug.SetMemoryLimit): the garbage collector runs more often as the process nears it.
	MemoryLimit int64
	// GCPercent, when above 0, is the garbage collector's heap growth target (GOGC): a
	// collection starts once the heap has grown by this percentage of what the last one kept.
	GCPercent int
	// StorageMediaType is how objects are written to etcd: store.MediaTypeProtobuf (default) or
	// store.MediaTypeJSON, for operators sharing an etcd cluster with an older Bosun that reads
	// JSON only, until all are upgraded.
	StorageMediaType string
	Logger           *slog.Logger
}

// Validate checks the configuration and fills in defaults; errors name the flag to fix.
func (c *Config) Validate() error {
	if c.DataDir == "" {
		return errors.New("--data-dir is required")
	}
	abs, err := filepath.Abs(c.DataDir)
	if err != nil {
		return fmt.Errorf("--data-dir: %w", err)
	}
	c.DataDir = abs
	if c.Repo == "" {
		return errors.New("--repo is required: the Git repository to sync (path, file://, ssh:// or https:// URL)")
	}
	if c.Branch == "" {
		c.Branch = "main"
	}
	if c.Path == "" {
		c.Path = "."
	}
	if c.Interval == 0 {
		c.Interval = 10 * time.Second
	}
	if c.Interval < time.Second {
		return fmt.Errorf("--interval %s is too short: use at least 1s (webhooks and `bosun sync` trigger at once)", c.Interval)
	}
	if c.FetchTimeout < 0 {
		return fmt.Errorf("--fetch-timeout %s is negative: use a duration such as 2m", c.FetchTimeout)
	}
	if c.StorageMediaType == "" {
		c.StorageMediaType = store.MediaTypeProtobuf
	}
	if err := store.CheckMediaType(c.StorageMediaType); err != nil {
		return fmt.Errorf("--storage-media-type: %w", err)
	}
	if c.Listen == "" {
		c.Listen = "127.0.0.1:6443"
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		return fmt.Errorf("--listen %q: want host:port, for example 127.0.0.1:6443", c.Listen)
	}
	if err := validateDebugListen(c.DebugListen); err != nil {
		return err
	}
	if c.MemoryLimit < 0 {
		return fmt.Errorf("--memory-limit %d is negative: use a size such as 512Mi, or 0 for no limit", c.MemoryLimit)
	}
	if c.GCPercent < 0 {
		return fmt.Errorf("--gc-percent %d is negative: use a percentage such as 100 (Go's default)", c.GCPercent)
	}
	if c.AdvertiseAddress != "" && net.ParseIP(c.AdvertiseAddress) == nil {
		return fmt.Errorf("--advertise-address %q: want an IP address the machines can reach", c.AdvertiseAddress)
	}
	if len(c.Etcd.Endpoints) > 0 {
		if err := c.Etcd.Validate(); err != nil {
			return fmt.Errorf("--etcd-endpoints: %w", err)
		}
	}
	if c.CompactInterval == 0 {
		c.CompactInterval = 5 * time.Minute
	}
	if c.CompactKeep == 0 {
		c.CompactKeep = 10000
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if err := c.gitSyncConfig().Validate(); err != nil {
		return fmt.Errorf("Git access: %w", err)
	}
	return c.validateForge()
}

// gitSyncConfig is the Git sync's configuration (without its OnSynced hook). Validate checks it
// at start, so that a password in --repo or a token bound for plain http:// stops the operator
// before anything logs the address or sends the token.
func (c *Config) gitSyncConfig() gitsync.Config {
	return gitsync.Config{
		Repo:           c.Repo,
		Branch:         c.Branch,
		Path:           c.Path,
		Interval:       c.Interval,
		FetchTimeout:   c.FetchTimeout,
		WorkDir:        filepath.Join(c.DataDir, "git"),
		SSHKeyFile:     c.SSHKeyFile,
		KnownHostsFile: c.KnownHostsFile,
		Token:          c.GitToken,
		CAFile:         c.GitCAFile,
		FollowRewrites: c.FollowForcePush,
	}
}
