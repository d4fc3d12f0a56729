package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/bosun-gitops/bosun/internal/logging"
	"github.com/bosun-gitops/bosun/operator"
	"github.com/bosun-gitops/bosun/operator/preview"
	"github.com/bosun-gitops/bosun/operator/store"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/api/resource"
)

type logFlags struct{ format, level string }

func (l *logFlags) add(fs *pflag.FlagSet) {
	fs.StringVar(&l.format, "log-format", "text", "log format: text or json")
	fs.StringVar(&l.level, "log-level", "info", "log level: debug, info, warn or error")
}

// addOperatorFlags binds the operator's flags to cfg; `bosun up` shares them.
func addOperatorFlags(fs *pflag.FlagSet, cfg *operator.Config, endpoints *string, tokenFile *string) {
	fs.StringVar(&cfg.DataDir, "data-dir", "/var/lib/bosun", "directory for etcd, certificates, the admin kubeconfig and the Git clone")
	fs.StringVar(&cfg.Repo, "repo", "", "Git repository to sync: a path, file://, ssh:// or https:// URL (a user name but no password: put a token in --git-token-file)")
	fs.StringVar(&cfg.Branch, "branch", "main", "branch to sync")
	fs.StringVar(&cfg.Path, "path", ".", "sub-directory of the repository holding the manifests")
	fs.DurationVar(&cfg.Interval, "interval", 0, "how often to poll the repository (default 10s)")
	fs.BoolVar(&cfg.FollowForcePush, "follow-force-push", false, "apply a branch whose history was rewritten (force-push) as Flux and Argo CD do; by default such a head is refused, the last good commit stays live, until `bosun sync --accept-rewrite SHA` accepts it")
	fs.DurationVar(&cfg.FetchTimeout, "fetch-timeout", 0, "how long one fetch may take before the sync records Failed and the last good commit stays applied (default 2m)")
	fs.StringVar(&cfg.Listen, "listen", "127.0.0.1:6443", "API server address")
	fs.StringSliceVar(&cfg.ServerNames, "server-name", nil, "extra DNS name or IP for the API server certificate (repeatable)")
	fs.StringVar(endpoints, "etcd-endpoints", "", "comma-separated URLs of an existing etcd cluster (default: embedded etcd in --data-dir)")
	fs.StringVar(&cfg.Etcd.CAFile, "etcd-cafile", "", "CA bundle to verify the etcd servers")
	fs.StringVar(&cfg.Etcd.CertFile, "etcd-certfile", "", "client certificate for etcd")
	fs.StringVar(&cfg.Etcd.KeyFile, "etcd-keyfile", "", "client key for etcd")
	fs.StringVar(&cfg.SSHKeyFile, "ssh-key", "", "private key for ssh:// repositories")
	fs.StringVar(&cfg.KnownHostsFile, "known-hosts", "", "known_hosts file that ssh:// repositories are checked against")
	fs.StringVar(tokenFile, "git-token-file", "", "file holding a token for https:// repositories (or set $BOSUN_GIT_TOKEN); never sent over plain http:// except to loopback")
	fs.StringVar(&cfg.GitCAFile, "git-ca-file", "", "PEM bundle of CA certificates trusted, besides the system's, for https:// repositories (a self-hosted Git server with a private CA)")
	fs.StringVar(&cfg.DebugListen, "debug-listen", "", "serve Go profiles (net/http/pprof, no credentials) on this loopback host:port, for example 127.0.0.1:6060 (default off)")
	limit := &memoryLimitValue{n: &cfg.MemoryLimit}
	_ = limit.Set("auto")
	fs.Var(limit, "memory-limit", "soft memory limit of the process, for example 512Mi: the garbage collector works harder near it; "+
		"auto: 90% of the cgroup's memory limit if there is one, else none ($GOMEMLIMIT when set); 0: none (unless $GOMEMLIMIT sets one)")
	fs.StringVar(&cfg.StorageMediaType, "storage-media-type", store.MediaTypeProtobuf, "how objects are written to etcd: "+store.MediaTypeProtobuf+
		", or "+store.MediaTypeJSON+" while operators older than protobuf values share the etcd cluster (both are always read)")
	fs.IntVar(&cfg.GCPercent, "gc-percent", defaultGCPercent(operator.DefaultGCPercent), "garbage collection target: collect once the heap grew by this percentage of what the last collection kept "+
		"(lower: less memory, more CPU; Go's default is 100; $GOGC when set)")
}

// defaultGCPercent is a --gc-percent's default: 0 (keep $GOGC) when $GOGC is set, else d.
func defaultGCPercent(d int) int {
	if os.Getenv("GOGC") != "" {
		return 0
	}
	return d
}

// memoryLimitValue is --memory-limit: a size (512Mi, 1G, bytes), "auto" or 0.
type memoryLimitValue struct {
	n *int64
	s string
}

