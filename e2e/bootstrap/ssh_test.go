//go:build e2e

package bootstrap_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/bosun-gitops/bosun/bootstrap"
	"github.com/bosun-gitops/bosun/e2e/machines"
)

// TestRunOutputIsComplete runs many small commands over one SSH connection, as root and as a sudo
// user, and checks every output byte for byte: a command that exits 0 must never come back with
// empty or partial output.
func TestRunOutputIsComplete(t *testing.T) {
	signer, err := bootstrap.LoadOrCreateIdentity(t.TempDir() + "/id_ed25519")
	if err != nil {
		t.Fatal(err)
	}
	lab := machines.NewLab(t, machines.Config{N: 1, HostLink: true, SudoUser: "deploy",
		AuthorizedKeys: []string{bootstrap.AuthorizedKey(signer)}, NoRegistry: true, NoContainerd: true})
	m := lab.Machine(1)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	d := &bootstrap.Dialer{Signer: signer}
	for _, user := range []string{"root", "deploy"} {
		t.Run(user, func(t *testing.T) {
			c, err := d.Dial(ctx, bootstrap.Target{Address: m.Addr().String(), User: user, HostKey: bootstrap.HostKeyPolicy{Pinned: m.HostKey()}})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			bad := 0
			for i := range 200 {
				cmd := fmt.Sprintf("id -u\necho out-%d\necho err-%d >&2\nmkdir -p /tmp/loop && echo %d > /tmp/loop/f && cat /tmp/loop/f", i, i, i)
				out, err := c.Run(ctx, cmd, strings.NewReader("ignored stdin"))
				got := string(out)
				want := []string{"0", fmt.Sprintf("out-%d", i), fmt.Sprintf("err-%d", i), fmt.Sprint(i)}
				for _, w := range want {
					if err != nil || !strings.Contains(got, w+"\n") {
						bad++
						if bad <= 5 {
							t.Errorf("run %d: err=%v output %q, want lines %q", i, err, got, want)
						}
						break
					}
				}
			}
			if bad > 0 {
				t.Errorf("%d of 200 runs came back incomplete", bad)
			}
		})
	}
}
