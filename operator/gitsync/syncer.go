package gitsync

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"path"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/bosun-gitops/bosun/internal/resource"
	"github.com/bosun-gitops/bosun/operator/store"
	repolayout "github.com/bosun-gitops/bosun/repo-layout"
	bosunv1 "github.com/bosun-gitops/bosun/repo-layout/v1alpha1"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/transport"
	"golang.org/x/crypto/ssh/knownhosts"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/watch"
)

// Syncer keeps the store in line with one branch of one repository.
type Syncer struct {
	cfg     Config
	st      Store
	log     *slog.Logger
	git     *gitRepo
	loader  *repolayout.Loader // keeps the parsed files of the last commit
	metrics *metrics
	trigger chan struct{}

	mu          sync.Mutex // one sync at a time; guards the fields below
	ensured     bool
	lastApplied string // commit this process applied completely
	handled     string // last spec.syncRequested acted on
	// managedKinds are the kinds of the objects Git manages since this process's last
	// complete apply (nil: unknown, after a failed apply or before the first). Only syncs
	// create managed objects (the API refuses the annotations that mark them), so a kind
	// outside it that the next commit does not declare either has nothing to prune or adopt
	// and is not listed: the Pods and ReplicaSets of a fleet, typically.
	managedKinds map[*resource.Resource]bool
}

// Result is what one sync did.
type Result struct {
	Commit   string
	Counts   bosunv1.SyncCounts
	Duration time.Duration
	// Skipped is true when the commit was already applied by this process and no sync was
	// requested (polling found nothing new).
	Skipped bool
}

// New validates cfg and returns a Syncer; nothing is fetched before Run or SyncOnce.
func New(cfg Config, st Store, log *slog.Logger) (*Syncer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("invalid git sync configuration: %w", err)
	}
	cfg = cfg.withDefaults()
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	g, err := openGitRepo(cfg)
	if err != nil {
		return nil, err
	}
	return &Syncer{
		cfg:     cfg,
		st:      st,
		log:     log.With("component", "gitsync", "gitsync", cfg.Name),
		git:     g,
		loader:  repolayout.NewLoader(),
		metrics: newMetrics(cfg.Name),
		trigger: make(chan struct{}, 1),
	}, nil
}

// Trigger asks for a sync as soon as possible; it never blocks.
func (s *Syncer) Trigger() {
	select {
	case s.trigger <- struct{}{}:
	default:
	}
}

// Run polls every Interval and on Trigger or a changed spec.syncRequested, until ctx ends.
func (s *Syncer) Run(ctx context.Context) error {
	go s.watchRequests(ctx)
	force := true
	for {
		if _, err := s.sync(ctx, force); err != nil && ctx.Err() == nil {
			s.log.Warn("sync failed", "err", err)
		}
		timer := time.NewTimer(s.cfg.Interval)
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil
		case <-timer.C:
			force = false
		case <-s.trigger:
			timer.Stop()
			force = true
		}
	}
}

// SyncOnce fetches and applies the branch once, re-diffing against the live objects even when
// the commit did not change.
func (s *Syncer) SyncOnce(ctx context.Context) (*Result, error) {
	return s.sync(ctx, true)
}