func (v *memoryLimitValue) String() string { return v.s }
func (v *memoryLimitValue) Type() string   { return "size" }

func (v *memoryLimitValue) Set(s string) error {
	if s == "auto" {
		*v.n, v.s = operator.AutoMemoryLimit(), s
		return nil
	}
	q, err := resource.ParseQuantity(s)
	if err != nil || q.Sign() < 0 {
		return fmt.Errorf("want a size such as 512Mi or 1G, auto, or 0 for no limit")
	}
	*v.n, v.s = q.Value(), s
	return nil
}

// finishOperatorConfig applies what flags alone cannot: the endpoint list, the token source and
// the logger.
func finishOperatorConfig(cfg *operator.Config, endpoints, tokenFile string, lf *logFlags) error {
	log, err := logging.New(os.Stderr, lf.format, lf.level)
	if err != nil {
		return err
	}
	cfg.Logger = log
	if endpoints != "" {
		cfg.Etcd.Endpoints = strings.Split(endpoints, ",")
	}
	cfg.GitToken = os.Getenv("BOSUN_GIT_TOKEN")
	if tokenFile != "" {
		b, err := os.ReadFile(tokenFile)
		if err != nil {
			return err
		}
		cfg.GitToken = strings.TrimSpace(string(b))
	}
	return nil
}

// forgeFlags are the webhook and forge flags of `bosun operator`.
type forgeFlags struct{ secretFile, tokenFile string }

func (f *forgeFlags) add(fs *pflag.FlagSet, cfg *operator.Config) {
	fs.StringVar(&f.secretFile, "webhook-secret-file", "", "file holding the webhook secret (default DATA-DIR/webhook-secret, created on first start; bosun.yaml's spec.webhook.secretRef replaces both)")
	fs.StringVar(&cfg.Forge, "forge", "", "post plan and deploy statuses and plan comments to this forge: gitea or github")
	fs.StringVar(&cfg.ForgeURL, "forge-url", "", "forge base URL (Gitea: http(s)://host[:port]; GitHub: API URL, default https://api.github.com)")
	fs.StringVar(&f.tokenFile, "forge-token-file", "", "file holding the forge API token (or set $BOSUN_FORGE_TOKEN)")
	fs.StringVar(&cfg.ForgeRepo, "forge-repo", "", "owner/name of the repository on the forge (default: derived from --repo)")
	fs.StringVar(&cfg.PreviewLabel, "preview-label", preview.DefaultLabel, "pull requests with this label are deployed into their own namespace pr-<number> until closed (\"\" turns previews off)")
}

func (f *forgeFlags) finish(cfg *operator.Config) error {
	if f.secretFile != "" {
		b, err := os.ReadFile(f.secretFile)
		if err != nil {
			return fmt.Errorf("--webhook-secret-file: %w", err)
		}
		cfg.WebhookSecret = []byte(strings.TrimSpace(string(b)))
	}
	cfg.ForgeToken = os.Getenv("BOSUN_FORGE_TOKEN")
	if f.tokenFile != "" {
		b, err := os.ReadFile(f.tokenFile)
		if err != nil {
			return fmt.Errorf("--forge-token-file: %w", err)
		}
		cfg.ForgeToken = strings.TrimSpace(string(b))
	}
	return nil
}

func newOperatorCmd() *cobra.Command {
	var cfg operator.Config
	var endpoints, tokenFile string
	var lf logFlags
	var ff forgeFlags
	cmd := &cobra.Command{
		Use:   "operator",
		Short: "Run the control plane: sync Git into etcd and serve the API",
		Example: `  bosun operator --data-dir /var/lib/bosun --repo ssh://git@git.example.com/infra/fleet.git \
      --ssh-key /etc/bosun/deploy_key --known-hosts /etc/bosun/known_hosts`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := finishOperatorConfig(&cfg, endpoints, tokenFile, &lf); err != nil {
				return err
			}
			if err := ff.finish(&cfg); err != nil {
				return err
			}
			op, err := operator.New(cfg)
			if err != nil {
				return err
			}
			go releaseStartupPages(cmd.Context(), op.Ready(), cfg.Logger)
			return op.Run(cmd.Context())
		},
	}
	addOperatorFlags(cmd.Flags(), &cfg, &endpoints, &tokenFile)
	cmd.Flags().StringVar(&cfg.AdvertiseAddress, "advertise-address", "", "IP address machines reach the API server on (added to its certificate; bootstrapped agents use it)")
	cmd.Flags().StringSliceVar(&cfg.AgentPlainHTTPRegistries, "agent-insecure-registry", nil, "registry host:port that bootstrapped agents pull from over plain HTTP (repeatable)")
	lf.add(cmd.Flags())
	ff.add(cmd.Flags(), &cfg)
	return cmd
}
