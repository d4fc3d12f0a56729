package gitsync

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	git "github.com/go-git/go-git/v5"
	gitconfig "github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/transport"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
	gitssh "github.com/go-git/go-git/v5/plumbing/transport/ssh"
)

const remoteName = "origin"

// ErrBranchNotFound means the remote has no such branch (deleted, or a wrong --branch).
var ErrBranchNotFound = errors.New("branch not found")

// ErrNoAnswer means the remote did not complete a fetch within Config.FetchTimeout.
var ErrNoAnswer = errors.New("no answer")

// gitRepo is the local bare clone of the configured remote.
type gitRepo struct {
	url     string
	display string // url as printed: RedactURL(url)
	branch  string
	dir     string
	timeout time.Duration
	ssh     bool
	// newAuth builds the credentials before every fetch, so that a corrected key or
	// known_hosts file is used by the next sync without a restart.
	newAuth func() (transport.AuthMethod, error)
	auth    transport.AuthMethod // the credentials of the last fetch
	// caFile (Config.CAFile) is read before every fetch too, so a renewed CA needs no restart.
	caFile string
	// secrets are masked in every fetch error (see secretsOf).
	secrets []string
	repo    *git.Repository
}

// commitInfo is what the status reports about a commit.
type commitInfo struct {
	SHA, Author, Message string
	Time                 time.Time
}

func openGitRepo(cfg Config) (*gitRepo, error) {
	u, err := remoteURL(cfg.Repo)
	if err != nil {
		return nil, err
	}
	auth, err := authFor(cfg)
	if err != nil {
		return nil, err
	}
	if _, err := loadCABundle(cfg.CAFile); err != nil {
		return nil, err
	}
	kind, _ := remoteKind(cfg.Repo)
	return &gitRepo{
		url: u, display: RedactURL(u), branch: cfg.Branch, dir: filepath.Join(cfg.WorkDir, "repo.git"),
		timeout: cfg.FetchTimeout, ssh: kind == remoteSSH,
		newAuth: func() (transport.AuthMethod, error) { return authFor(cfg) },
		auth:    auth,
		caFile:  cfg.CAFile,
		secrets: secretsOf(cfg),
	}, nil
}

// remoteURL makes a local path absolute so that the clone does not depend on the working dir.
func remoteURL(repo string) (string, error) {
	kind, err := remoteKind(repo)
	if err != nil {
		return "", err
	}
	if kind == remoteFile && !strings.HasPrefix(repo, "file://") {
		abs, err := filepath.Abs(repo)
		if err != nil {
			return "", fmt.Errorf("resolving repository path %q: %w", repo, err)
		}
		return abs, nil
	}
	return repo, nil
}

// authFor builds the transport credentials: the operator's SSH key with a known_hosts check for
// ssh, basic auth with the token as password for https (the URL's user name, else "bosun", as
// user: GitLab deploy tokens and Bitbucket app passwords need the right one), none for local
// repositories.
func authFor(cfg Config) (transport.AuthMethod, error) {
	kind, err := remoteKind(cfg.Repo)
	if err != nil {
		return nil, err
	}
	switch kind {
	case remoteSSH:
		user := "git"
		if u, err := url.Parse(cfg.Repo); err == nil && u.User != nil && u.User.Username() != "" {
			user = u.User.Username()
		} else if isSCPLike(cfg.Repo) {
			user = cfg.Repo[:strings.Index(cfg.Repo, "@")]
		}
		keys, err := gitssh.NewPublicKeysFromFile(user, cfg.SSHKeyFile, "")
		if err != nil {
			return nil, fmt.Errorf("loading SSH key %s: %w", cfg.SSHKeyFile, err)
		}
		if cfg.KnownHostsFile == "" {
			return nil, errors.New("an ssh:// repository needs a known_hosts file: host keys are always checked")
		}
		cb, err := gitssh.NewKnownHostsCallback(cfg.KnownHostsFile)
		if err != nil {
			return nil, fmt.Errorf("loading known_hosts %s: %w", cfg.KnownHostsFile, err)
		}
		keys.HostKeyCallback = cb
		return keys, nil
	case remoteHTTPS:
		if cfg.Token == "" {
			return nil, nil
		}
		return &githttp.BasicAuth{Username: basicAuthUser(cfg.Repo), Password: cfg.Token}, nil
	}
	return nil, nil
}

