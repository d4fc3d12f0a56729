//go:build e2e

package bootstrap_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bosun-gitops/bosun/e2e/e2eutil"
	bosunv1 "github.com/bosun-gitops/bosun/repo-layout/v1alpha1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// clients are the API clients of the operator's admin kubeconfig.
type clients struct{ e2eutil.Clients }

func newClients(t *testing.T, ctx context.Context, dataDir string) clients {
	return clients{e2eutil.NewClients(t, ctx, dataDir)}
}

// machines lists the Machines ("" and an error text while the API is not up yet).
func (c clients) machines(ctx context.Context) (map[string]bosunv1.Machine, error) {
	list, err := c.Dyn.Resource(e2eutil.MachinesGVR).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	out := map[string]bosunv1.Machine{}
	for _, u := range list.Items {
		var m bosunv1.Machine
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &m); err != nil {
			return nil, err
		}
		out[m.Name] = m
	}
	return out, nil
}

// waitFor polls cond every 100 ms until it holds or ctx ends.
func waitFor(t *testing.T, ctx context.Context, what string, cond func() (bool, string)) {
	t.Helper()
	e2eutil.WaitFor(t, ctx, what, 100*time.Millisecond, cond)
}

// stepClock records, from the test's side, when each machine entered each phase/step.
type stepClock struct {
	mu    sync.Mutex
	start time.Time
	seen  map[string][]stepMark
}

type stepMark struct {
	at   time.Duration
	step string
}

func newStepClock() *stepClock { return &stepClock{start: time.Now(), seen: map[string][]stepMark{}} }

func (s *stepClock) observe(ms map[string]bosunv1.Machine) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Since(s.start)
	for name, m := range ms {
		cur := string(m.Status.Phase)
		if cur == "" {
			cur = "synced"
		}
		if m.Status.Step != "" {
			cur += "/" + m.Status.Step
		}
		marks := s.seen[name]
		if len(marks) == 0 || marks[len(marks)-1].step != cur {
			s.seen[name] = append(marks, stepMark{at: now, step: cur})
		}
	}
}

// breakdown is "step1 120ms, step2 300ms, ..., total" for one machine, from first sighting to Ready.
func (s *stepClock) breakdown(name string) (string, time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	marks := s.seen[name]
	var parts []string
	var total time.Duration
	for i, m := range marks {
		if i+1 < len(marks) {
			parts = append(parts, fmt.Sprintf("%s %s", m.step, (marks[i+1].at-m.at).Round(time.Millisecond)))
		}
		if strings.HasPrefix(m.step, string(bosunv1.MachineReady)) {
			total = m.at
			break
		}
	}
	return strings.Join(parts, ", "), total
}