// watchRequests triggers a sync when spec.syncRequested of our GitSync differs from what was
// last observed; the watch is re-established when it ends.
func (s *Syncer) watchRequests(ctx context.Context) {
	for ctx.Err() == nil {
		ch, err := s.st.Watch(ctx, resource.GitSyncs, "", store.WatchOptions{
			FieldSelector: fields.OneTermEqualSelector("metadata.name", s.cfg.Name),
		})
		if err != nil {
			s.log.Warn("watching GitSync objects", "err", err)
			sleep(ctx, time.Second)
			continue
		}
		for ev := range ch {
			if ev.Type == watch.Error {
				break
			}
			gs, ok := ev.Object.(*bosunv1.GitSync)
			if !ok || gs.Name != s.cfg.Name || ev.Type == watch.Deleted {
				continue
			}
			req := gs.Spec.SyncRequested
			s.mu.Lock()
			handled := s.handled
			s.mu.Unlock()
			if req != "" && req != gs.Status.ObservedSyncRequest && req != handled {
				s.log.Info("sync requested through the API", "request", req)
				s.Trigger()
			}
		}
		sleep(ctx, 100*time.Millisecond)
	}
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// sync is one fetch + plan + apply; force re-diffs an already applied commit.
func (s *Syncer) sync(ctx context.Context, force bool) (*Result, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	start := time.Now()
	if !s.ensured {
		if _, err := s.ensureGitSync(ctx); err != nil {
			return nil, err
		}
		s.ensured = true
	}
	gs, err := s.getGitSync(ctx)
	if err != nil {
		return nil, err
	}
	request := gs.Spec.SyncRequested
	if request != gs.Status.ObservedSyncRequest {
		force = true
	}
	s.handled = request

	t := phaseTimer{last: start}
	commit, err := s.git.fetch(ctx)
	t.lap("fetch")
	if err != nil {
		return nil, s.fail(ctx, start, request, nil, fetchMessage(s.cfg, err, gs.Status.Applied.SHA), err)
	}
	info := infoOf(commit)
	res := &Result{Commit: info.SHA}
	if !force && info.SHA == s.lastApplied && gs.Status.State == bosunv1.SyncStateSynced {
		s.metrics.syncs.WithLabelValues(resultUnchanged).Inc()
		res.Skipped = true
		res.Duration = time.Since(start)
		return res, nil
	}
	liveSHA := liveCommit(gs.Status)
	if gs.Status.AppliedSource != "" && gs.Status.AppliedSource != s.source() {
		s.log.Info("the source changed since the last applied commit: not a history rewrite",
			"applied", shortSHA(liveSHA), "appliedSource", gs.Status.AppliedSource, "source", s.source())
		liveSHA = ""
	}
	rewritten := s.historyRewritten(commit, liveSHA)
	needsAccept := rewritten != "" && !s.cfg.FollowRewrites
	if needsAccept && !acceptsRewrite(gs.Spec.AcceptRewrite, info.SHA) {
		applied := shortSHA(liveSHA)
		msg := fmt.Sprintf("history rewritten: the head of %s, %s, does not descend from the applied commit %s (a force-push, or the branch deleted and pushed again); "+
			"nothing of it was applied and %s stays live; if the rewrite is intended, accept it with `bosun sync --accept-rewrite %s` "+
			"(or run the operator with --follow-force-push to follow rewrites)",
			s.cfg.Branch, shortSHA(info.SHA), applied, applied, shortSHA(info.SHA))
		return nil, s.fail(ctx, start, request, &info, msg, ErrHistoryRewritten)
	}
	if rewritten != "" { // accepted or followed
		s.log.Warn(rewritten, "applied", liveSHA, "commit", info.SHA, "branch", s.cfg.Branch)
	}

	tree, err := subtree(commit, s.cfg.Path)
	if err != nil {
		msg := fmt.Sprintf("path %q does not exist in commit %s: fix --path or push the directory; %s",
			s.cfg.Path, shortSHA(info.SHA), keepMessage(gs.Status.Applied.SHA))
		return nil, s.fail(ctx, start, request, &info, msg, err)
	}
	set, err := s.loader.LoadTree(tree)
	if err != nil {
		var list repolayout.ErrorList
		if errors.As(err, &list) {
			rel := make(repolayout.ErrorList, len(list)) // the loader may keep list
			for i, e := range list {
				e.File = s.repoFile(e.File)
				rel[i] = e
			}
			return nil, s.invalid(ctx, start, request, info, rel, gs.Status.Applied.SHA)
		}
		msg := fmt.Sprintf("loading commit %s: %v; %s", shortSHA(info.SHA), err, keepMessage(gs.Status.Applied.SHA))
		return nil, s.fail(ctx, start, request, &info, msg, err)
	}
	t.lap("load")
	want, err := desiredFrom(set, s.cfg.Path)
	if err != nil {
		return nil, s.fail(ctx, start, request, &info, err.Error(), err)
	}
	set = nil // let the loader's copies go: the desired objects are all we keep
	kinds := kindsOf(want)

	live, err := listLive(ctx, s.st, s.unlisted(kinds))
	if err != nil {
		return nil, s.fail(ctx, start, request, &info, fmt.Sprintf("reading live objects: %v; will retry", err), err)
	}
	p := computePlan(want, live)
	live, want = nil, nil
	if list := controlledAdoptions(p); len(list) > 0 {
		return nil, s.invalid(ctx, start, request, info, list, gs.Status.Applied.SHA)
	}
	if err := fullLive(ctx, s.st, p); err != nil {
		return nil, s.fail(ctx, start, request, &info, fmt.Sprintf("reading live objects: %v; will retry", err), err)
	}
	t.lap("list")
	report := p.report(info.SHA)
	if !p.empty() {
		if err := s.writeStatus(ctx, func(st *bosunv1.GitSyncStatus) {
			st.State = bosunv1.SyncStateSyncing
			st.Sync = bosunv1.SyncStatusOutOfSync
			st.Commit = commitStatus(info)
			st.Message = fmt.Sprintf("applying commit %s", shortSHA(info.SHA))
			if rewritten != "" {
				st.Message = rewritten
			}
		}); err != nil {
			return nil, err
		}
	}
	n, err := s.apply(ctx, p, info.SHA)
	t.lap("apply")
	if err == nil && needsAccept {
		s.clearAcceptRewrite(ctx) // it accepted this rewrite once, not a later return to this commit
	}
	s.countApplied(n)
	s.managedKinds = kinds // what Git manages now, pruned objects gone
	if err != nil {
		s.managedKinds = nil // some writes may be missing: list every kind next time
		msg := fmt.Sprintf("applying commit %s: %v; will retry on the next sync", shortSHA(info.SHA), err)
		return nil, s.fail(ctx, start, request, &info, msg, err)
	}
	res.Counts = bosunv1.SyncCounts{Created: n.created, Updated: n.updated, Deleted: n.deleted, Unchanged: p.unchanged}
	res.Duration = time.Since(start)
	if len(p.waiting) > 0 {
		// Not synced yet: the commit is applied again, for what waited, once that is gone.
		msg := fmt.Sprintf("commit %s applied but for %s, still being deleted (a pod waits for its node to stop it); created again once gone, retrying every %s",
			shortSHA(info.SHA), p.waitingList(), waitingRetry)
		if err := s.writeStatus(ctx, func(st *bosunv1.GitSyncStatus) {
			st.State = bosunv1.SyncStateSyncing
			st.Sync = bosunv1.SyncStatusOutOfSync
			st.Commit = commitStatus(info)
			st.Message = msg
			st.Counts = res.Counts
			st.ObservedSyncRequest = request
		}); err != nil {
			return nil, err
		}
		s.log.Info("waiting for objects being deleted", "commit", shortSHA(info.SHA), "objects", p.waitingList())
		time.AfterFunc(waitingRetry, s.Trigger)
		return res, nil
	}
	if err := s.writeStatus(ctx, func(st *bosunv1.GitSyncStatus) {
		now := metav1.NewTime(time.Now())
		st.State = bosunv1.SyncStateSynced
		st.Sync = bosunv1.SyncStatusSynced
		st.Commit = commitStatus(info)
		st.Applied = commitStatus(info)
		st.AppliedSource = s.source()
		st.Message = fmt.Sprintf("commit %s applied: %d created, %d updated, %d deleted, %d unchanged",
			shortSHA(info.SHA), n.created, n.updated, n.deleted, p.unchanged)
		if rewritten != "" {
			st.Message = rewritten + "; " + st.Message
		}
		st.Errors = nil
		st.Counts = res.Counts
		st.LastSyncedTime = &now
		st.ObservedSyncRequest = request
		st.RecordSync(st.Commit, bosunv1.SyncStatusSynced, "", now)
	}); err != nil {
		return nil, err
	}
	s.lastApplied = info.SHA
	if s.cfg.OnSynced != nil {
		s.cfg.OnSynced(ctx, report)
	}
	s.metrics.syncs.WithLabelValues(resultSynced).Inc()
	s.metrics.duration.Observe(res.Duration.Seconds())
	s.metrics.lastSuccess.SetToCurrentTime()
	s.log.Info("synced", "commit", shortSHA(info.SHA), "created", n.created, "updated", n.updated,
		"deleted", n.deleted, "unchanged", p.unchanged, "duration", res.Duration, "phases", t.String())
	if n.created+n.updated+n.deleted >= bigSync || s.loader.Parsed() >= bigSync/objectsPerFileGuess {
		// Parsing and encoding thousands of objects leaves a heap several times what stays
		// live (the loader's cache); hand it back now rather than at the scavenger's pace.
		debug.FreeOSMemory()
	}
	return res, nil
}

// kindsOf returns the kinds of want.
func kindsOf(want []*desired) map[*resource.Resource]bool {
	kinds := map[*resource.Resource]bool{}
	for _, d := range want {
		kinds[d.res] = true
	}
	return kinds
}

// unlisted returns the kinds a sync of a commit declaring kinds need not list: those with no
// managed objects since the last complete apply that the commit does not declare either.
func (s *Syncer) unlisted(kinds map[*resource.Resource]bool) map[*resource.Resource]bool {
	if s.managedKinds == nil {
		return nil
	}
	skip := map[*resource.Resource]bool{}
	for _, res := range resource.All {
		if res.InRepo && !kinds[res] && !s.managedKinds[res] {
			skip[res] = true
		}
	}
	return skip
}

func (s *Syncer) countApplied(n applyCounts) {
	s.metrics.applied.WithLabelValues("created").Add(float64(n.created))
	s.metrics.applied.WithLabelValues("updated").Add(float64(n.updated))
	s.metrics.applied.WithLabelValues("deleted").Add(float64(n.deleted))
}

// liveCommit is the commit whose objects are live: the applied one, or the one being applied
// (Syncing: its writes may have reached the store, or it waits for objects being deleted).
// Rewrites are judged against it.
func liveCommit(st bosunv1.GitSyncStatus) string {
	if st.State == bosunv1.SyncStateSyncing && st.Commit.SHA != "" {
		return st.Commit.SHA
	}
	return st.Applied.SHA
}

// source names where commits come from, as GitSyncStatus.AppliedSource records it.
func (s *Syncer) source() string { return RedactURL(s.cfg.Repo) + "#" + s.cfg.Branch }

// clearAcceptRewrite empties spec.acceptRewrite once the rewrite it accepted is applied.
func (s *Syncer) clearAcceptRewrite(ctx context.Context) {
	for attempt := 0; attempt <= maxRetries; attempt++ {
		gs, err := s.getGitSync(ctx)
		if err != nil || gs.Spec.AcceptRewrite == "" {
			return
		}
		gs.Spec.AcceptRewrite = ""
		_, err = s.st.Update(ctx, resource.GitSyncs, gs)
		if !apierrors.IsConflict(err) {
			if err != nil {
				s.log.Warn("clearing spec.acceptRewrite", "err", err)
			}
			return
		}
	}
}

// ErrHistoryRewritten is the error of a sync that refused a head that does not descend from the
// applied commit (see Config.FollowRewrites).
var ErrHistoryRewritten = errors.New("branch history rewritten")

// acceptsRewrite reports whether accepted (spec.acceptRewrite) names sha: the whole SHA or a
// prefix of at least 7 hex digits.
func acceptsRewrite(accepted, sha string) bool {
	accepted = strings.ToLower(strings.TrimSpace(accepted))
	return len(accepted) >= 7 && strings.HasPrefix(sha, accepted)
}

// historyRewritten returns, when the fetched commit does not descend from the applied one (a
// force-push), the note that the status and the log carry once it is applied; "" otherwise. Such a commit is
// applied only when accepted (spec.acceptRewrite) or followed (Config.FollowRewrites).
func (s *Syncer) historyRewritten(c *object.Commit, applied string) string {
	sha := c.Hash.String()
	if applied == "" || applied == sha {
		return ""
	}
	ok, err := s.git.descendsFrom(c, applied)
	if err != nil {
		s.log.Warn("cannot tell whether the branch history was rewritten", "applied", shortSHA(applied), "commit", shortSHA(sha), "err", err)
		return ""
	}
	if ok {
		return ""
	}
	return fmt.Sprintf("history rewritten: %s is not an ancestor of %s; applying %s", shortSHA(applied), shortSHA(sha), shortSHA(sha))
}

// fetchMessage tells the user what went wrong with the remote and what to do. The repository is
// named redacted, and err comes through fetchRefs, which masked the secrets in it.
func fetchMessage(cfg Config, err error, applied string) string {
	keep := keepMessage(applied)
	repo := RedactURL(cfg.Repo)
	kind, _ := remoteKind(cfg.Repo)
	var keyErr *knownhosts.KeyError
	var unknownCA x509.UnknownAuthorityError
	var certErr *tls.CertificateVerificationError
	switch {
	case errors.Is(err, ErrBranchNotFound):
		return fmt.Sprintf("branch %q not found in %s: push it, or point --branch at an existing branch; %s", cfg.Branch, repo, keep)
	case errors.Is(err, ErrNoAnswer):
		return fmt.Sprintf("fetch %s: no answer within %s; %s; check the remote, or raise --fetch-timeout if fetching this repository takes longer",
			repo, cfg.FetchTimeout, keep)
	case errors.As(err, &keyErr) && len(keyErr.Want) > 0:
		host := sshHost(cfg.Repo)
		return fmt.Sprintf("the SSH host key of %s does not match its entry in %s (--known-hosts): someone may be intercepting the connection, or the server's key was changed; "+
			"if the change is expected, check the new key's fingerprint with the server's administrator and replace the line for %s (ssh-keyscan %s prints the key); "+
			"the next sync reads the file again; %s", host, cfg.KnownHostsFile, host, keyscanArgs(host), keep)
	case errors.As(err, &keyErr):
		host := sshHost(cfg.Repo)
		return fmt.Sprintf("the SSH host %s is not in %s (--known-hosts): add its key after checking the fingerprint with the server's administrator (ssh-keyscan %s >> %s); "+
			"the next sync reads the file again; %s", host, cfg.KnownHostsFile, keyscanArgs(host), cfg.KnownHostsFile, keep)
	case errors.As(err, &unknownCA) && cfg.CAFile != "":
		return fmt.Sprintf("the TLS certificate of %s is signed neither by a CA in %s (--git-ca-file) nor by one of the system's: "+
			"put the CA certificate that signs the server's certificate in that file (PEM); the next sync reads it again; %s", hostOf(cfg.Repo), cfg.CAFile, keep)
	case errors.As(err, &unknownCA):
		return fmt.Sprintf("the TLS certificate of %s is not signed by a CA this machine trusts: if the Git server uses a private CA, "+
			"pass its CA certificate (PEM) with --git-ca-file; %s", hostOf(cfg.Repo), keep)
	case errors.As(err, &certErr):
		return fmt.Sprintf("the TLS certificate of %s cannot be verified: %v; fix the server's certificate, or the address in --repo if it names another host; %s",
			hostOf(cfg.Repo), certErr.Err, keep)
	case errors.Is(err, transport.ErrAuthenticationRequired) && cfg.Token == "":
		return fmt.Sprintf("%s asks for credentials: put a token allowed to read the repository in a file passed with --git-token-file (or in $BOSUN_GIT_TOKEN); %s",
			repo, keep)
	case errors.Is(err, transport.ErrAuthenticationRequired):
		return fmt.Sprintf("%s refused the token (authentication failed): check the token in --git-token-file ($BOSUN_GIT_TOKEN), that it has not expired, "+
			"and the user name in --repo if the forge needs one; the token is read at start, so restart the operator after changing it; %s", repo, keep)
	case errors.Is(err, transport.ErrAuthorizationFailed):
		return fmt.Sprintf("%s does not let the token read the repository (authorization failed): give it read access to the repository; %s", repo, keep)
	case errors.Is(err, transport.ErrRepositoryNotFound) && kind == remoteHTTPS:
		return fmt.Sprintf("%s: repository not found: check the address in --repo, and that the token may read the repository (forges answer \"not found\" to those who may not); %s",
			repo, keep)
	}
	return fmt.Sprintf("cannot fetch %s: %v; check that the repository is reachable and the credentials are right; %s", repo, err, keep)
}

// sshHost is the host[:port] of an ssh:// or scp-like repository address, as known_hosts names it.
func sshHost(repo string) string {
	if u, err := url.Parse(repo); err == nil && u.Scheme == "ssh" {
		return u.Host
	}
	if isSCPLike(repo) {
		rest := repo[strings.Index(repo, "@")+1:]
		return rest[:strings.Index(rest, ":")]
	}
	return repo
}

// keyscanArgs are ssh-keyscan's arguments for host[:port].
func keyscanArgs(host string) string {
	h, port, err := net.SplitHostPort(host)
	if err != nil || port == "22" {
		return host
	}
	return fmt.Sprintf("-p %s %s", port, h)
}

// fail records a failed attempt in the status and returns err (wrapped with the message).
func (s *Syncer) fail(ctx context.Context, start time.Time, request string, info *commitInfo, msg string, err error) error {
	s.metrics.syncs.WithLabelValues(resultFailed).Inc()
	s.metrics.duration.Observe(time.Since(start).Seconds())
	s.log.Error("sync failed", "message", msg, "duration", time.Since(start))
	if werr := s.writeStatus(ctx, func(st *bosunv1.GitSyncStatus) {
		st.State = bosunv1.SyncStateFailed
		st.Sync = bosunv1.SyncStatusFailed
		if info != nil {
			st.Commit = commitStatus(*info)
			st.RecordSync(st.Commit, bosunv1.SyncStatusFailed, msg, metav1.Now())
		}
		st.Message = msg
		st.Errors = nil
		st.ObservedSyncRequest = request
	}); werr != nil {
		s.log.Error("recording failed sync", "err", werr)
	}
	return fmt.Errorf("%s: %w", msg, err)
}

// invalid records every validation error of a commit (files relative to the repository root);
// nothing of it is applied.
func (s *Syncer) invalid(ctx context.Context, start time.Time, request string, info commitInfo, list repolayout.ErrorList, applied string) error {
	s.metrics.syncs.WithLabelValues(resultInvalid).Inc()
	s.metrics.duration.Observe(time.Since(start).Seconds())
	msg := fmt.Sprintf("commit %s is invalid (%d errors), nothing was applied: fix the files listed in errors and push; %s",
		shortSHA(info.SHA), len(list), keepMessage(applied))
	s.log.Error("invalid commit", "commit", shortSHA(info.SHA), "errors", len(list))
	errs := make([]bosunv1.FileError, len(list))
	for i, e := range list {
		errs[i] = bosunv1.FileError{File: e.File, Line: e.Line, Field: e.Field, Message: e.Reason}
	}
	if werr := s.writeStatus(ctx, func(st *bosunv1.GitSyncStatus) {
		st.State = bosunv1.SyncStateFailed
		st.Sync = bosunv1.SyncStatusFailed
		st.Commit = commitStatus(info)
		st.Message = msg
		st.Errors = errs
		st.ObservedSyncRequest = request
		st.RecordSync(st.Commit, bosunv1.SyncStatusFailed, invalidReason(list), metav1.Now())
	}); werr != nil {
		s.log.Error("recording invalid commit", "err", werr)
	}
	return fmt.Errorf("%s: %w", msg, list)
}

// repoFile turns a path relative to the loaded sub-directory into one relative to the
// repository root, which is what a user edits.
func (s *Syncer) repoFile(file string) string { return repoFile(s.cfg.Path, file) }

func repoFile(dir, file string) string {
	if dir == "." || dir == "" || file == "" {
		return file
	}
	return path.Join(dir, file)
}

// bigSync is the number of objects written (or about parsed) above which a sync returns the
// freed heap to the OS; objectsPerFileGuess turns it into a number of files parsed.
const bigSync, objectsPerFileGuess = 1000, 10

// waitingRetry is how soon a sync that waited for objects being deleted runs again.
const waitingRetry = 2 * time.Second

// clusterFile is where the Cluster object is declared.
const clusterFile = "bosun.yaml"

// defaultClusterName names the Cluster object when bosun.yaml does not.
const defaultClusterName = "default"

// desiredFrom turns a loaded set into desired objects with their applied hashes; dir is the
// loaded sub-directory of the repository (file names are made relative to the root).
func desiredFrom(set *repolayout.Set, dir string) ([]*desired, error) {
	want := make([]*desired, 0, len(set.Objects)+1)
	if set.Cluster != nil {
		c := set.Cluster.DeepCopy() // the loader's objects are shared with its later loads
		if c.Name == "" {
			c.Name = defaultClusterName
		}
		raw, err := json.Marshal(c)
		if err != nil {
			return nil, fmt.Errorf("encoding the Cluster object: %w", err)
		}
		file := repoFile(dir, clusterFile)
		want = append(want, &desired{res: resource.Clusters, obj: c, file: file, line: 1, hash: appliedHash(raw, file, 1)})
	}
	for _, o := range set.Objects {
		file := repoFile(dir, o.File)
		want = append(want, &desired{res: o.Resource, obj: o.Object, file: file, line: o.Line, hash: appliedHash(o.Raw, file, o.Line)})
	}
	return want, nil
}

func keepMessage(applied string) string {
	if applied == "" {
		return "nothing has been applied yet"
	}
	return fmt.Sprintf("the last good commit %s stays applied", shortSHA(applied))
}

// phaseTimer records how long each step of a sync took, for the sync log line.
type phaseTimer struct {
	last  time.Time
	parts []string
}

func (t *phaseTimer) lap(name string) {
	now := time.Now()
	t.parts = append(t.parts, fmt.Sprintf("%s=%s", name, now.Sub(t.last).Round(time.Millisecond)))
	t.last = now
}

func (t *phaseTimer) String() string { return strings.Join(t.parts, " ") }
