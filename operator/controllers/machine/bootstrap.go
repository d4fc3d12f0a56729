package machine

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/bosun-gitops/bosun/bootstrap"
	bosunv1 "github.com/bosun-gitops/bosun/repo-layout/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Condition types on a Machine.
const (
	// ConditionBootstrapped is True once the last bootstrap completed.
	ConditionBootstrapped = "Bootstrapped"
	// ConditionUpgraded is False while (or after failing) an agent upgrade.
	ConditionUpgraded = "Upgraded"
	// ConditionNodeReady mirrors the Node's Ready condition.
	ConditionNodeReady = "NodeReady"
)

// ReasonUpgradeFailed is the reason of a False Upgraded condition (and of the event) when an
// agent upgrade failed; while a machine has it, the rollout stops.
const ReasonUpgradeFailed = "UpgradeFailed"

// StepWaitReady is the last step: waiting for the Node to turn Ready.
const StepWaitReady = "wait-ready"

// progress turns bootstrap progress into status updates and events.
type progress struct {
	ctx  context.Context
	mc   *Controller
	m    *bosunv1.Machine
	name string
}

var phaseOfStep = map[string]bosunv1.MachinePhase{
	bootstrap.StepProbe:       bosunv1.MachineConnecting,
	bootstrap.StepPackages:    bosunv1.MachineInstalling,
	bootstrap.StepBinary:      bosunv1.MachineInstalling,
	bootstrap.StepCredentials: bosunv1.MachineInstalling,
	bootstrap.StepConfig:      bosunv1.MachineInstalling,
	bootstrap.StepService:     bosunv1.MachineStarting,
	"teardown":                bosunv1.MachineDraining,
}

func (p *progress) Step(step string) {
	phase := phaseOfStep[step]
	if _, err := p.mc.updateStatus(p.ctx, p.name, func(s *bosunv1.MachineStatus) {
		s.Step = step
		if phase != "" {
			s.Phase = phase
		}
	}); err != nil {
		p.mc.log.Warn("recording step", "machine", p.name, "step", step, "err", err)
	}
}

// Output records a command's output as an event (the tail, if long). Bootstrap commands never
// print secrets.
func (p *progress) Output(step, what string, out []byte) {
	text := strings.TrimSpace(string(out))
	if len(text) > 1024 {
		text = "..." + text[len(text)-1024:]
	}
	msg := what
	if text != "" {
		msg += ": " + text
	}
	p.mc.c.Recorder.Eventf(p.m, corev1.EventTypeNormal, reason(step), "%s", msg)
}

// reason is an event reason from a step name ("wait-ready" → "WaitReady").
func reason(step string) string {
	var b strings.Builder
	for _, part := range strings.Split(step, "-") {
		if part != "" {
			b.WriteString(strings.ToUpper(part[:1]) + part[1:])
		}
	}
	return b.String()
}

// bootstrap runs (or re-runs) the bootstrap of one machine and records the outcome.
func (mc *Controller) bootstrap(ctx context.Context, name string, upgrade bool) error {
	obj, exists, err := mc.machines.GetStore().GetByKey(name)
	if err != nil || !exists {
		return err
	}
	m := obj.(*bosunv1.Machine).DeepCopy()
	hash := mc.specHash(m)
	log := mc.log.With("machine", name)
	started := mc.c.Clock.Now()
	log.Info("bootstrapping machine", "address", m.Spec.Address, "upgrade", upgrade)
	if upgrade {
		mc.c.Recorder.Eventf(m, corev1.EventTypeNormal, "Upgrading", "upgrading the agent to %s", short(mc.o.Digest))
	}
	_, _ = mc.updateStatus(ctx, name, func(s *bosunv1.MachineStatus) {
		s.Phase, s.Step = bosunv1.MachineConnecting, "connect"
		if upgrade {
			setCondition(s, ConditionUpgraded, metav1.ConditionFalse, "Upgrading", "upgrading the agent to "+short(mc.o.Digest))
		}
	})
	res, err := mc.boot.Bootstrap(ctx, m, upgrade)
	if err != nil {
		return mc.recordFailure(ctx, m, hash, upgrade, err)
	}
	mc.mu.Lock()
	delete(mc.failedUpgrades, name)
	mc.mu.Unlock()
	written, err := mc.updateStatus(ctx, name, func(s *bosunv1.MachineStatus) {
		s.Phase, s.Step = bosunv1.MachineReady, ""
		s.LastError, s.NextRetry, s.Failures = "", nil, 0
		s.AgentDigest, s.ObservedSpecHash = res.BinaryDigest, hash
		if n := mc.node(name); n != nil {
			s.AgentVersion = n.Status.NodeInfo.KubeletVersion
		}
		changed := "no changes"
		if len(res.Changed) > 0 {
			changed = "changed: " + strings.Join(res.Changed, ", ")
		}
		setCondition(s, ConditionBootstrapped, metav1.ConditionTrue, "Bootstrapped",
			fmt.Sprintf("%s %s/%s, %s", res.Facts.OS, "linux", res.Facts.Arch, changed))
		setCondition(s, ConditionNodeReady, metav1.ConditionTrue, "NodeReady", "node "+name+" is Ready")
		if upgrade || meta.FindStatusCondition(s.Conditions, ConditionUpgraded) != nil {
			setCondition(s, ConditionUpgraded, metav1.ConditionTrue, "Upgraded", "agent runs "+short(res.BinaryDigest))
		}
	})
	mc.noteWritten(written)
	elapsed := mc.c.Clock.Since(started).Round(time.Millisecond)
	mc.c.Recorder.Eventf(m, corev1.EventTypeNormal, "Ready", "node %s is Ready (bootstrap took %s; changed: %s)",
		name, elapsed, orNone(strings.Join(res.Changed, ", ")))
	log.Info("machine ready", "elapsed", elapsed, "changed", res.Changed)
	return err
}

