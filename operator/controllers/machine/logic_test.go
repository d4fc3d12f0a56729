package machine

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bosun-gitops/bosun/bootstrap"
	"github.com/bosun-gitops/bosun/internal/pki"
	"github.com/bosun-gitops/bosun/internal/resource"
	"github.com/bosun-gitops/bosun/operator/controllers/controllertest"
	bosunv1 "github.com/bosun-gitops/bosun/repo-layout/v1alpha1"
	"github.com/google/go-cmp/cmp"
	"golang.org/x/crypto/ssh"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// These tests run the controller against a real store and informers with a fake Bootstrapper:
// what they check is the controller's own logic (how many bootstraps run at once, when a failed
// one is retried, what a spec change or an upgrade starts), not SSH. The e2e tests in
// e2e/bootstrap run the real bootstrap.

// call is one Bootstrap call the fake received.
type call struct {
	machine string
	upgrade bool
	labels  map[string]string
	start   time.Time
	end     time.Time
	err     error
}

// fakeBoot records calls and runs each through behave, which may block (on ctx or a gate).
type fakeBoot struct {
	digest string
	behave func(ctx context.Context, m *bosunv1.Machine, upgrade bool, n int) error

	mu         sync.Mutex
	calls      []call
	running    int
	maxRunning int
	upgrading  int
	maxUpgrade int
}

func (f *fakeBoot) Bootstrap(ctx context.Context, m *bosunv1.Machine, upgrade bool) (bootstrap.Result, error) {
	f.mu.Lock()
	n := len(f.calls)
	f.calls = append(f.calls, call{machine: m.Name, upgrade: upgrade, labels: m.Spec.Labels, start: time.Now()})
	f.running++
	f.maxRunning = max(f.maxRunning, f.running)
	if upgrade {
		f.upgrading++
		f.maxUpgrade = max(f.maxUpgrade, f.upgrading)
	}
	f.mu.Unlock()
	err := f.behave(ctx, m, upgrade, n)
	f.mu.Lock()
	f.calls[n].end, f.calls[n].err = time.Now(), err
	f.running--
	if upgrade {
		f.upgrading--
	}
	f.mu.Unlock()
	if err != nil {
		return bootstrap.Result{}, err
	}
	return bootstrap.Result{BinaryDigest: f.digest, Changed: []string{bootstrap.StepBinary}}, nil
}

func (f *fakeBoot) snapshot() []call {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

func (f *fakeBoot) counts() (calls, running, maxRunning, upgrading, maxUpgrade int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.calls), f.running, f.maxRunning, f.upgrading, f.maxUpgrade
}

// gate lets blocked bootstraps go one token at a time.
type gate chan struct{}

