package store_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/bosun-gitops/bosun/operator/store"
	"github.com/bosun-gitops/bosun/operator/store/storetest"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// TestDefragPolicy: a defragmentation is worth it only with enough unused space, in bytes and
// as a share of the file.
func TestDefragPolicy(t *testing.T) {
	const mib = 1 << 20
	for _, tt := range []struct {
		p    store.DefragPolicy
		d    store.DBSize
		want bool
	}{
		{store.StartupDefrag, store.DBSize{Size: 100 * mib, InUse: 70 * mib}, true},
		{store.StartupDefrag, store.DBSize{Size: 100 * mib, InUse: 80 * mib}, false}, // 20% free
		{store.StartupDefrag, store.DBSize{Size: 10 * mib, InUse: 4 * mib}, false},   // 6 MiB free
		{store.ServingDefrag, store.DBSize{Size: 200 * mib, InUse: 90 * mib}, true},
		{store.ServingDefrag, store.DBSize{Size: 200 * mib, InUse: 110 * mib}, false}, // 45% free
		{store.ServingDefrag, store.DBSize{Size: 100 * mib, InUse: 40 * mib}, false},  // 60 MiB free
		{store.DefragPolicy{}, store.DBSize{}, false},                                 // no file yet
	} {
		if got := tt.p.Worth(tt.d); got != tt.want {
			t.Errorf("%+v worth defragmenting %s: %v, want %v", tt.p, tt.d, got, tt.want)
		}
	}
}

// TestDefragment fills the embedded member's database, deletes most of it and compacts, then
// checks that the file keeps its size until defragmented, that a policy asking for more free
// space leaves it alone, that the defragmentation gives the space back, and that the data kept
// and the store's writes survive it.
func TestDefragment(t *testing.T) {
	t.Parallel()
	e := storetest.NewEtcd(t)
	c := e.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	// 800 values of 64 KiB (50 MiB); the first 300 stay (19 MiB), the others are deleted.
	value := strings.Repeat("x", 64<<10)
	const n, kept = 800, 300
	for i := range n {
		if _, err := c.Put(ctx, fmt.Sprintf("/fill/%04d", i), value); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.Put(ctx, "/kept", "still here"); err != nil {
		t.Fatal(err)
	}
	del, err := c.Delete(ctx, fmt.Sprintf("/fill/%04d", kept), clientv3.WithRange("/fill0"))
	if err != nil || del.Deleted != n-kept {
		t.Fatalf("deleted %v keys, want %d: %v", del, n-kept, err)
	}
	storetest.FreeHistory(ctx, t, e, del.Header.Revision, 25<<20)
	full := e.DBSize()
	before, after, err := e.DefragmentIfWorth(ctx, store.DefragPolicy{MinFree: full.Size + 1})
	if err != nil || after != before || before.Size != full.Size {
		t.Fatalf("a policy asking for more than the file changed it: %s → %s, %v", before, after, err)
	}
	start := time.Now()
	before, after, err = e.DefragmentIfWorth(ctx, store.StartupDefrag)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("defragmented %s to %s in %s", before, after, time.Since(start).Round(time.Millisecond))
	if after.Size > before.InUse+before.InUse/10+(4<<20) || after.Size > before.Size*6/10 {
		t.Errorf("defragmented %s to %s, want about the part in use", before, after)
	}
	for _, i := range []int{0, kept - 1} {
		got, err := c.Get(ctx, fmt.Sprintf("/fill/%04d", i))
		if err != nil || len(got.Kvs) != 1 || len(got.Kvs[0].Value) != len(value) {
			t.Errorf("/fill/%04d after the defragmentation: %v", i, err)
		}
	}
	got, err := c.Get(ctx, "/kept")
	if err != nil || len(got.Kvs) != 1 || string(got.Kvs[0].Value) != "still here" {
		t.Errorf("the kept key after the defragmentation: %v, %v", got, err)
	}
	if _, err := c.Put(ctx, "/after", "written"); err != nil {
		t.Errorf("writing after the defragmentation: %v", err)
	}
}

// TestRecoverSpace fills a member with a small space quota until etcd raises its NOSPACE alarm
// and refuses writes, deletes most of the data as a user would (by removing objects), and checks
// that RecoverSpace gives the member back its writes, and does nothing without the alarm.
func TestRecoverSpace(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	e, err := store.StartEtcd(ctx, store.EtcdConfig{Name: "test", DataDir: t.TempDir(), Logger: storetest.Logger(t), QuotaBackendBytes: 16 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	c := e.Client()
	log := storetest.Logger(t)
	if err := e.RecoverSpace(ctx, log); err != nil {
		t.Fatalf("without the alarm: %v", err)
	}

	value := strings.Repeat("x", 64<<10)
	var written int
	for ; ; written++ {
		if written > 1000 {
			t.Fatal("64 MiB written under a 16 MiB quota without a NOSPACE alarm")
		}
		if _, err := c.Put(ctx, fmt.Sprintf("/fill/%04d", written), value); err != nil {
			if !errors.Is(err, rpctypes.ErrGRPCNoSpace) && !strings.Contains(err.Error(), "database space exceeded") {
				t.Fatalf("put %d: %v, want etcd's database space exceeded", written, err)
			}
			break
		}
	}
	if _, err := c.Put(ctx, "/one-more", "x"); err == nil {
		t.Fatal("a write went through under the NOSPACE alarm")
	}
	if _, err := c.Delete(ctx, "/fill/", clientv3.WithPrefix()); err != nil {
		t.Fatalf("deleting under the NOSPACE alarm: %v", err)
	}
	if _, err := c.Put(ctx, "/one-more", "x"); err == nil {
		t.Fatal("a write went through under the NOSPACE alarm after the deletes; the test proves nothing")
	}

	if err := e.RecoverSpace(ctx, log); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Put(ctx, "/one-more", "x"); err != nil {
		t.Errorf("writing after RecoverSpace: %v", err)
	}
	alarms, err := c.AlarmList(ctx)
	if err != nil || len(alarms.Alarms) != 0 {
		t.Errorf("alarms after RecoverSpace: %v, %v", alarms, err)
	}
	if d := e.DBSize(); d.Size > 4<<20 {
		t.Errorf("database after RecoverSpace: %s, want it defragmented", d)
	}
}

// TestRunDefragmenter: the periodic defragmenter gives back a file's freed space once its policy
// finds it worth it, and stops when its context ends.
func TestRunDefragmenter(t *testing.T) {
	t.Parallel()
	e := storetest.NewEtcd(t)
	c := e.Client()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	value := strings.Repeat("x", 64<<10)
	for i := range 200 { // 12.5 MiB
		if _, err := c.Put(ctx, fmt.Sprintf("/fill/%04d", i), value); err != nil {
			t.Fatal(err)
		}
	}
	del, err := c.Delete(ctx, "/fill/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	storetest.FreeHistory(ctx, t, e, del.Header.Revision, 10<<20)
	full := e.DBSize()

	rctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		e.RunDefragmenter(rctx, 50*time.Millisecond, store.DefragPolicy{MinFree: 8 << 20, MinFreeRatio: 0.5}, storetest.Logger(t))
	}()
	for e.DBSize().Size >= full.Size/2 {
		if ctx.Err() != nil {
			t.Fatalf("the defragmenter left %s (was %s)", e.DBSize(), full)
		}
		time.Sleep(20 * time.Millisecond)
	}
	stop()
	<-done
}
