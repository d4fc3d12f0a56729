package forge

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bosun-gitops/bosun/internal/resource"
	"github.com/bosun-gitops/bosun/operator/gitsync"
	"github.com/bosun-gitops/bosun/operator/webhook"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// memProvider records what the integration posts.
type memProvider struct {
	mu       sync.Mutex
	statuses map[string][]Status
	comments []string
}

func (m *memProvider) SetStatus(_ context.Context, _, sha string, st Status) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.statuses[sha] = append(m.statuses[sha], st)
	return nil
}

func (m *memProvider) UpsertComment(_ context.Context, _ string, _ int, _, body string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.comments = append(m.comments, body)
	return nil
}

// plannerFunc adapts a function to plan.RefPlanner.
type plannerFunc func(ctx context.Context, ref, sha string) (*gitsync.Plan, error)

func (f plannerFunc) PlanRef(ctx context.Context, ref, sha string) (*gitsync.Plan, error) {
	return f(ctx, ref, sha)
}

func configMapPlan(v string) *gitsync.Plan {
	cm := func(v string) *corev1.ConfigMap {
		return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "c", Namespace: "ns"}, Data: map[string]string{"k": v}}
	}
	return &gitsync.Plan{Changes: []gitsync.Change{{Action: gitsync.ActionUpdate, Resource: resource.ConfigMaps,
		Namespace: "ns", Name: "c", File: "c.yaml", Line: 1, Live: cm("old"), Desired: cm(v)}}}
}

// TestNewerHeadDuringPlan checks that a push that arrives while the previous head is being
// planned keeps the older plan out of the comment; the older head still gets its status.
func TestNewerHeadDuringPlan(t *testing.T) {
	mp := &memProvider{statuses: map[string][]Status{}}
	var in *Integration
	newer := webhook.PullRequest{Number: 7, Action: webhook.ActionUpdated, HeadSHA: "h2", Base: "main"}
	in = NewIntegration(IntegrationConfig{Provider: mp, Repo: "o/fleet", Planner: plannerFunc(func(_ context.Context, _, sha string) (*gitsync.Plan, error) {
		if sha == "h1" {
			in.arrived(newer) // h2 is pushed while h1 is planned
			return configMapPlan("from-h1"), nil
		}
		return configMapPlan("from-h2"), nil
	})})
	older := webhook.PullRequest{Number: 7, Action: webhook.ActionOpened, HeadSHA: "h1", Base: "main", Received: time.Now()}
	newer.Received = older.Received.Add(time.Millisecond)
	in.HandlePullRequest(t.Context(), older)
	in.HandlePullRequest(t.Context(), newer)

	if got := mp.statuses["h1"]; len(got) != 2 || got[1].State != StateSuccess {
		t.Errorf("statuses of h1: %+v, want pending then success", got)
	}
	if got := mp.statuses["h2"]; len(got) != 2 || got[1].State != StateSuccess {
		t.Errorf("statuses of h2: %+v, want pending then success", got)
	}
	if len(mp.comments) != 1 || !strings.Contains(mp.comments[0], "from-h2") {
		t.Errorf("comments posted: %q, want only h2's plan", mp.comments)
	}
}
