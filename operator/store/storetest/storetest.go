// Package storetest starts embedded etcd members and stores for other packages' tests, and
// measures etcd's raw write ceiling for benchmarks that report a ratio against it.
package storetest

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bosun-gitops/bosun/operator/store"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// NewEtcd starts a single-member etcd in t.TempDir() the way the operator embeds it (clients
// on the unix socket DIR/client.sock, no peer listener); t.Cleanup stops it. Etcd's warnings go
// to t.Log.
func NewEtcd(t testing.TB) *store.Etcd {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	e, err := store.StartEtcd(ctx, store.EtcdConfig{Name: "test", DataDir: t.TempDir(), Logger: Logger(t)})
	if err != nil {
		t.Fatalf("starting embedded etcd: %v", err)
	}
	t.Cleanup(func() {
		if err := e.Close(); err != nil {
			t.Errorf("closing embedded etcd: %v", err)
		}
	})
	return e
}

// NewStore returns a Store on a fresh embedded etcd (see NewEtcd).
func NewStore(t testing.TB) *store.Store {
	t.Helper()
	return NewStoreWithOptions(t, store.Options{})
}

// NewStoreWithOptions is NewStore with options; a nil Logger logs to t.
func NewStoreWithOptions(t testing.TB, opts store.Options) *store.Store {
	t.Helper()
	e := NewEtcd(t)
	if opts.Logger == nil {
		opts.Logger = Logger(t)
	}
	return store.New(e.Client(), opts)
}

// NewCluster starts an n-member etcd cluster on loopback, members started concurrently, each
// in its own t.TempDir(); t.Cleanup stops them.
func NewCluster(t testing.TB, n int) []*store.Etcd {
	t.Helper()
	names := make([]string, n)
	peers := make([]string, n)
	clients := make([]string, n)
	var initial []string
	for i := range n {
		names[i] = fmt.Sprintf("m%d", i)
		var err error
		if peers[i], err = store.FreeLocalURL(); err != nil {
			t.Fatal(err)
		}
		if clients[i], err = store.FreeLocalURL(); err != nil {
			t.Fatal(err)
		}
		initial = append(initial, names[i]+"="+peers[i])
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	members := make([]*store.Etcd, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			members[i], errs[i] = store.StartEtcd(ctx, store.EtcdConfig{
				Name: names[i], DataDir: t.TempDir(), ClientURL: clients[i], PeerURL: peers[i],
				InitialCluster: strings.Join(initial, ","), Logger: Logger(t).With("member", names[i]),
			})
		}()
	}
	wg.Wait()
	for i, m := range members {
		if m != nil {
			t.Cleanup(func() { m.Close() })
		}
		if errs[i] != nil {
			t.Fatalf("starting etcd member %s: %v", names[i], errs[i])
		}
	}
	return members
}

// Logger returns a slog.Logger writing to t.Log at warn level and above, which goes quiet once
// the test has finished (etcd may still log while it shuts down).
func Logger(t testing.TB) *slog.Logger {
	h := &testHandler{t: t, level: slog.LevelWarn, mu: &sync.Mutex{}, done: new(bool)}
	t.Cleanup(func() {
		h.mu.Lock()
		*h.done = true
		h.mu.Unlock()
	})
	return slog.New(h)
}

type testHandler struct {
	t     testing.TB
	level slog.Level
	attrs []slog.Attr
	mu    *sync.Mutex
	done  *bool
}

func (h *testHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= h.level }

func (h *testHandler) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString(r.Level.String() + " " + r.Message)
	for _, a := range h.attrs {
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
	}
	r.Attrs(func(a slog.Attr) bool {
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
		return true
	})
	h.mu.Lock()
	defer h.mu.Unlock()
	if !*h.done {
		h.t.Log(b.String())
	}
	return nil
}

func (h *testHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	c := *h
	c.attrs = append(append([]slog.Attr(nil), h.attrs...), attrs...)
	return &c
}

func (h *testHandler) WithGroup(string) slog.Handler { return h }

// RawPutBatches writes kvs straight to etcd in transactions of opsPerTxn puts, concurrency
// transactions at a time: the ceiling a Store.Batch of the same payloads is measured against.
func RawPutBatches(ctx context.Context, client *clientv3.Client, kvs map[string][]byte, opsPerTxn, concurrency int) error {
	if opsPerTxn <= 0 || concurrency <= 0 {
		return fmt.Errorf("RawPutBatches: opsPerTxn (%d) and concurrency (%d) must be positive", opsPerTxn, concurrency)
	}
	var txns [][]clientv3.Op
	var cur []clientv3.Op
	for k, v := range kvs {
		cur = append(cur, clientv3.OpPut(k, string(v)))
		if len(cur) == opsPerTxn {
			txns = append(txns, cur)
			cur = nil
		}
	}
	if len(cur) > 0 {
		txns = append(txns, cur)
	}
	work := make(chan []clientv3.Op)
	errc := make(chan error, concurrency)
	var wg sync.WaitGroup
	for range concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ops := range work {
				if _, err := client.Txn(ctx).Then(ops...).Commit(); err != nil {
					errc <- fmt.Errorf("raw put of %d keys: %w", len(ops), err)
					return
				}
			}
		}()
	}
	var err error
feed:
	for _, ops := range txns {
		select {
		case work <- ops:
		case err = <-errc:
			break feed
		}
	}
	close(work)
	wg.Wait()
	if err == nil {
		select {
		case err = <-errc:
		default:
		}
	}
	return err
}

// FreeHistory compacts e's history up to rev and writes to it until its database file has at
// least minFree bytes free: bbolt hands the pages of compacted history back at a later write's
// commit, once no read still holds them, so a test that measures the free space waits for that.
func FreeHistory(ctx context.Context, t testing.TB, e *store.Etcd, rev, minFree int64) {
	t.Helper()
	c := e.Client()
	if _, err := c.Compact(ctx, rev, clientv3.WithCompactPhysical()); err != nil {
		t.Fatalf("compacting to %d: %v", rev, err)
	}
	for i := 0; e.DBSize().Free() < minFree; i++ {
		if ctx.Err() != nil {
			t.Fatalf("compacted history not freed: %s, want %d bytes free", e.DBSize(), minFree)
		}
		if _, err := c.Put(ctx, "/storetest/free-history", fmt.Sprint(i)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond) // etcd's backend commits every 100 ms
	}
}