// basicAuthUser is the user name sent with the token: the one in the URL, else "bosun" (forges
// that take the token as password ignore it).
func basicAuthUser(repo string) string {
	if u, err := url.Parse(repo); err == nil && u.User != nil && u.User.Username() != "" {
		return u.User.Username()
	}
	return "bosun"
}

// loadCABundle reads the PEM bundle of --git-ca-file ("" = none) and checks that it holds at
// least one certificate: a wrong file would otherwise only show as "unknown authority".
func loadCABundle(file string) ([]byte, error) {
	if file == "" {
		return nil, nil
	}
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("reading --git-ca-file: %w", err)
	}
	if !x509.NewCertPool().AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("--git-ca-file %s holds no PEM certificate: pass the CA certificate(s) that sign the Git server's certificate, "+
			"as \"-----BEGIN CERTIFICATE-----\" blocks", file)
	}
	return pem, nil
}

// open opens the clone in dir, or initialises it; a clone of another remote is replaced.
func (g *gitRepo) open() error {
	if g.repo != nil {
		return nil
	}
	repo, err := git.PlainOpen(g.dir)
	if err == nil {
		if rem, rerr := repo.Remote(remoteName); rerr == nil && len(rem.Config().URLs) == 1 && rem.Config().URLs[0] == g.url {
			g.repo = repo
			return nil
		}
		// Another remote (the --repo flag changed): start over rather than mix histories.
		if err := os.RemoveAll(g.dir); err != nil {
			return fmt.Errorf("removing stale clone %s: %w", g.dir, err)
		}
	}
	if err := os.MkdirAll(filepath.Dir(g.dir), 0o700); err != nil {
		return fmt.Errorf("creating clone directory: %w", err)
	}
	repo, err = git.PlainInit(g.dir, true)
	if err != nil {
		return fmt.Errorf("initialising clone in %s: %w", g.dir, err)
	}
	if _, err := repo.CreateRemote(&gitconfig.RemoteConfig{Name: remoteName, URLs: []string{g.url}}); err != nil {
		return fmt.Errorf("configuring remote: %w", err)
	}
	g.repo = repo
	return nil
}

func (g *gitRepo) remoteRef() plumbing.ReferenceName {
	return plumbing.NewRemoteReferenceName(remoteName, g.branch)
}

// fetch updates the remote-tracking branch (forced, so force-pushes are followed) and returns its
// commit. A branch missing on the remote gives ErrBranchNotFound.
func (g *gitRepo) fetch(ctx context.Context) (*object.Commit, error) {
	spec := gitconfig.RefSpec(fmt.Sprintf("+refs/heads/%s:%s", g.branch, g.remoteRef()))
	err := g.fetchRefs(ctx, spec)
	switch {
	case err == nil, errors.Is(err, git.NoErrAlreadyUpToDate):
	case errors.Is(err, ErrNoAnswer):
		return nil, fmt.Errorf("fetching %s from %s: %w", g.branch, g.display, err)
	case isMissingRef(err):
		return nil, fmt.Errorf("fetching %s from %s: %w", g.branch, g.display, ErrBranchNotFound)
	default:
		return nil, fmt.Errorf("fetching %s from %s: %w", g.branch, g.display, err)
	}
	ref, err := g.repo.Reference(g.remoteRef(), true)
	if err != nil {
		return nil, fmt.Errorf("resolving %s: %w", g.remoteRef(), ErrBranchNotFound)
	}
	c, err := g.repo.CommitObject(ref.Hash())
	if err != nil {
		return nil, fmt.Errorf("reading commit %s: %w", ref.Hash(), err)
	}
	return c, nil
}

