package operator

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/bosun-gitops/bosun/internal/resource"
	"github.com/bosun-gitops/bosun/operator/forge"
	"github.com/bosun-gitops/bosun/operator/forge/gitea"
	"github.com/bosun-gitops/bosun/operator/forge/github"
	"github.com/bosun-gitops/bosun/operator/gitsync"
	"github.com/bosun-gitops/bosun/operator/health"
	"github.com/bosun-gitops/bosun/operator/plan"
	"github.com/bosun-gitops/bosun/operator/preview"
	"github.com/bosun-gitops/bosun/operator/store"
	"github.com/bosun-gitops/bosun/operator/webhook"
	bosunv1 "github.com/bosun-gitops/bosun/repo-layout/v1alpha1"
	corev1 "k8s.io/api/core/v1"
)

// webhookSecretFile holds the generated webhook secret under the data dir.
const webhookSecretFile = "webhook-secret"

func (c *Config) validateForge() error {
	switch c.Forge {
	case "":
		return nil
	case "gitea":
		if c.ForgeURL == "" {
			return errors.New("--forge-url is required with --forge gitea (for example https://gitea.example.com)")
		}
	case "github":
	default:
		return fmt.Errorf("--forge %q: use gitea or github", c.Forge)
	}
	if c.ForgeToken == "" {
		return fmt.Errorf("--forge-token-file is required with --forge %s (a token allowed to write commit statuses and comments)", c.Forge)
	}
	if c.ForgeRepo == "" {
		c.ForgeRepo = forge.RepoFromURL(c.Repo)
	}
	if c.ForgeRepo == "" {
		return fmt.Errorf("--forge-repo is required: cannot derive owner/name from --repo %q", gitsync.RedactURL(c.Repo))
	}
	return nil
}

// loadWebhookSecret returns the configured secret, or the one in the data dir (created on
// first start, readable by root only).
func loadWebhookSecret(cfg Config) ([]byte, error) {
	if len(cfg.WebhookSecret) > 0 {
		return cfg.WebhookSecret, nil
	}
	p := filepath.Join(cfg.DataDir, webhookSecretFile)
	b, err := os.ReadFile(p)
	if err == nil {
		return []byte(strings.TrimSpace(string(b))), nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("reading webhook secret: %w", err)
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return nil, err
	}
	secret := hex.EncodeToString(raw)
	if err := os.WriteFile(p, []byte(secret+"\n"), 0o600); err != nil {
		return nil, fmt.Errorf("writing webhook secret %s: %w", p, err)
	}
	return []byte(secret), nil
}

// gitWebhookSecret returns the webhook secret that bosun.yaml's spec.webhook.secretRef names,
// read from the synced Secret at each delivery (so that a change in Git applies at the next
// one); nil when the Cluster names none. A reference that cannot be resolved is an error: the
// file's secret must not stand in for one that Git replaced.
func gitWebhookSecret(st *store.Store) func(ctx context.Context) ([]byte, error) {
	return func(ctx context.Context) ([]byte, error) {
		l, err := st.List(ctx, resource.Clusters, "", store.ListOptions{})
		if err != nil {
			return nil, fmt.Errorf("reading the Cluster: %w", err)
		}
		var ref *bosunv1.SecretKeyRef
		for _, obj := range l.Items {
			if c := obj.(*bosunv1.Cluster); c.Spec.Webhook != nil && c.Spec.Webhook.SecretRef != nil {
				ref = c.Spec.Webhook.SecretRef
				break
			}
		}
		if ref == nil {
			return nil, nil
		}
		obj, err := st.Get(ctx, resource.Secrets, ref.Namespace, ref.Name)
		if err != nil {
			return nil, fmt.Errorf("reading Secret %s/%s, which bosun.yaml's spec.webhook.secretRef names: %w", ref.Namespace, ref.Name, err)
		}
		v := bytes.TrimSpace(obj.(*corev1.Secret).Data[ref.Key])
		if len(v) == 0 {
			return nil, fmt.Errorf("Secret %s/%s has no value at key %q, which bosun.yaml's spec.webhook.secretRef names", ref.Namespace, ref.Name, ref.Key)
		}
		return v, nil
	}
}

