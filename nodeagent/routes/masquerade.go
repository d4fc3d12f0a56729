package routes

import (
	"fmt"
	"net/netip"

	"github.com/coreos/go-iptables/iptables"
)

// MasqChain is Bosun's nat chain for pod traffic leaving the cluster pod network.
const MasqChain = "BOSUN-POD-MASQ"

const masqComment = "bosun: masquerade pod traffic leaving the pod network"

// masquerade installs `-s <pods> ! -d <pods> -j MASQUERADE` in MasqChain and one jump to it
// from POSTROUTING, touching no other rule.
type masquerade struct {
	cluster netip.Prefix
}

func newMasquerade(cluster netip.Prefix) *masquerade { return &masquerade{cluster: cluster} }

func (m *masquerade) rule() []string {
	c := m.cluster.String()
	return []string{"-s", c, "!", "-d", c, "-m", "comment", "--comment", masqComment, "-j", "MASQUERADE"}
}

func jumpRule() []string {
	return []string{"-m", "comment", "--comment", "bosun: pod masquerade", "-j", MasqChain}
}

// ensure is idempotent: it rewrites the chain only when its content differs (another cluster
// CIDR, a rule added by hand) and adds the jump only when missing.
func (m *masquerade) ensure() error {
	ipt, err := iptables.New()
	if err != nil {
		return fmt.Errorf("iptables: %w", err)
	}
	ok, err := ipt.ChainExists("nat", MasqChain)
	if err != nil {
		return fmt.Errorf("checking chain %s: %w", MasqChain, err)
	}
	if !ok {
		if err := ipt.NewChain("nat", MasqChain); err != nil {
			return fmt.Errorf("creating chain %s: %w", MasqChain, err)
		}
	}
	rules, err := ipt.List("nat", MasqChain)
	if err != nil {
		return fmt.Errorf("listing chain %s: %w", MasqChain, err)
	}
	body := rules[1:] // rules[0] is "-N BOSUN-POD-MASQ"
	if len(body) != 1 || !sameRule(body[0], m.rule()) {
		if err := ipt.ClearChain("nat", MasqChain); err != nil {
			return fmt.Errorf("flushing chain %s: %w", MasqChain, err)
		}
		if err := ipt.Append("nat", MasqChain, m.rule()...); err != nil {
			return fmt.Errorf("adding masquerade rule: %w", err)
		}
	}
	if err := ipt.AppendUnique("nat", "POSTROUTING", jumpRule()...); err != nil {
		return fmt.Errorf("adding jump to %s: %w", MasqChain, err)
	}
	return nil
}

// sameRule compares a listed rule ("-A CHAIN -s ... ") with a rulespec; iptables prints quoted
// comments and canonical CIDRs, which the spec already uses.
func sameRule(listed string, spec []string) bool {
	want := "-A " + MasqChain
	for _, s := range spec {
		if s == masqComment {
			s = `"` + s + `"`
		}
		want += " " + s
	}
	return listed == want
}
