package gitsync

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"path"
	"path/filepath"
	"strings"
	"time"
)

// Config says which repository, branch and sub-directory to sync, and how.
type Config struct {
	// Name is the GitSync object's name; default "default".
	Name string
	// Repo is a local path, file://, ssh:// (or scp-like user@host:path) or https:// URL.
	Repo string
	// Branch defaults to "main".
	Branch string
	// Path is the sub-directory of the repository to load; default ".".
	Path string
	// Interval between polls; default 10s.
	Interval time.Duration
	// FetchTimeout bounds one fetch, from dialling to the last byte of the pack; default 2m. A
	// remote that accepts the connection and never answers fails the sync instead of stalling it.
	FetchTimeout time.Duration
	// WorkDir holds the local clone (under the operator's data dir).
	WorkDir string
	// SSHKeyFile and KnownHostsFile authenticate ssh:// remotes; the host key is always checked.
	SSHKeyFile, KnownHostsFile string
	// Token authenticates https:// remotes (basic auth with the token as password).
	Token string
	// OnSynced, when set, is called after each sync that applied a commit (also one that
	// changed nothing), with what it wrote; it runs in the sync loop, so it must not block.
	OnSynced func(ctx context.Context, r SyncReport)
}

// DefaultInterval is the polling interval when Config.Interval is zero.
const DefaultInterval = 10 * time.Second

// DefaultFetchTimeout bounds one fetch when Config.FetchTimeout is zero.
const DefaultFetchTimeout = 2 * time.Minute

func (c Config) withDefaults() Config {
	if c.Name == "" {
		c.Name = "default"
	}
	if c.Branch == "" {
		c.Branch = "main"
	}
	c.Path = cleanPath(c.Path)
	if c.Interval == 0 {
		c.Interval = DefaultInterval
	}
	if c.FetchTimeout == 0 {
		c.FetchTimeout = DefaultFetchTimeout
	}
	return c
}

// cleanPath normalises a repository sub-directory: "" and "./" become ".", no leading slash.
func cleanPath(p string) string {
	p = path.Clean("/" + strings.ReplaceAll(p, "\\", "/"))
	p = strings.TrimPrefix(p, "/")
	if p == "" {
		return "."
	}
	return p
}

// Validate checks the configuration and names the offending field (flag).
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	if c.Repo == "" {
		errs = append(errs, errors.New("repo: required (a path, file://, ssh:// or https:// URL)"))
	} else if _, err := remoteKind(c.Repo); err != nil {
		errs = append(errs, fmt.Errorf("repo: %w", err))
	}
	if c.WorkDir == "" {
		errs = append(errs, errors.New("workDir: required (where the clone lives)"))
	}
	if c.Interval < 0 {
		errs = append(errs, fmt.Errorf("interval: %s is negative", c.Interval))
	}
	if c.FetchTimeout < 0 {
		errs = append(errs, fmt.Errorf("fetchTimeout: %s is negative", c.FetchTimeout))
	}
	if strings.ContainsAny(c.Branch, " ~^:?*[\\") || strings.HasPrefix(c.Branch, "-") {
		errs = append(errs, fmt.Errorf("branch: %q is not a valid branch name", c.Branch))
	}
	if kind, err := remoteKind(c.Repo); err == nil {
		switch {
		case kind == remoteSSH && c.SSHKeyFile == "":
			errs = append(errs, errors.New("sshKeyFile: required for an ssh:// repository"))
		case kind == remoteSSH && c.KnownHostsFile == "":
			errs = append(errs, errors.New("knownHostsFile: required for an ssh:// repository (host keys are always checked)"))
		case kind != remoteHTTPS && c.Token != "":
			errs = append(errs, errors.New("token: only used with https:// repositories"))
		}
	}
	return errors.Join(errs...)
}

type remote int

const (
	remoteFile remote = iota + 1
	remoteSSH
	remoteHTTPS
)

// remoteKind classifies a repository address.
func remoteKind(repo string) (remote, error) {
	switch {
	case strings.HasPrefix(repo, "file://"):
		return remoteFile, nil
	case strings.HasPrefix(repo, "ssh://"):
		if _, err := url.Parse(repo); err != nil {
			return 0, fmt.Errorf("parsing %q: %w", repo, err)
		}
		return remoteSSH, nil
	case strings.HasPrefix(repo, "https://"), strings.HasPrefix(repo, "http://"):
		if _, err := url.Parse(repo); err != nil {
			return 0, fmt.Errorf("parsing %q: %w", repo, err)
		}
		return remoteHTTPS, nil
	case strings.Contains(repo, "://"):
		return 0, fmt.Errorf("%q: unsupported scheme; use a path, file://, ssh:// or https://", repo)
	case isSCPLike(repo):
		return remoteSSH, nil
	default:
		return remoteFile, nil
	}
}

// isSCPLike recognises git's "user@host:path" form.
func isSCPLike(repo string) bool {
	at, colon := strings.Index(repo, "@"), strings.Index(repo, ":")
	return at > 0 && colon > at && !filepath.IsAbs(repo)
}
