//go:build e2e

package bootstrap_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/bosun-gitops/bosun/bootstrap"
	"github.com/bosun-gitops/bosun/e2e/machines"
	bosunv1 "github.com/bosun-gitops/bosun/repo-layout/v1alpha1"
)

// proxyJumpSubnet is this test's lab network: other e2e packages use 192.168.77.0/24 and
// 192.168.78.0/24, and may run at the same time.
const proxyJumpSubnet = "192.168.76.0/24"

// TestProxyJump bootstraps a machine that only a bastion reaches: m2's own firewall (inside its
// network namespace) drops SSH from everyone but m1. Without proxyJump the Machine fails with an
// error that says so; with a proxyJump whose host key is wrong it is refused before anything is
// installed and not retried; with m1 as its jump host it becomes a Ready node.
func TestProxyJump(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	f := newFleetOn(t, ctx, machines.Config{N: 2, Subnet: proxyJumpSubnet, SudoUser: "deploy"})
	bastion, m2 := f.lab.Machine(1), f.lab.Machine(2)
	rule := []string{"INPUT", "-p", "tcp", "--dport", "22", "!", "-s", bastion.Addr().String(), "-j", "DROP"}
	if out, err := m2.Exec(ctx, "iptables", append([]string{"-w", "-A"}, rule...)...); err != nil {
		t.Fatalf("firewalling m2's sshd: %v: %s", err, out)
	}
	// The operator cannot reach m2's sshd any more.
	if conn, err := net.DialTimeout("tcp", m2.SSHAddr(), 2*time.Second); err == nil {
		conn.Close()
		t.Fatalf("the host still reaches %s; the firewall rule has no effect", m2.SSHAddr())
	}

	// Without proxyJump: a clear error, retried later.
	f.repo.Write(map[string]string{"machines/m2.yaml": machineYAML(m2, "root")})
	f.repo.CommitAndPush("m2, directly")
	direct := f.waitFailed(t, ctx, "m2", "connecting to "+m2.SSHAddr())
	t.Logf("without proxyJump: %s", direct.Status.LastError)
	if !strings.Contains(direct.Status.LastError, "spec.proxyJump") {
		t.Errorf("lastError %q does not point at spec.proxyJump", direct.Status.LastError)
	}
	if direct.Status.NextRetry == nil {
		t.Errorf("an unreachable machine must be retried: nextRetry is not set")
	}

	// A jump host with a wrong host key (m2's own) is refused: nothing is installed, no retry.
	f.repo.Write(map[string]string{"machines/m2.yaml": proxyJumpYAML(m2, bastion, m2.HostKey())})
	f.repo.CommitAndPush("m2 through m1, with a wrong jump host key")
	refused := f.waitFailed(t, ctx, "m2", "jump host "+bastion.SSHAddr())
	t.Logf("wrong jump host key: %s", refused.Status.LastError)
	if !strings.Contains(refused.Status.LastError, "host key changed") || !strings.Contains(refused.Status.LastError, "spec.proxyJump.hostKey") {
		t.Errorf("lastError %q does not explain the jump host's key mismatch", refused.Status.LastError)
	}
	if refused.Status.NextRetry != nil {
		t.Errorf("a host key mismatch must not be retried, nextRetry = %v", refused.Status.NextRetry)
	}
	for _, m := range []*machines.Machine{bastion, m2} {
		if _, err := os.Stat(m.HostPath("/usr/local/bin/bosun")); !os.IsNotExist(err) {
			t.Errorf("bosun was installed on %s although the jump host's key was wrong: %v", m.Name(), err)
		}
	}

	// With m1 as its jump host, m2 becomes a Ready node; nothing is installed on m1. The cluster
	// asks for the nftables service proxy, which the bootstrap passes on to m2's agent.
	f.repo.Write(map[string]string{"bosun.yaml": clusterYAML + "  proxyMode: nftables\n"})
	f.repo.Write(map[string]string{"machines/m2.yaml": proxyJumpYAML(m2, bastion, bastion.HostKey())})
	f.clock = newStepClock()
	f.repo.CommitAndPush("m2 through m1")
	f.waitMachines(t, ctx, "m2 Ready through m1", []string{"m2"}, ready)
	steps, d := f.clock.breakdown("m2")
	t.Logf("figure: push -> Ready through a jump host: %s (%s)", d.Round(time.Millisecond), steps)
	if !f.nodeReady(ctx, "m2") {
		t.Errorf("node m2 is not Ready while its Machine is")
	}
	if _, err := os.Stat(m2.HostPath("/usr/local/bin/bosun")); err != nil {
		t.Errorf("bosun is not installed on m2: %v", err)
	}
	if _, err := os.Stat(bastion.HostPath("/usr/local/bin/bosun")); !os.IsNotExist(err) {
		t.Errorf("something was installed on the jump host: %v", err)
	}
	if cfg, err := os.ReadFile(m2.HostPath(bootstrap.DefaultLayout().ConfigFile())); err != nil || !strings.Contains(string(cfg), "proxyMode: nftables") {
		t.Errorf("m2's agent configuration lacks bosun.yaml's proxyMode (%v):\n%s", err, cfg)
	}
	waitFor(t, ctx, "m2's agent to program its nftables tables", func() (bool, string) {
		out, err := m2.Exec(ctx, "nft", "list", "tables")
		return err == nil && strings.Contains(string(out), "table ip bosun\n"), string(out)
	})
	// The firewall rule is still there: m2 was reached only through m1.
	if out, err := m2.Exec(ctx, "iptables", append([]string{"-w", "-C"}, rule...)...); err != nil {
		t.Errorf("m2's firewall rule is gone (%v: %s): the test proves nothing", err, out)
	}
}