// fetchRefs fetches specs (forced) from the remote within the fetch timeout; past it the error
// wraps ErrNoAnswer. Every fetch of the clone goes through here (the sync's, and plans of pull
// requests and `bosun plan --ref`): the deadline covers the whole fetch, from dialling to the
// last byte of the pack, the credentials and the CA bundle are read afresh, and the error has
// the token and any password masked (a remote's answer may quote them).
func (g *gitRepo) fetchRefs(ctx context.Context, specs ...gitconfig.RefSpec) error {
	return redactSecrets(g.fetchRefsUnredacted(ctx, specs...), g.secrets)
}

func (g *gitRepo) fetchRefsUnredacted(ctx context.Context, specs ...gitconfig.RefSpec) error {
	if err := g.open(); err != nil {
		return err
	}
	auth, err := g.newAuth()
	if err != nil {
		return err
	}
	g.auth = auth
	ca, err := loadCABundle(g.caFile)
	if err != nil {
		return err
	}
	fctx, cancel := context.WithTimeout(ctx, g.timeout)
	defer cancel()
	deadline, _ := fctx.Deadline()
	opts := &git.FetchOptions{RemoteName: remoteName, RefSpecs: specs, Auth: auth, Force: true, Tags: git.NoTags, CABundle: ca}
	if g.ssh {
		opts.ProxyOptions = deadlineProxy(deadline)
	}
	err = g.repo.FetchContext(fctx, opts)
	if err != nil && !errors.Is(err, git.NoErrAlreadyUpToDate) && ctx.Err() == nil && !time.Now().Before(deadline) {
		// Whatever the transport reports (a cancelled request, an i/o timeout, EOF), a fetch
		// that ended at its deadline got no answer in time.
		return fmt.Errorf("%w within %s: %w", ErrNoAnswer, g.timeout, err)
	}
	return err
}

// descendsFrom reports whether old (a commit SHA) is an ancestor of c. A commit the clone does
// not have is not: the clone holds the whole history of every branch it fetched.
func (g *gitRepo) descendsFrom(c *object.Commit, old string) (bool, error) {
	oc, err := g.repo.CommitObject(plumbing.NewHash(old))
	if errors.Is(err, plumbing.ErrObjectNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("reading commit %s: %w", shortSHA(old), err)
	}
	return oc.IsAncestor(c)
}

func isMissingRef(err error) bool {
	var noMatch git.NoMatchingRefSpecError
	return errors.As(err, &noMatch) || strings.Contains(err.Error(), "couldn't find remote ref")
}

// subtree returns the tree of dir ("." = the root) in commit c.
func subtree(c *object.Commit, dir string) (*object.Tree, error) {
	tree, err := c.Tree()
	if err != nil {
		return nil, fmt.Errorf("reading tree of %s: %w", c.Hash, err)
	}
	if dir == "." {
		return tree, nil
	}
	sub, err := tree.Tree(dir)
	if err != nil {
		return nil, fmt.Errorf("path %q in commit %s: %w", dir, shortSHA(c.Hash.String()), err)
	}
	return sub, nil
}

func infoOf(c *object.Commit) commitInfo {
	msg := strings.TrimSpace(c.Message)
	if i := strings.IndexByte(msg, '\n'); i >= 0 {
		msg = msg[:i]
	}
	return commitInfo{
		SHA:     c.Hash.String(),
		Author:  fmt.Sprintf("%s <%s>", c.Author.Name, c.Author.Email),
		Message: msg,
		Time:    c.Author.When,
	}
}

func shortSHA(sha string) string {
	if len(sha) > 12 {
		return sha[:12]
	}
	return sha
}
