package main

import (
	"fmt"
	"strconv"
	"text/tabwriter"
	"time"

	bosunv1 "github.com/bosun-gitops/bosun/repo-layout/v1alpha1"
)

// describeMachine prints a Machine's connection, progress, and a learned host key in the form
// that can be pasted into machines/<name>.yaml.
func describeMachine(tw *tabwriter.Writer, kv func(string, any), m *bosunv1.Machine) {
	user := m.Spec.User
	if user == "" {
		user = "root"
	}
	port := int(m.Spec.Port)
	if port == 0 {
		port = 22
	}
	kv("Address", m.Spec.Address+":"+strconv.Itoa(port))
	kv("User", user)
	kv("Host Key", orNone(m.Spec.HostKey))
	if j := m.Spec.ProxyJump; j != nil {
		jport := int(j.Port)
		if jport == 0 {
			jport = 22
		}
		juser := j.User
		if juser == "" {
			juser = user
		}
		kv("Proxy Jump", juser+"@"+j.Address+":"+strconv.Itoa(jport))
		kv("Jump Host Key", orNone(j.HostKey))
	}
	phase := m.Status.Phase
	if phase == "" {
		phase = bosunv1.MachinePending
	}
	kv("Phase", phase)
	kv("Step", orNone(m.Status.Step))
	kv("Agent Version", orNone(m.Status.AgentVersion))
	if d := m.Status.AgentDigest; d != "" {
		kv("Agent Digest", "sha256:"+d)
	}
	if m.Status.LastError != "" {
		kv("Last Error", m.Status.LastError)
	}
	if m.Status.NextRetry != nil {
		kv("Next Retry", m.Status.NextRetry.Format(time.RFC3339))
	}
	for _, t := range m.Spec.Taints {
		kv("Taint", t.ToString())
	}
	if m.Status.LearnedHostKey != "" && m.Spec.HostKey == "" {
		kv("Learned Host Key", m.Status.LearnedHostKey)
		fmt.Fprintf(tw, "  (trusted on first use; pin it in machines/%s.yaml:)\n  spec:\n    hostKey: %q\n", m.Name, m.Status.LearnedHostKey)
	}
	if j := m.Spec.ProxyJump; j != nil && m.Status.LearnedJumpHostKey != "" && j.HostKey == "" {
		kv("Learned Jump Host Key", m.Status.LearnedJumpHostKey)
		fmt.Fprintf(tw, "  (trusted on first use; pin it in machines/%s.yaml:)\n  spec:\n    proxyJump:\n      hostKey: %q\n", m.Name, m.Status.LearnedJumpHostKey)
	}
	var conds []condition
	for _, c := range m.Status.Conditions {
		conds = append(conds, condition{c.Type, string(c.Status), c.Reason, c.Message})
	}
	describeConditions(tw, conds)
}
