// Package webhook receives push and pull-request events from GitHub, Gitea and GitLab (and a
// generic HMAC-signed endpoint), verifies them and turns them into actions: a push to the
// tracked branch triggers a sync at once (polling stays the fallback), a pull-request event is
// handed to the forge integration.
//
//	POST /hooks/{github,gitea,gitlab,generic}
//	  ─> bounded body ─> secret (Config.SecretFrom, else Config.Secret)
//	  ─> signature (HMAC-SHA256; GitLab: X-Gitlab-Token compared in constant time)
//	  ─> delivery ID seen? (replay: ignored) ─> parse event
//	  ─> push to Branch: Trigger()   pull request: PullRequests.HandlePullRequest (async)
package webhook

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Provider is the kind of sender, the last segment of the hook path.
type Provider string

// Providers.
const (
	GitHub  Provider = "github"
	Gitea   Provider = "gitea"
	GitLab  Provider = "gitlab"
	Generic Provider = "generic"
)

// PullRequestHandler acts on pull-request events (the forge integration).
type PullRequestHandler interface {
	HandlePullRequest(ctx context.Context, ev PullRequest)
}

// Targets are what verified events act on; the leader sets them (see Receiver.SetTargets).
type Targets struct {
	// Trigger asks for a sync at once (gitsync.Syncer.Trigger).
	Trigger func()
	// PullRequests, if set, receives pull-request events.
	PullRequests PullRequestHandler
}

// Config configures a Receiver.
type Config struct {
	// Secret signs deliveries (HMAC-SHA256), or is GitLab's X-Gitlab-Token (GitLab does not
	// sign: it sends the secret itself, which is compared in constant time).
	Secret []byte
	// SecretFrom, when set, is asked for the secret of each delivery and overrides Secret; a
	// nil secret without error means Secret. An error rejects the delivery (503): a secret
	// that is configured but unreadable never falls back to another.
	SecretFrom func(ctx context.Context) ([]byte, error)
	// Branch is the tracked branch: only a push to it triggers a sync.
	Branch string
	// MaxBody bounds a delivery (default 1 MiB; larger ones are rejected with 413).
	MaxBody int64
	// ReplayWindow is how many delivery IDs are remembered (default 4096).
	ReplayWindow int
	Logger       *slog.Logger
}

// Receiver is the http.Handler of /hooks/{provider}.
type Receiver struct {
	cfg  Config
	log  *slog.Logger
	seen *deliveries

	mu      sync.Mutex
	targets Targets
	// ctx bounds the asynchronous pull-request handling; set by SetTargets.
	ctx context.Context
}

// ErrNoSecret is returned by New without a secret: unsigned webhooks are never accepted.
var ErrNoSecret = errors.New("webhook secret is empty")

// New returns a Receiver; it answers 503 until SetTargets is called.
func New(cfg Config) (*Receiver, error) {
	if len(cfg.Secret) == 0 {
		return nil, ErrNoSecret
	}
	if cfg.Branch == "" {
		cfg.Branch = "main"
	}
	if cfg.MaxBody == 0 {
		cfg.MaxBody = 1 << 20
	}
	if cfg.ReplayWindow == 0 {
		cfg.ReplayWindow = 4096
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Receiver{cfg: cfg, log: log.With("component", "webhook"), seen: newDeliveries(cfg.ReplayWindow)}, nil
}

// SetTargets points verified events at t while ctx lives (the leader's term); a zero Targets
// makes the receiver answer 503 again.
func (r *Receiver) SetTargets(ctx context.Context, t Targets) {
	r.mu.Lock()
	r.targets, r.ctx = t, ctx
	r.mu.Unlock()
}

func (r *Receiver) current() (Targets, context.Context) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ctx != nil && r.ctx.Err() != nil {
		return Targets{}, nil
	}
	return r.targets, r.ctx
}

// PathPrefix is where the receiver is mounted.
const PathPrefix = "/hooks/"

