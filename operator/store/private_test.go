package store_test

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bosun-gitops/bosun/internal/testutil"
	"github.com/bosun-gitops/bosun/operator/store"
	"github.com/bosun-gitops/bosun/operator/store/storetest"
)

// TestEmbeddedEtcdIsPrivate checks that the default embedded etcd, the one the operator runs,
// is reachable only by its own user: no TCP listener (client or peer), a 0600 socket in a 0700
// directory that another uid cannot connect to, while the member's own client works. Not
// parallel: it compares the process's TCP listeners before and after starting etcd.
func TestEmbeddedEtcdIsPrivate(t *testing.T) {
	before, err := testutil.ListeningTCPPorts(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "etcd")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	e, err := store.StartEtcd(ctx, store.EtcdConfig{Name: "bosun", DataDir: dir, Logger: storetest.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	after, err := testutil.ListeningTCPPorts(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	var opened []int
	for _, p := range after {
		if !slices.Contains(before, p) {
			opened = append(opened, p)
		}
	}
	if len(opened) > 0 {
		t.Errorf("the embedded etcd listens on TCP ports %v (endpoints %v, peer %q); any local user could use them", opened, e.Endpoints(), e.PeerURL())
	}
	if e.PeerURL() != "" {
		t.Errorf("a single member has peer URL %q; it needs no peer listener", e.PeerURL())
	}

	sock := filepath.Join(dir, store.ClientSocketName)
	if want := "unix://" + sock; len(e.Endpoints()) != 1 || e.Endpoints()[0] != want {
		t.Errorf("endpoints %v, want [%s]", e.Endpoints(), want)
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("etcd data dir %s: mode %v (%v), want 0700", dir, modeOf(fi), err)
	}
	if fi, err := os.Lstat(sock); err != nil || fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != 0o600 {
		t.Errorf("etcd socket %s: mode %v (%v), want a 0600 socket", sock, modeOf(fi), err)
	}

	// The member's own client reads and writes.
	if _, err := e.Client().Put(ctx, "/private-test", "x"); err != nil {
		t.Fatalf("put through the socket: %v", err)
	}
	if os.Geteuid() != 0 {
		t.Log("not root: skipping the check with another uid")
		return
	}
	// Another local user cannot connect, whatever the endpoint is.
	for _, ep := range e.Endpoints() {
		err := testutil.DialEndpointAs(65534, 65534, ep)
		if err == nil {
			t.Errorf("uid 65534 connected to the embedded etcd at %s", ep)
		} else if !errors.Is(err, syscall.EACCES) {
			t.Errorf("uid 65534 dialing %s: %v, want permission denied", ep, err)
		}
	}
	// The owner can (the check above is not failing for another reason).
	if err := testutil.DialEndpointAs(0, 0, e.Endpoints()[0]); err != nil {
		t.Errorf("root dialing %s: %v", e.Endpoints()[0], err)
	}
}

func modeOf(fi os.FileInfo) any {
	if fi == nil {
		return "none"
	}
	return fi.Mode()
}

// TestEmbeddedEtcdSocketTakeover checks that a second member on the same data dir refuses to
// start (etcd would otherwise replace the first one's socket), and that a socket left by a
// crash does not stop a restart.
func TestEmbeddedEtcdSocketTakeover(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "etcd")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cfg := store.EtcdConfig{Name: "bosun", DataDir: dir, Logger: storetest.Logger(t)}
	first, err := store.StartEtcd(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	// Without the check, etcd replaces the socket and then blocks on the data dir's lock.
	type result struct {
		e   *store.Etcd
		err error
	}
	done := make(chan result, 1)
	go func() {
		e, err := store.StartEtcd(ctx, cfg)
		done <- result{e, err}
	}()
	select {
	case r := <-done:
		if r.err == nil {
			r.e.Close()
			t.Fatal("a second etcd started on the data dir of a running one")
		}
		if !strings.Contains(r.err.Error(), "another operator") {
			t.Errorf("second start: %v, want an error naming the other operator", r.err)
		}
	case <-ctx.Done():
		t.Fatal("a second etcd on the data dir of a running one neither failed nor started (waiting for the data dir lock)")
	}
	if _, err := first.Client().Put(ctx, "/still-mine", "x"); err != nil {
		t.Fatalf("the first member after the refused second start: %v", err)
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}

	// A crash leaves the socket file behind with nobody listening.
	sock := filepath.Join(dir, store.ClientSocketName)
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	l.SetUnlinkOnClose(false)
	l.Close()
	again, err := store.StartEtcd(ctx, cfg)
	if err != nil {
		t.Fatalf("restart over a stale socket: %v", err)
	}
	defer again.Close()
	resp, err := again.Client().Get(ctx, "/still-mine")
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("data after restart: %v %v", resp, err)
	}
}

// TestEmbeddedEtcdSocketPathTooLong checks the error for a data dir whose socket path does not
// fit a unix socket address.
func TestEmbeddedEtcdSocketPathTooLong(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), strings.Repeat("d", 110))
	_, err := store.StartEtcd(context.Background(), store.EtcdConfig{DataDir: dir, Logger: storetest.Logger(t)})
	if err == nil || !strings.Contains(err.Error(), "shorter data directory") {
		t.Fatalf("StartEtcd with a %d-byte socket path: %v, want an error asking for a shorter path", len(dir), err)
	}
}

// TestEmbeddedEtcdSocketPathWithURLCharacters checks that a data dir whose path holds characters
// that mean something in a URL ("%" as in a test named "25%", "#", "?", spaces) still gives a
// working member: its own client and a separate client of its endpoint reach it.
func TestEmbeddedEtcdSocketPathWithURLCharacters(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "25%ab #1?x", "etcd")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	e, err := store.StartEtcd(ctx, store.EtcdConfig{Name: "bosun", DataDir: dir, Logger: storetest.Logger(t)})
	if err != nil {
		t.Fatalf("StartEtcd in %q: %v", dir, err)
	}
	defer e.Close()
	if _, err := e.Client().Put(ctx, "/k", "v"); err != nil {
		t.Fatalf("put through the member's client: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, store.ClientSocketName)); err != nil {
		t.Errorf("the socket is not where the data dir says: %v", err)
	}
	c, err := store.Connect(ctx, store.ClientConfig{Endpoints: e.Endpoints()})
	if err != nil {
		t.Fatalf("connecting to %v: %v", e.Endpoints(), err)
	}
	defer c.Close()
	resp, err := c.Get(ctx, "/k")
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("get through a client of %v: %v %v", e.Endpoints(), resp, err)
	}
}
