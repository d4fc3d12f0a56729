package gitsync

import (
	"context"
	"errors"
	"fmt"
	"net"
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
	// Repo is a local path, file://, ssh:// (or scp-like user@host:path) or https:// URL. It
	// may name a user but never carry a password (Validate refuses one: the address shows in
	// logs, errors and the GitSync object, which nodes can read); logs and the GitSync object
	// get it through RedactURL all the same.
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
	// Token authenticates https:// remotes (basic auth with the token as password and the
	// URL's user name, else "bosun", as user). It is never sent over plain http:// to a host
	// other than loopback.
	Token string
	// CAFile is a PEM bundle of CA certificates trusted for https:// remotes on top of the
	// system roots (a self-hosted server with a private CA); read again before each fetch.
	CAFile string
	// FollowRewrites applies a head that does not descend from the applied commit (a force-push)
	// as Flux and Argo CD do. Without it such a head is refused (the last good commit stays
	// live, the status says so) unless the GitSync's spec.acceptRewrite names it.
	FollowRewrites bool
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
	} else if hasPassword(c.Repo) {
		errs = append(errs, fmt.Errorf("repo: %s carries a password, which would show in logs, errors and the GitSync object that every node can read: "+
			"remove it from --repo and put the token in a file passed with --git-token-file (or in $BOSUN_GIT_TOKEN)", RedactURL(c.Repo)))
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
		case c.Token != "" && isPlainHTTP(c.Repo) && !loopbackHost(c.Repo):
			errs = append(errs, fmt.Errorf("token: refusing to send the Git token over plain http:// to %s, where anyone on the network path can read it: "+
				"use the repository's https:// URL (with --git-ca-file if a private CA signs its certificate); http:// with a token is allowed to loopback only", hostOf(c.Repo)))
		}
		switch {
		case c.CAFile != "" && kind != remoteHTTPS:
			errs = append(errs, errors.New("caFile: --git-ca-file only applies to https:// repositories"))
		case c.CAFile != "" && isPlainHTTP(c.Repo):
			errs = append(errs, fmt.Errorf("caFile: --git-ca-file is for https://, and %s is plain http://: use its https:// URL", RedactURL(c.Repo)))
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
		if err := parseable(repo); err != nil {
			return 0, err
		}
		return remoteSSH, nil
	case strings.HasPrefix(repo, "https://"), strings.HasPrefix(repo, "http://"):
		if err := parseable(repo); err != nil {
			return 0, err
		}
		return remoteHTTPS, nil
	case strings.Contains(repo, "://"):
		return 0, fmt.Errorf("%q: unsupported scheme; use a path, file://, ssh:// or https://", RedactURL(repo))
	case isSCPLike(repo):
		return remoteSSH, nil
	default:
		return remoteFile, nil
	}
}

// parseable checks that repo parses as a URL; the error names it redacted (url.Parse's own
// error quotes the whole address, password and all).
func parseable(repo string) error {
	_, err := url.Parse(repo)
	if err == nil {
		return nil
	}
	var uerr *url.Error
	if errors.As(err, &uerr) {
		err = uerr.Err
	}
	return fmt.Errorf("parsing %q: %v", RedactURL(repo), err)
}

// isPlainHTTP reports whether repo is an http:// URL (no TLS).
func isPlainHTTP(repo string) bool { return strings.HasPrefix(repo, "http://") }

// loopbackHost reports whether the URL repo points at this machine's loopback interface, where
// nothing on a network path can read what is sent in clear.
func loopbackHost(repo string) bool {
	u, err := url.Parse(repo)
	if err != nil {
		return false
	}
	host := u.Hostname()
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// hostOf is the host[:port] of the URL repo, for messages.
func hostOf(repo string) string {
	if u, err := url.Parse(repo); err == nil {
		return u.Host
	}
	return RedactURL(repo)
}

// isSCPLike recognises git's "user@host:path" form.
func isSCPLike(repo string) bool {
	at, colon := strings.Index(repo, "@"), strings.Index(repo, ":")
	return at > 0 && colon > at && !filepath.IsAbs(repo)
}
