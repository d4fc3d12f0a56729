package gitsync

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bosun-gitops/bosun/internal/resource"
	"github.com/bosun-gitops/bosun/operator/store/storetest"
	bosunv1 "github.com/bosun-gitops/bosun/repo-layout/v1alpha1"
	"github.com/google/go-cmp/cmp"
	"golang.org/x/crypto/ssh/knownhosts"
)

// silentListener accepts TCP connections on loopback and never answers: a remote that is up
// but hung. It returns the listening address.
func silentListener(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu    sync.Mutex
		conns []net.Conn
	)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return l.Addr().String()
}

// syncBounded runs SyncOnce and fails the test if it is still running after hangGuard, which
// only bounds a hung test: the fetch timeouts under test are a few hundred milliseconds.
func syncBounded(t *testing.T, s *Syncer) error {
	t.Helper()
	const hangGuard = time.Minute
	done := make(chan error, 1)
	go func() {
		_, err := s.SyncOnce(context.Background())
		done <- err
	}()
	select {
	case err := <-done:
		return err
	case <-time.After(hangGuard):
		t.Fatalf("SyncOnce still running after %s with a fetch timeout of %s: the fetch has no deadline", hangGuard, s.cfg.FetchTimeout)
		return nil
	}
}

// writeSSHCredentials writes an operator key and a known_hosts file pinning host to a fresh key.
func writeSSHCredentials(t *testing.T, host string) (keyFile, knownHostsFile string) {
	t.Helper()
	dir := t.TempDir()
	_, keyPEM := newSigner(t)
	hostKey, _ := newSigner(t)
	keyFile, knownHostsFile = filepath.Join(dir, "id_ed25519"), filepath.Join(dir, "known_hosts")
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	line := knownhosts.Line([]string{knownhosts.Normalize(host)}, hostKey.PublicKey())
	if err := os.WriteFile(knownHostsFile, []byte(line+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return keyFile, knownHostsFile
}

func TestFetchTimeoutKeepsLastGoodCommit(t *testing.T) {
	for _, scheme := range []string{"http", "ssh"} {
		t.Run(scheme, func(t *testing.T) {
			st := storetest.NewStore(t)
			f := newGitFixture(t)
			f.write("a.yaml", configMap("default", "a", "1"))
			good := f.commitPush("a", "main")
			mustSync(t, newSyncer(t, f, st, nil))
			before := resourceVersions(names(t, st, resource.ConfigMaps))

			// The same GitSync, now pointed at a remote that accepts and never answers.
			addr := silentListener(t)
			repo := fmt.Sprintf("%s://%s/team/repo.git", scheme, addr)
			s := newSyncer(t, f, st, func(c *Config) {
				c.Repo, c.FetchTimeout = repo, 300*time.Millisecond
				if scheme == "ssh" {
					c.SSHKeyFile, c.KnownHostsFile = writeSSHCredentials(t, addr)
				}
			})
			err := syncBounded(t, s)
			if !errors.Is(err, ErrNoAnswer) {
				t.Fatalf("SyncOnce = %v, want ErrNoAnswer", err)
			}
			if diff := cmp.Diff(before, resourceVersions(names(t, st, resource.ConfigMaps))); diff != "" {
				t.Errorf("objects changed (-before +after):\n%s", diff)
			}
			status := gitSyncStatus(t, st, "default")
			want := fmt.Sprintf("fetch %s: no answer within 300ms; the last good commit %s stays applied; check the remote", repo, shortSHA(good))
			if status.State != bosunv1.SyncStateFailed || !strings.HasPrefix(status.Message, want) || status.Applied.SHA != good {
				t.Errorf("status = %s %q (applied %s), want Failed with %q and %s applied", status.State, status.Message, status.Applied.SHA, want, good)
			}

			// A plan of a ref (bosun plan --ref, pull requests) fetches under the same bound,
			// so it cannot hold the sync lock on a silent remote either.
			planned := make(chan error, 1)
			go func() {
				_, err := s.PlanRef(context.Background(), "feature", "")
				planned <- err
			}()
			select {
			case err := <-planned:
				if !errors.Is(err, ErrNoAnswer) {
					t.Errorf("PlanRef = %v, want ErrNoAnswer", err)
				}
			case <-time.After(time.Minute):
				t.Fatal("PlanRef still running after 1m with a fetch timeout of 300ms: its fetch has no deadline")
			}
		})
	}
}