func orNone(s string) string {
	if s == "" {
		return "nothing"
	}
	return s
}

func short(digest string) string {
	if len(digest) > 12 {
		return "sha256:" + digest[:12]
	}
	return digest
}

// runBootstrap connects, runs the steps and waits for the node.
func (mc *Controller) runBootstrap(ctx context.Context, m *bosunv1.Machine, upgrade bool) (bootstrap.Result, error) {
	if err := checkServerURL(mc.o.ServerURL); err != nil {
		return bootstrap.Result{}, err
	}
	ip, err := nodeIP(ctx, m.Spec.Address)
	if err != nil {
		return bootstrap.Result{}, err
	}
	client, err := mc.dial(ctx, m)
	if err != nil {
		return bootstrap.Result{}, err
	}
	defer client.Close()
	cl := mc.c.Cluster().Spec
	plan := bootstrap.Plan{
		NodeName:      m.Name,
		NodeIP:        ip,
		Layout:        mc.o.Layout,
		Binary:        mc.o.Binary,
		CA:            mc.o.CA,
		NodeServingCA: mc.o.NodeServingCA,
		Agent: bootstrap.AgentConfig{
			Server:        mc.o.ServerURL,
			ClusterCIDR:   cl.PodCIDR,
			ClusterDomain: cl.ClusterDomain,
			Labels:        m.Spec.Labels,
			Taints:        m.Spec.Taints,
			Registry:      mc.o.Registry,
			ProxyMode:     cl.ProxyMode,
		},
	}
	p := &progress{ctx: ctx, mc: mc, m: m, name: m.Name}
	restarted := mc.c.Clock.Now()
	res, err := bootstrap.Run(ctx, client, plan, p)
	if err != nil {
		return res, err
	}
	p.Step(StepWaitReady)
	_, _ = mc.updateStatus(ctx, m.Name, func(s *bosunv1.MachineStatus) { s.Phase = bosunv1.MachineStarting })
	if !contains(res.Changed, bootstrap.StepService) {
		restarted = time.Time{}
	}
	if err := mc.waitNodeReady(ctx, m.Name, restarted); err != nil {
		return res, err
	}
	return res, nil
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// dial connects with the host key policy of m; a key trusted on first use is recorded at once.
func (mc *Controller) dial(ctx context.Context, m *bosunv1.Machine) (*bootstrap.Client, error) {
	d := &bootstrap.Dialer{Signer: mc.o.Signer, DialContext: mc.o.Dial}
	t := bootstrap.Target{
		Address: m.Spec.Address,
		Port:    int(m.Spec.Port),
		User:    m.Spec.User,
		HostKey: bootstrap.HostKeyPolicy{
			Pinned:          m.Spec.HostKey,
			Learned:         m.Status.LearnedHostKey,
			TrustOnFirstUse: mc.c.Cluster().Spec.TrustOnFirstUse,
		},
	}
	if j := m.Spec.ProxyJump; j != nil {
		t.ProxyJump = &bootstrap.Target{
			Address: j.Address,
			Port:    int(j.Port),
			User:    j.User,
			HostKey: bootstrap.HostKeyPolicy{
				Pinned:          j.HostKey,
				Learned:         m.Status.LearnedJumpHostKey,
				TrustOnFirstUse: mc.c.Cluster().Spec.TrustOnFirstUse,
			},
		}
	}
	var client *bootstrap.Client
	var err error
	// A few quick attempts ride out a restarting sshd; the controller's backoff does the rest.
	for attempt := range 3 {
		client, err = d.Dial(ctx, t)
		if err == nil || permanent(err) || ctx.Err() != nil {
			break
		}
		select {
		case <-time.After(time.Duration(attempt+1) * time.Second):
		case <-ctx.Done():
		}
	}
	if err != nil {
		return nil, err
	}
	if client.JumpLearned != "" {
		mc.c.Recorder.Eventf(m, corev1.EventTypeNormal, "JumpHostKeyLearned",
			"trusted the jump host's key on first use; pin it in Git with spec.proxyJump.hostKey: %q", client.JumpLearned)
	}
	if client.Learned != "" {
		mc.c.Recorder.Eventf(m, corev1.EventTypeNormal, "HostKeyLearned",
			"trusted host key on first use; pin it in Git with spec.hostKey: %q", client.Learned)
	}
	if client.Learned != "" || client.JumpLearned != "" {
		if _, err := mc.updateStatus(ctx, m.Name, func(s *bosunv1.MachineStatus) {
			if client.Learned != "" {
				s.LearnedHostKey = client.Learned
			}
			if client.JumpLearned != "" {
				s.LearnedJumpHostKey = client.JumpLearned
			}
		}); err != nil {
			client.Close()
			return nil, fmt.Errorf("recording the learned host key: %w", err)
		}
	}
	return client, nil
}

// permanent errors are not retried until the spec changes.
func permanent(err error) bool {
	var mismatch *bootstrap.HostKeyMismatchError
	return errors.As(err, &mismatch) || errors.Is(err, bootstrap.ErrNoHostKey)
}

// recordFailure marks the machine Failed with the error and when it is retried.
func (mc *Controller) recordFailure(ctx context.Context, m *bosunv1.Machine, hash string, upgrade bool, err error) error {
	if errors.Is(err, context.Canceled) {
		_, _ = mc.updateStatus(ctx, m.Name, func(s *bosunv1.MachineStatus) { s.Phase = bosunv1.MachinePending })
		return err
	}
	var next *metav1.Time
	failures := m.Status.Failures + 1
	if !permanent(err) {
		t := metav1.NewTime(mc.c.Clock.Now().Add(mc.o.backoff(failures)))
		next = &t
	}
	written, uerr := mc.updateStatus(ctx, m.Name, func(s *bosunv1.MachineStatus) {
		s.Phase = bosunv1.MachineFailed
		s.LastError, s.NextRetry, s.Failures = err.Error(), next, failures
		s.ObservedSpecHash = hash
		setCondition(s, ConditionBootstrapped, metav1.ConditionFalse, "Failed", err.Error())
		if upgrade {
			setCondition(s, ConditionUpgraded, metav1.ConditionFalse, ReasonUpgradeFailed, "upgrade failed; the rollout stopped: "+err.Error())
		}
	})
	if upgrade {
		mc.mu.Lock()
		mc.failedUpgrades[m.Name] = true
		mc.mu.Unlock()
	}
	mc.noteWritten(written)
	var until time.Time
	if next != nil {
		until = next.Time
	}
	mc.block(m.Name, hash, until)
	retry := "not retried until the Machine changes"
	if next != nil {
		retry = "retrying at " + next.Format(time.RFC3339)
	}
	if upgrade {
		mc.c.Recorder.Eventf(m, corev1.EventTypeWarning, ReasonUpgradeFailed,
			"upgrading the agent to %s failed: %v (%s); the rollout stopped: no other machine is upgraded until this one is",
			short(mc.o.Digest), err, retry)
	} else {
		mc.c.Recorder.Eventf(m, corev1.EventTypeWarning, "BootstrapFailed", "%v (%s)", err, retry)
	}
	return errors.Join(err, uerr)
}

// node returns the cached Node named name.
func (mc *Controller) node(name string) *corev1.Node {
	obj, ok, _ := mc.nodes.GetStore().GetByKey(name)
	if !ok {
		return nil
	}
	return obj.(*corev1.Node)
}

// waitNodeReady waits for the Node to be Ready, with a heartbeat after since when it is set
// (the agent was restarted).
func (mc *Controller) waitNodeReady(ctx context.Context, name string, since time.Time) error {
	ctx, cancel := context.WithTimeout(ctx, mc.o.ReadyTimeout)
	defer cancel()
	last := "the node has not registered"
	for {
		if n := mc.node(name); n != nil {
			last = "the node is not Ready"
			for _, c := range n.Status.Conditions {
				if c.Type != corev1.NodeReady {
					continue
				}
				if c.Status == corev1.ConditionTrue && (since.IsZero() || !c.LastHeartbeatTime.Time.Before(since.Truncate(time.Second))) {
					return nil
				}
				last = fmt.Sprintf("the node is %s Ready (%s)", c.Status, c.Message)
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: waiting for node %s to become Ready: %s (check the agent's log, %s on the machine)",
				StepWaitReady, name, last, mc.o.Layout.LogFile)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func setCondition(s *bosunv1.MachineStatus, typ string, status metav1.ConditionStatus, reason, msg string) {
	meta.SetStatusCondition(&s.Conditions, metav1.Condition{Type: typ, Status: status, Reason: reason, Message: msg})
}

func findCondition(cs []metav1.Condition, typ string) *metav1.Condition {
	return meta.FindStatusCondition(cs, typ)
}

var _ bootstrap.Progress = (*progress)(nil)
