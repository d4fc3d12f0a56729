package operator

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bosun-gitops/bosun/operator/store"
	"github.com/bosun-gitops/bosun/operator/store/storetest"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// TestEmbeddedEtcdDefragmentedAtStart: an embedded etcd whose database file is mostly freed
// history (written, deleted and compacted by an earlier run) is defragmented when the operator
// connects to it, and its metrics show the file's size and the defragmentation.
func TestEmbeddedEtcdDefragmentedAtStart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	earlier, err := store.StartEtcd(ctx, store.EtcdConfig{Name: "bosun", DataDir: filepath.Join(dir, "etcd"), Logger: storetest.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	c := earlier.Client()
	value := strings.Repeat("x", 64<<10)
	for i := range 400 { // 25 MiB
		if _, err := c.Put(ctx, fmt.Sprintf("/fill/%04d", i), value); err != nil {
			t.Fatal(err)
		}
	}
	del, err := c.Delete(ctx, "/fill/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	storetest.FreeHistory(ctx, t, earlier, del.Header.Revision, 20<<20)
	full := earlier.DBSize()
	if err := earlier.Close(); err != nil {
		t.Fatal(err)
	}

	o := &Operator{cfg: Config{DataDir: dir, Logger: storetest.Logger(t)}, metrics: newMetricsRegistry()}
	_, closeEtcd, err := o.connectEtcd(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer closeEtcd()
	got := map[string]float64{}
	families, err := o.metrics.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if strings.HasPrefix(f.GetName(), "bosun_etcd_") {
			m := f.GetMetric()[0]
			got[f.GetName()] = m.GetGauge().GetValue() + m.GetCounter().GetValue()
		}
	}
	if got["bosun_etcd_defragmentations_total"] != 1 {
		t.Errorf("defragmentations at start: %v, want 1 (metrics %v)", got["bosun_etcd_defragmentations_total"], got)
	}
	if size := got["bosun_etcd_db_size_bytes"]; size <= 0 || size > float64(full.Size)/4 {
		t.Errorf("database file after the start: %.0f bytes, was %s before: want it defragmented", size, full)
	}
	if got["bosun_etcd_db_size_in_use_bytes"] <= 0 {
		t.Errorf("bosun_etcd_db_size_in_use_bytes: %v", got["bosun_etcd_db_size_in_use_bytes"])
	}
}
