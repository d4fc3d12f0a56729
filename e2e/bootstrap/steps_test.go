//go:build e2e

// Package bootstrap_test runs the SSH bootstrap against the namespace machines of e2e/machines
// (real sshd, real containerd). BOSUN_BIN is the bosun binary to install.
package bootstrap_test

import (
	"context"
	"errors"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/bosun-gitops/bosun/bootstrap"
	"github.com/bosun-gitops/bosun/e2e/machines"
	"github.com/bosun-gitops/bosun/internal/pki"
	"github.com/google/go-cmp/cmp"
)

type recorder struct{ t *testing.T }

func (r recorder) Step(name string) { r.t.Logf("step %s", name) }
func (r recorder) Output(step, what string, out []byte) {
	r.t.Logf("  %s: %s: %s", step, what, strings.TrimSpace(string(out)))
}

// TestBootstrapSteps installs the agent on two machines (root and a sudo user), re-runs the
// bootstrap (nothing changes), refuses a wrong host key before anything runs, and tears down.
func TestBootstrapSteps(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (namespace machines)")
	}
	bin := os.Getenv("BOSUN_BIN")
	if bin == "" {
		t.Skip("BOSUN_BIN is not set: build bosun and point BOSUN_BIN at it")
	}
	f, err := os.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	digest, err := bootstrap.FileDigest(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	signer, err := bootstrap.LoadOrCreateIdentity(t.TempDir() + "/id_ed25519")
	if err != nil {
		t.Fatal(err)
	}
	lab := machines.NewLab(t, machines.Config{N: 3, HostLink: true, SudoUser: "deploy",
		AuthorizedKeys: []string{bootstrap.AuthorizedKey(signer)}, NoRegistry: true})
	ca, err := pki.NewCA("test-ca")
	if err != nil {
		t.Fatal(err)
	}
	nodeCA, err := pki.NewCA("test-node-serving-ca")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	d := &bootstrap.Dialer{Signer: signer}
	plan := func(m *machines.Machine) bootstrap.Plan {
		return bootstrap.Plan{
			NodeName: m.Name(), NodeIP: m.Addr().String(), Layout: bootstrap.DefaultLayout(), CA: ca, NodeServingCA: nodeCA,
			Binary: func(string) (bootstrap.Binary, error) {
				return bootstrap.Binary{Digest: digest, Open: func() (io.ReadCloser, error) { return os.Open(bin) }}, nil
			},
			Agent: bootstrap.AgentConfig{Server: "https://" + lab.HostAddr().String() + ":6443"},
		}
	}
	all := []string{bootstrap.StepBinary, bootstrap.StepCredentials, bootstrap.StepConfig, bootstrap.StepService}
	for i, user := range []string{"root", "deploy"} {
		m := lab.Machine(i + 1)
		t.Run(user, func(t *testing.T) {
			target := bootstrap.Target{Address: m.Addr().String(), User: user, HostKey: bootstrap.HostKeyPolicy{Pinned: m.HostKey()}}
			c, err := d.Dial(ctx, target)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			start := time.Now()
			res, err := bootstrap.Run(ctx, c, plan(m), recorder{t})
			if err != nil {
				t.Fatalf("bootstrap: %v", err)
			}
			t.Logf("first bootstrap: %s", time.Since(start))
			if diff := cmp.Diff(all, res.Changed); diff != "" {
				t.Errorf("first run changed (-want +got):\n%s", diff)
			}
			res, err = bootstrap.Run(ctx, c, plan(m), recorder{t})
			if err != nil {
				t.Fatalf("second bootstrap: %v", err)
			}
			if len(res.Changed) != 0 {
				t.Errorf("second run changed %v, want nothing", res.Changed)
			}
			out, err := m.Exec(ctx, "stat", "-c", "%a %n", "/var/lib/bosun/agent/pki/node.key", "/var/lib/bosun/agent/pki/serving.key", "/var/lib/bosun/agent/agent.yaml")
			if err != nil {
				t.Fatal(err)
			}
			if got := string(out); strings.Count(got, "600 ") != 3 {
				t.Errorf("modes: %s", got)
			}
			if err := bootstrap.Teardown(ctx, c, bootstrap.DefaultLayout(), recorder{t}); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(m.HostPath("/usr/local/bin/bosun")); !os.IsNotExist(err) {
				t.Errorf("binary still present after teardown: %v", err)
			}
		})
	}
	t.Run("wrong host key", func(t *testing.T) {
		m := lab.Machine(3)
		wrong := lab.Machine(1).HostKey()
		_, err := d.Dial(ctx, bootstrap.Target{Address: m.Addr().String(), HostKey: bootstrap.HostKeyPolicy{Pinned: wrong}})
		var mismatch *bootstrap.HostKeyMismatchError
		if !errors.As(err, &mismatch) {
			t.Fatalf("dial with a wrong host key: err = %v, want HostKeyMismatchError", err)
		}
		t.Logf("refused: %v", err)
		if _, err := os.Stat(m.HostPath("/usr/local/bin/bosun")); !os.IsNotExist(err) {
			t.Errorf("something was installed: %v", err)
		}
	})
}