// ServeHTTP implements http.Handler for POST /hooks/{provider}.
func (r *Receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	provider := Provider(strings.Trim(strings.TrimPrefix(req.URL.Path, PathPrefix), "/"))
	log := r.log.With("provider", provider, "remote", req.RemoteAddr)
	reject := func(code int, msg string, args ...any) {
		log.Warn("webhook rejected: "+msg, args...)
		http.Error(w, msg, code)
	}
	switch provider {
	case GitHub, Gitea, GitLab, Generic:
	default:
		reject(http.StatusNotFound, "unknown webhook provider; use /hooks/github, /hooks/gitea, /hooks/gitlab or /hooks/generic")
		return
	}
	if req.Method != http.MethodPost {
		reject(http.StatusMethodNotAllowed, "webhooks are POSTed")
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, req.Body, r.cfg.MaxBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			reject(http.StatusRequestEntityTooLarge, fmt.Sprintf("body larger than %d bytes", r.cfg.MaxBody))
			return
		}
		reject(http.StatusBadRequest, "reading body failed", "err", err)
		return
	}
	secret := r.cfg.Secret
	if r.cfg.SecretFrom != nil {
		s, err := r.cfg.SecretFrom(req.Context())
		if err != nil {
			reject(http.StatusServiceUnavailable, "webhook secret unavailable", "err", err)
			return
		}
		if s != nil && len(s) == 0 {
			reject(http.StatusServiceUnavailable, "webhook secret unavailable", "err", ErrNoSecret)
			return
		}
		if s != nil {
			secret = s
		}
	}
	if err := Verify(provider, secret, req.Header, body); err != nil {
		reject(http.StatusUnauthorized, "signature check failed", "err", err)
		return
	}
	ev, err := Parse(provider, req.Header, body)
	if err != nil {
		reject(http.StatusBadRequest, err.Error())
		return
	}
	targets, ctx := r.current()
	if targets.Trigger == nil {
		reject(http.StatusServiceUnavailable, "this operator is not the leader; the leader handles webhooks")
		return
	}
	// A replay (same delivery ID) is acknowledged so that the sender stops, and does nothing.
	if ev.Delivery != "" && !r.seen.add(string(provider)+"/"+ev.Delivery) {
		log.Warn("webhook replay ignored", "delivery", ev.Delivery)
		io.WriteString(w, "duplicate delivery ignored\n")
		return
	}
	log = log.With("event", ev.Kind, "delivery", ev.Delivery)
	switch ev.Kind {
	case KindIgnored:
		log.Debug("webhook event ignored", "header", firstOf(req.Header.Get("X-GitHub-Event"), req.Header.Get("X-Gitea-Event")))
		io.WriteString(w, "event ignored\n")
	case KindPing:
		log.Info("webhook ping")
		io.WriteString(w, "pong\n")
	case KindPush:
		if provider == Generic && ev.Push.Branch == "" {
			ev.Push.Branch = r.cfg.Branch // a bare "sync now"
		}
		if ev.Push.Branch != r.cfg.Branch {
			log.Info("push to another branch ignored", "branch", ev.Push.Branch)
			io.WriteString(w, "push to an untracked branch ignored\n")
			return
		}
		log.Info("push to the tracked branch: syncing now", "branch", ev.Push.Branch, "after", ev.Push.After)
		targets.Trigger()
		w.WriteHeader(http.StatusAccepted)
		io.WriteString(w, "sync triggered\n")
	case KindPullRequest:
		pr := ev.PullRequest
		pr.Received = time.Now()
		log.Info("pull request event", "number", pr.Number, "action", pr.Action, "head", pr.HeadSHA, "merged", pr.Merged)
		if pr.Merged && pr.Base == r.cfg.Branch {
			targets.Trigger() // the merge is a push to the tracked branch too; don't wait for it
		}
		if targets.PullRequests != nil {
			go targets.PullRequests.HandlePullRequest(ctx, *pr)
		}
		w.WriteHeader(http.StatusAccepted)
		io.WriteString(w, "pull request accepted\n")
	}
}

// Verify checks a delivery's signature with the provider's scheme: GitHub and the generic
// endpoint X-Hub-Signature-256 ("sha256=<hex>"), Gitea X-Gitea-Signature (hex; its
// X-Hub-Signature-256 is accepted too), GitLab the X-Gitlab-Token shared secret. Comparisons are
// constant-time.
func Verify(p Provider, secret []byte, h http.Header, body []byte) error {
	switch p {
	case GitLab:
		tok := h.Get("X-Gitlab-Token")
		if tok == "" {
			return errors.New("X-Gitlab-Token missing")
		}
		if subtle.ConstantTimeCompare([]byte(tok), secret) != 1 {
			return errors.New("X-Gitlab-Token does not match the secret")
		}
		return nil
	case Gitea:
		if sig := h.Get("X-Gitea-Signature"); sig != "" {
			return checkHMAC(secret, body, sig, "X-Gitea-Signature")
		}
	}
	sig := h.Get("X-Hub-Signature-256")
	if sig == "" {
		return errors.New("X-Hub-Signature-256 missing: configure the webhook with a secret")
	}
	hexSig, ok := strings.CutPrefix(sig, "sha256=")
	if !ok {
		return errors.New("X-Hub-Signature-256 is not sha256=<hex>")
	}
	return checkHMAC(secret, body, hexSig, "X-Hub-Signature-256")
}

func checkHMAC(secret, body []byte, hexSig, header string) error {
	got, err := hex.DecodeString(strings.TrimSpace(hexSig))
	if err != nil {
		return fmt.Errorf("%s is not hex", header)
	}
	m := hmac.New(sha256.New, secret)
	m.Write(body)
	if !hmac.Equal(got, m.Sum(nil)) {
		return fmt.Errorf("%s does not match the body", header)
	}
	return nil
}

// Sign returns the HMAC-SHA256 of body as hex (what X-Gitea-Signature carries; GitHub prefixes
// "sha256=").
func Sign(secret, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write(body)
	return hex.EncodeToString(m.Sum(nil))
}

// deliveries remembers the last n delivery IDs.
type deliveries struct {
	mu    sync.Mutex
	set   map[string]bool
	order []string
	next  int
}

func newDeliveries(n int) *deliveries {
	return &deliveries{set: make(map[string]bool, n), order: make([]string, n)}
}

// add records id and reports whether it is new.
func (d *deliveries) add(id string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.set[id] {
		return false
	}
	if old := d.order[d.next]; old != "" {
		delete(d.set, old)
	}
	d.order[d.next] = id
	d.next = (d.next + 1) % len(d.order)
	d.set[id] = true
	return true
}