// newPullRequestHandlers builds the webhook receiver and the plan endpoint served by the API
// server; they act once this operator leads (newPullRequestLeader).
func (o *Operator) newPullRequestHandlers(st *store.Store) (http.Handler, http.Handler, error) {
	secret, err := loadWebhookSecret(o.cfg)
	if err != nil {
		return nil, nil, err
	}
	rcv, err := webhook.New(webhook.Config{Secret: secret, SecretFrom: gitWebhookSecret(st), Branch: o.cfg.Branch, Logger: o.cfg.Logger})
	if err != nil {
		return nil, nil, err
	}
	o.hooks, o.plans = rcv, plan.NewHandler(st, o.cfg.Path, o.cfg.Logger)
	return o.hooks, o.plans, nil
}

// prLeader is the leader's side of pull-request driven deploys: health tracking of synced
// commits, preview environments and, with a forge, plan, deploy and preview statuses.
type prLeader struct {
	o        *Operator
	st       *store.Store
	tracker  *health.Tracker
	provider forge.Provider // nil without --forge
	forge    *forge.Integration
}

func (o *Operator) newPullRequestLeader(st *store.Store, cache health.Cache) *prLeader {
	pr := &prLeader{o: o, st: st}
	tc := health.TrackerConfig{Store: st, Cache: cache, Logger: o.cfg.Logger}
	if p := o.forgeProvider(); p != nil {
		pr.provider = p
		pr.forge = forge.NewIntegration(forge.IntegrationConfig{Provider: p, Repo: o.cfg.ForgeRepo, Branch: o.cfg.Branch, Logger: o.cfg.Logger})
		tc.OnProgress = pr.forge.DeployProgress
		tc.OnSettled = pr.forge.DeploySettled
		tc.OnSuperseded = pr.forge.DeploySuperseded
	}
	pr.tracker = health.NewTracker(tc)
	return pr
}

func (o *Operator) forgeProvider() forge.Provider {
	hc := &http.Client{Timeout: 30 * time.Second}
	switch o.cfg.Forge {
	case "gitea":
		return gitea.New(o.cfg.ForgeURL, o.cfg.ForgeToken, hc)
	case "github":
		return github.New(o.cfg.ForgeURL, o.cfg.ForgeToken, hc)
	}
	return nil
}

func (pr *prLeader) onSynced(ctx context.Context, r gitsync.SyncReport) {
	pr.tracker.OnSynced(ctx, r)
}

// start points the webhook receiver and the plan endpoint at this leader's syncer, and runs
// the preview environments, until ctx (the leadership) ends.
func (pr *prLeader) start(ctx context.Context, syncer *gitsync.Syncer) {
	o := pr.o
	targets := webhook.Targets{Trigger: syncer.Trigger}
	var handlers pullRequestHandlers
	var previews *preview.Manager
	if o.cfg.PreviewLabel != "" {
		cfg := preview.Config{Store: pr.st, Loader: syncer, Repo: o.cfg.ForgeRepo, Branch: o.cfg.Branch, Label: o.cfg.PreviewLabel, Logger: o.cfg.Logger}
		if pr.provider != nil {
			cfg.Statuses = pr.provider
		}
		previews = preview.New(cfg)
		previews.Start(ctx)
		handlers = append(handlers, previews) // first: it returns at once, the forge plans
	}
	if pr.forge != nil {
		pr.forge.SetPlanner(syncer)
		handlers = append(handlers, pr.forge)
	}
	if len(handlers) > 0 {
		targets.PullRequests = handlers
	}
	o.mu.Lock()
	o.previews = previews
	o.mu.Unlock()
	if o.hooks != nil {
		o.hooks.SetTargets(ctx, targets)
	}
	if o.plans != nil {
		o.plans.SetPlanner(syncer)
	}
	go func() {
		<-ctx.Done()
		if o.hooks != nil {
			o.hooks.SetTargets(ctx, webhook.Targets{})
		}
		if o.plans != nil {
			o.plans.SetPlanner(nil)
		}
		o.mu.Lock()
		if o.previews == previews {
			o.previews = nil
		}
		o.mu.Unlock()
	}()
}

// currentPreviews returns the leader's preview manager (nil while not leading or with previews
// off).
func (o *Operator) currentPreviews() *preview.Manager {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.previews
}

// pullRequestHandlers hands each pull-request event to every handler in turn.
type pullRequestHandlers []webhook.PullRequestHandler

func (hs pullRequestHandlers) HandlePullRequest(ctx context.Context, ev webhook.PullRequest) {
	for _, h := range hs {
		h.HandlePullRequest(ctx, ev)
	}
}