// proxyJumpYAML is a Machine for m reached through jump, whose host key is pinned as jumpKey.
func proxyJumpYAML(m, jump *machines.Machine, jumpKey string) string {
	return machineYAML(m, "root") + fmt.Sprintf(`  proxyJump:
    address: %s
    user: deploy
    hostKey: %q
`, jump.Addr(), jumpKey)
}

// waitFailed waits for the Machine to fail with an error that contains want.
func (f *fleet) waitFailed(t *testing.T, ctx context.Context, name, want string) bosunv1.Machine {
	t.Helper()
	var got bosunv1.Machine
	f.waitMachines(t, ctx, name+" Failed with "+want, []string{name}, func(m bosunv1.Machine, exists bool) bool {
		if m.Status.Phase == bosunv1.MachineReady {
			t.Fatalf("%s became Ready; want it Failed with %q", name, want)
		}
		got = m
		return exists && m.Status.Phase == bosunv1.MachineFailed && strings.Contains(m.Status.LastError, want)
	})
	return got
}

// TestDialThroughJumpHost checks the SSH client's jump host path against real sshd: commands run
// on the machine behind the jump host, the machine's own host key is verified end to end, a jump
// host key can be learned on first use, and every failure names the hop that failed.
func TestDialThroughJumpHost(t *testing.T) {
	signer, err := bootstrap.LoadOrCreateIdentity(t.TempDir() + "/id_ed25519")
	if err != nil {
		t.Fatal(err)
	}
	lab := machines.NewLab(t, machines.Config{N: 2, Subnet: proxyJumpSubnet, HostLink: true, SudoUser: "deploy",
		AuthorizedKeys: []string{bootstrap.AuthorizedKey(signer)}, NoRegistry: true, NoContainerd: true})
	bastion, m2 := lab.Machine(1), lab.Machine(2)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if out, err := m2.Exec(ctx, "iptables", "-w", "-A", "INPUT", "-p", "tcp", "--dport", "22", "!", "-s", bastion.Addr().String(), "-j", "DROP"); err != nil {
		t.Fatalf("firewalling m2's sshd: %v: %s", err, out)
	}
	d := &bootstrap.Dialer{Signer: signer, Timeout: 5 * time.Second}
	jump := func(port int, key bootstrap.HostKeyPolicy) *bootstrap.Target {
		return &bootstrap.Target{Address: bastion.Addr().String(), Port: port, User: "deploy", HostKey: key}
	}
	target := func(port int, key string, j *bootstrap.Target) bootstrap.Target {
		return bootstrap.Target{Address: m2.Addr().String(), Port: port, HostKey: bootstrap.HostKeyPolicy{Pinned: key}, ProxyJump: j}
	}

	t.Run("through the jump host", func(t *testing.T) {
		c, err := d.Dial(ctx, target(22, m2.HostKey(), jump(22, bootstrap.HostKeyPolicy{Pinned: bastion.HostKey()})))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		// The commands run on m2 (its address is on its eth0), as root.
		out, err := c.Run(ctx, "ip -4 -o addr show dev eth0; id -u", nil)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(out), " "+m2.Addr().String()+"/") || !strings.HasSuffix(string(out), "\n0\n") {
			t.Errorf("output %q, want m2's address and uid 0", out)
		}
		if c.Learned != "" || c.JumpLearned != "" {
			t.Errorf("pinned keys learned something: %q %q", c.Learned, c.JumpLearned)
		}
	})
	t.Run("jump host key learned on first use", func(t *testing.T) {
		c, err := d.Dial(ctx, target(22, m2.HostKey(), jump(22, bootstrap.HostKeyPolicy{TrustOnFirstUse: true})))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if c.JumpLearned == "" || !strings.HasPrefix(bastion.HostKey(), c.JumpLearned) {
			t.Errorf("learned jump host key %q, want m1's %q", c.JumpLearned, bastion.HostKey())
		}
	})
	failures := []struct {
		name     string
		target   bootstrap.Target
		want     string
		mismatch bool
	}{
		{"wrong jump host key", target(22, m2.HostKey(), jump(22, bootstrap.HostKeyPolicy{Pinned: m2.HostKey()})),
			"jump host " + bastion.SSHAddr() + ": host key changed", true},
		{"no jump host key", target(22, m2.HostKey(), jump(22, bootstrap.HostKeyPolicy{})),
			"jump host " + bastion.SSHAddr() + ": no host key pinned for the jump host: set spec.proxyJump.hostKey", false},
		{"the machine's key is still checked", target(22, bastion.HostKey(), jump(22, bootstrap.HostKeyPolicy{Pinned: bastion.HostKey()})),
			"host key of " + m2.SSHAddr() + " changed", true},
		{"jump host unreachable", target(22, m2.HostKey(), jump(2222, bootstrap.HostKeyPolicy{Pinned: bastion.HostKey()})),
			"jump host " + bastion.Addr().String() + ":2222: dial tcp", false},
		{"machine unreachable from the jump host", target(2222, m2.HostKey(), jump(22, bootstrap.HostKeyPolicy{Pinned: bastion.HostKey()})),
			"connecting to " + m2.Addr().String() + ":2222 through jump host " + bastion.SSHAddr() + ":", false},
	}
	for _, tc := range failures {
		t.Run(tc.name, func(t *testing.T) {
			c, err := d.Dial(ctx, tc.target)
			if err == nil {
				c.Close()
				t.Fatalf("Dial succeeded, want %q", tc.want)
			}
			t.Logf("error: %v", err)
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q, want it to contain %q", err, tc.want)
			}
			var mismatch *bootstrap.HostKeyMismatchError
			if errors.As(err, &mismatch) != tc.mismatch {
				t.Errorf("HostKeyMismatchError = %v, want %v", !tc.mismatch, tc.mismatch)
			}
		})
	}
}