func (g gate) wait(ctx context.Context) error {
	select {
	case <-g:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// logicEnv is a store, informers and one machine controller with a fake bootstrapper.
type logicEnv struct {
	*controllertest.Env
	mc   *Controller
	boot *fakeBoot
}

func newLogicEnv(t *testing.T, o Options, boot *fakeBoot, maxUnavailable int32) *logicEnv {
	t.Helper()
	env := controllertest.New(t, nil)
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.NewSignerFromKey(key)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := pki.NewCA("test-ca")
	if err != nil {
		t.Fatal(err)
	}
	nodeCA, err := pki.NewCA("test-node-serving-ca")
	if err != nil {
		t.Fatal(err)
	}
	o.Signer, o.CA, o.NodeServingCA, o.Bootstrapper = signer, ca, nodeCA, boot
	o.ServerURL = "https://192.0.2.254:6443"
	o.Binary = func(string) (bootstrap.Binary, error) {
		return bootstrap.Binary{}, errors.New("the fake bootstrapper uploads nothing")
	}
	env.MustCreate(resource.Clusters, &bosunv1.Cluster{ObjectMeta: metav1.ObjectMeta{Name: "lab"},
		Spec: bosunv1.ClusterSpec{Upgrade: bosunv1.UpgradePolicy{MaxUnavailable: maxUnavailable}}})
	mc, err := New(env.Context, o)
	if err != nil {
		t.Fatal(err)
	}
	return &logicEnv{Env: env, mc: mc, boot: boot}
}

// run starts the informers and the controller.
func (e *logicEnv) run() {
	e.T.Helper()
	e.Context.Informers.Start(e.Ctx)
	if !e.Context.Informers.WaitForCacheSync(e.Ctx) {
		e.T.Fatal("informer caches did not sync")
	}
	go func() { _ = e.mc.Run(e.Ctx) }()
}

// newMachine is a Machine as gitsync creates it, with the controller's finalizer in place.
func newMachine(name string) *bosunv1.Machine {
	return &bosunv1.Machine{
		ObjectMeta: metav1.ObjectMeta{Name: name, Finalizers: []string{Finalizer}},
		Spec:       bosunv1.MachineSpec{Address: "192.0.2.1", Port: 22, User: "root", HostKey: "SHA256:nR/ocfKOyyJOFJcC7+9JXsOB/PuLEG+0qde1pFhRYcs"},
	}
}

// createReady stores a machine that an earlier operator bootstrapped with agent digest.
func (e *logicEnv) createReady(name, digest string) {
	e.T.Helper()
	m := newMachine(name)
	m.Status = bosunv1.MachineStatus{Phase: bosunv1.MachineReady, AgentDigest: digest, ObservedSpecHash: e.mc.specHash(m)}
	e.MustCreate(resource.Machines, m)
}

func (e *logicEnv) machine(name string) *bosunv1.Machine {
	e.T.Helper()
	obj, err := e.Store.Get(e.Ctx, resource.Machines, "", name)
	if err != nil {
		e.T.Fatal(err)
	}
	return obj.(*bosunv1.Machine)
}

// events are the reasons of the events recorded for the machine.
func (e *logicEnv) events(name string) []corev1.Event {
	var out []corev1.Event
	for _, o := range e.List(resource.Events, "") {
		ev := o.(*corev1.Event)
		if ev.InvolvedObject.Kind == "Machine" && ev.InvolvedObject.Name == name {
			out = append(out, *ev)
		}
	}
	return out
}

func (e *logicEnv) waitPhase(name string, phase bosunv1.MachinePhase, extra func(*bosunv1.Machine) error) *bosunv1.Machine {
	e.T.Helper()
	var m *bosunv1.Machine
	e.Eventually(20*time.Second, name+" "+string(phase), func() error {
		m = e.machine(name)
		if m.Status.Phase != phase {
			return fmt.Errorf("phase %s, lastError %q", m.Status.Phase, m.Status.LastError)
		}
		if extra != nil {
			return extra(m)
		}
		return nil
	})
	return m
}

// settle gives the controller time to do what it should not: a test that waits for nothing to
// happen can only catch a wrong start that comes this soon, and a correct controller passes it
// however slow the machine is.
func settle() { time.Sleep(time.Second) }

// TestUpgradeRollout: with maxUnavailable 2, three Ready machines on an old agent are upgraded at
// most two at a time; the second upgrade fails, and once the first completes no further machine
// is started: the rollout stops, the failure is in the Machine's status (Failed, lastError, the
// Upgraded condition) and in an UpgradeFailed event. When the failed machine is fixed (its spec
// changes and its bootstrap succeeds) the rollout goes on with the third machine.
func TestUpgradeRollout(t *testing.T) {
	first := make(gate)
	boot := &fakeBoot{digest: "new"}
	var failed string
	boot.behave = func(ctx context.Context, m *bosunv1.Machine, upgrade bool, n int) error {
		switch n {
		case 0:
			return first.wait(ctx)
		case 1:
			failed = m.Name
			return errors.New("uploading the agent: disk full")
		}
		return nil
	}
	e := newLogicEnv(t, Options{Digest: "new", RetryBase: time.Hour, RetryMax: time.Hour}, boot, 2)
	names := []string{"m1", "m2", "m3"}
	for _, n := range names {
		e.createReady(n, "old")
	}
	e.run()

	// Two upgrades start; the second fails while the first still runs.
	e.Eventually(20*time.Second, "two upgrades started", func() error {
		if calls, _, _, _, _ := boot.counts(); calls != 2 {
			return fmt.Errorf("%d calls", calls)
		}
		return nil
	})
	calls := boot.snapshot()
	upgraded, failing := calls[0].machine, calls[1].machine
	if !calls[0].upgrade || !calls[1].upgrade {
		t.Errorf("calls %+v, want two upgrades", calls)
	}
	m := e.waitPhase(failing, bosunv1.MachineFailed, nil)
	settle()
	if calls, running, _, _, _ := boot.counts(); calls != 2 || running != 1 {
		t.Fatalf("while one upgrade runs and one failed: %d calls, %d running; want 2 and 1 (maxUnavailable 2 holds the third)", calls, running)
	}
	if !strings.Contains(m.Status.LastError, "disk full") {
		t.Errorf("lastError %q, want the upgrade's error", m.Status.LastError)
	}
	c := findCondition(m.Status.Conditions, ConditionUpgraded)
	if c == nil || c.Status != metav1.ConditionFalse || c.Reason != ReasonUpgradeFailed || !strings.Contains(c.Message, "disk full") {
		t.Errorf("Upgraded condition %+v, want False/%s with the error", c, ReasonUpgradeFailed)
	}

	// The first upgrade completes; the third machine must not start: the rollout stopped.
	first <- struct{}{}
	e.waitPhase(upgraded, bosunv1.MachineReady, func(m *bosunv1.Machine) error {
		if m.Status.AgentDigest != "new" {
			return fmt.Errorf("agent digest %q", m.Status.AgentDigest)
		}
		return nil
	})
	settle()
	third := ""
	for _, n := range names {
		if n != upgraded && n != failing {
			third = n
		}
	}
	if calls := boot.snapshot(); len(calls) != 2 {
		t.Fatalf("after a failed upgrade the rollout went on: calls %v, want only %s and %s", machinesOf(calls), upgraded, failing)
	}
	if m := e.machine(third); m.Status.AgentDigest != "old" || m.Status.Phase != bosunv1.MachineReady {
		t.Errorf("%s: phase %s digest %s, want it left Ready on the old agent", third, m.Status.Phase, m.Status.AgentDigest)
	}
	e.Eventually(10*time.Second, "an UpgradeFailed event on "+failing, func() error {
		for _, ev := range e.events(failing) {
			if ev.Reason == ReasonUpgradeFailed && ev.Type == corev1.EventTypeWarning &&
				strings.Contains(ev.Message, "disk full") && strings.Contains(ev.Message, "rollout stopped") {
				return nil
			}
		}
		return fmt.Errorf("events %v", reasons(e.events(failing)))
	})
	if failed != failing {
		t.Errorf("the fake failed %s, the controller recorded %s", failed, failing)
	}

	// Fixing the failed machine (a spec change) re-runs its upgrade; once it succeeds the rollout
	// resumes with the third machine.
	fixed := e.machine(failing).DeepCopy()
	fixed.Spec.Labels = map[string]string{"disk": "cleaned"}
	if _, err := e.Store.Update(e.Ctx, resource.Machines, fixed); err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		e.waitPhase(n, bosunv1.MachineReady, func(m *bosunv1.Machine) error {
			if m.Status.AgentDigest != "new" {
				return fmt.Errorf("agent digest %q", m.Status.AgentDigest)
			}
			if c := findCondition(m.Status.Conditions, ConditionUpgraded); c == nil || c.Status != metav1.ConditionTrue {
				return fmt.Errorf("Upgraded condition %+v", c)
			}
			return nil
		})
	}
	calls = boot.snapshot()
	if diff := cmp.Diff([]string{upgraded, failing, failing, third}, machinesOf(calls)); diff != "" {
		t.Errorf("bootstrap calls (-want +got):\n%s", diff)
	}
	for _, c := range calls {
		if !c.upgrade {
			t.Errorf("call for %s was not an upgrade", c.machine)
		}
	}
	if _, _, _, _, maxUp := boot.counts(); maxUp > 2 {
		t.Errorf("%d upgrades ran at once, want at most 2 (maxUnavailable)", maxUp)
	}
}

// TestUpgradeOneAtATime: with the default maxUnavailable (1) four machines are upgraded strictly
// one after the other.
func TestUpgradeOneAtATime(t *testing.T) {
	boot := &fakeBoot{digest: "new"}
	boot.behave = func(ctx context.Context, m *bosunv1.Machine, upgrade bool, n int) error {
		select { // long enough that a second upgrade started too early would overlap this one
		case <-time.After(200 * time.Millisecond):
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	e := newLogicEnv(t, Options{Digest: "new"}, boot, 0)
	names := []string{"m1", "m2", "m3", "m4"}
	for _, n := range names {
		e.createReady(n, "old")
	}
	e.run()
	for _, n := range names {
		e.waitPhase(n, bosunv1.MachineReady, func(m *bosunv1.Machine) error {
			if m.Status.AgentDigest != "new" {
				return fmt.Errorf("agent digest %q", m.Status.AgentDigest)
			}
			return nil
		})
	}
	calls := boot.snapshot()
	if len(calls) != 4 {
		t.Errorf("calls %v, want one upgrade per machine", machinesOf(calls))
	}
	for i := 1; i < len(calls); i++ {
		if calls[i].start.Before(calls[i-1].end) {
			t.Errorf("upgrade of %s started before that of %s ended", calls[i].machine, calls[i-1].machine)
		}
	}
	if _, _, _, _, maxUp := boot.counts(); maxUp != 1 {
		t.Errorf("%d upgrades ran at once, want 1", maxUp)
	}
}

// TestRetryBackoff: a failing bootstrap is retried, each time after a longer wait, with the
// failure count, the error and the retry time in the status, and a BootstrapFailed event; once
// it succeeds the status is clean.
func TestRetryBackoff(t *testing.T) {
	boot := &fakeBoot{digest: "d1"}
	boot.behave = func(ctx context.Context, m *bosunv1.Machine, upgrade bool, n int) error {
		if n < 3 {
			return fmt.Errorf("connecting to 192.0.2.1:22: connection refused (attempt %d)", n+1)
		}
		return nil
	}
	base := 300 * time.Millisecond
	e := newLogicEnv(t, Options{Digest: "d1", RetryBase: base, RetryMax: time.Second}, boot, 0)
	e.MustCreate(resource.Machines, newMachine("m1"))
	e.run()
	m := e.waitPhase("m1", bosunv1.MachineFailed, func(m *bosunv1.Machine) error {
		if m.Status.Failures < 1 {
			return fmt.Errorf("failures %d", m.Status.Failures)
		}
		return nil
	})
	if m.Status.NextRetry == nil || !strings.Contains(m.Status.LastError, "connection refused") {
		t.Errorf("failed status: nextRetry %v lastError %q, want a retry time and the error", m.Status.NextRetry, m.Status.LastError)
	}
	m = e.waitPhase("m1", bosunv1.MachineReady, nil)
	if m.Status.Failures != 0 || m.Status.LastError != "" || m.Status.NextRetry != nil {
		t.Errorf("after success: failures %d lastError %q nextRetry %v, want them cleared", m.Status.Failures, m.Status.LastError, m.Status.NextRetry)
	}
	calls := boot.snapshot()
	if len(calls) != 4 {
		t.Fatalf("%d calls, want 3 failures and a success", len(calls))
	}
	// Each retry waits at least the backoff after the failure it follows (a lower bound only:
	// a slow machine waits longer, never shorter).
	for i, want := range []time.Duration{base, 2 * base, time.Second} {
		if gap := calls[i+1].start.Sub(calls[i].end); gap < want {
			t.Errorf("retry %d came %s after the failure, want at least %s", i+1, gap, want)
		}
	}
	e.Eventually(10*time.Second, "BootstrapFailed events", func() error {
		n := 0
		for _, ev := range e.events("m1") {
			if ev.Reason == "BootstrapFailed" && strings.Contains(ev.Message, "connection refused") && strings.Contains(ev.Message, "retrying at") {
				n += max(1, int(ev.Count))
			}
		}
		if n != 3 {
			return fmt.Errorf("%d BootstrapFailed events, want 3 (events: %v)", n, reasons(e.events("m1")))
		}
		return nil
	})
}

func TestBackoff(t *testing.T) {
	o := Options{RetryBase: 5 * time.Second, RetryMax: 5 * time.Minute}
	var got []time.Duration
	for _, failures := range []int32{1, 2, 3, 6, 7, 8, 100} {
		got = append(got, o.backoff(failures))
	}
	want := []time.Duration{5 * time.Second, 10 * time.Second, 20 * time.Second, 160 * time.Second,
		5 * time.Minute, 5 * time.Minute, 5 * time.Minute}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("backoff (-want +got):\n%s", diff)
	}
}

// TestSpecChangeReruns: a spec change re-runs the bootstrap of a Ready machine, and cancels and
// restarts one that is still running, so that the new spec is what ends up installed.
func TestSpecChangeReruns(t *testing.T) {
	started := make(chan struct{}, 10)
	boot := &fakeBoot{digest: "d1"}
	boot.behave = func(ctx context.Context, m *bosunv1.Machine, upgrade bool, n int) error {
		started <- struct{}{}
		if m.Spec.Labels["stage"] == "slow" {
			<-ctx.Done() // hangs until cancelled
			return ctx.Err()
		}
		return nil
	}
	e := newLogicEnv(t, Options{Digest: "d1"}, boot, 0)
	e.MustCreate(resource.Machines, newMachine("m1"))
	e.run()
	first := e.waitPhase("m1", bosunv1.MachineReady, nil)

	relabel := func(stage string) {
		t.Helper()
		m := e.machine("m1").DeepCopy()
		m.Spec.Labels = map[string]string{"stage": stage}
		if _, err := e.Store.Update(e.Ctx, resource.Machines, m); err != nil {
			t.Fatal(err)
		}
	}
	// A Ready machine whose spec changes is bootstrapped again.
	relabel("two")
	second := e.waitPhase("m1", bosunv1.MachineReady, func(m *bosunv1.Machine) error {
		if m.Status.ObservedSpecHash == first.Status.ObservedSpecHash {
			return errors.New("the spec change is not observed yet")
		}
		return nil
	})
	// A change during a bootstrap cancels it; the new spec is bootstrapped.
	for len(started) > 0 {
		<-started
	}
	relabel("slow")
	<-started
	relabel("three")
	e.waitPhase("m1", bosunv1.MachineReady, func(m *bosunv1.Machine) error {
		if m.Status.ObservedSpecHash == second.Status.ObservedSpecHash {
			return errors.New("the spec change is not observed yet")
		}
		return nil
	})
	var got []string
	for _, c := range boot.snapshot() {
		s := c.labels["stage"]
		if errors.Is(c.err, context.Canceled) {
			s += " (cancelled)"
		}
		got = append(got, s)
	}
	if diff := cmp.Diff([]string{"", "two", "slow (cancelled)", "three"}, got); diff != "" {
		t.Errorf("bootstraps by spec label (-want +got):\n%s", diff)
	}
	if m := e.machine("m1"); m.Status.ObservedSpecHash != e.mc.specHash(m) {
		t.Errorf("observed spec hash %s is not the current spec's %s", m.Status.ObservedSpecHash, e.mc.specHash(m))
	}
}

// TestBoundedParallelBootstraps: with MaxParallel 2, five new machines are bootstrapped two at
// a time and all end Ready.
func TestBoundedParallelBootstraps(t *testing.T) {
	g := make(gate)
	boot := &fakeBoot{digest: "d1"}
	boot.behave = func(ctx context.Context, m *bosunv1.Machine, upgrade bool, n int) error { return g.wait(ctx) }
	e := newLogicEnv(t, Options{Digest: "d1", MaxParallel: 2}, boot, 0)
	names := []string{"m1", "m2", "m3", "m4", "m5"}
	for _, n := range names {
		e.MustCreate(resource.Machines, newMachine(n))
	}
	e.run()
	for done := 0; done < len(names); done++ {
		want := min(2, len(names)-done)
		e.Eventually(20*time.Second, fmt.Sprintf("%d bootstraps running", want), func() error {
			if _, running, _, _, _ := boot.counts(); running != want {
				return fmt.Errorf("%d running", running)
			}
			return nil
		})
		if done == 0 {
			settle() // the other three must wait for a slot
			if calls, running, _, _, _ := boot.counts(); calls != 2 || running != 2 {
				t.Fatalf("%d started, %d running; want 2 and 2 (MaxParallel)", calls, running)
			}
		}
		g <- struct{}{}
	}
	for _, n := range names {
		e.waitPhase(n, bosunv1.MachineReady, nil)
	}
	if calls, _, maxRunning, _, _ := boot.counts(); calls != 5 || maxRunning != 2 {
		t.Errorf("%d calls, at most %d at once; want 5 calls, 2 at once", calls, maxRunning)
	}
}

func machinesOf(calls []call) []string {
	var out []string
	for _, c := range calls {
		out = append(out, c.machine)
	}
	return out
}

func reasons(evs []corev1.Event) []string {
	var out []string
	for _, ev := range evs {
		out = append(out, ev.Reason)
	}
	return out
}
