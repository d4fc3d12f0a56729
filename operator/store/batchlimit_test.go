package store_test

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bosun-gitops/bosun/internal/resource"
	"github.com/bosun-gitops/bosun/operator/store"
	"github.com/bosun-gitops/bosun/operator/store/storetest"
	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
)

// TestBatchSplitsLargeObjectsByBytes writes six ~600 KiB ConfigMaps, each followed by three
// small ones, in one Batch: no two large ones fit a transaction (MaxTxnBytes 1 MiB, etcd takes
// 1.5 MiB requests), so the batch must cut six transactions by bytes, not by count, and not fall
// back to one transaction per op after etcd refuses an oversized one. Objects written in one
// transaction share its revision, which shows how the batch was cut. Then the same for updates,
// and every object lands exactly once (a watch from before sees one event per object and write).
func TestBatchSplitsLargeObjectsByBytes(t *testing.T) {
	ctx := context.Background()
	s := storetest.NewStoreWithOptions(t, store.Options{MaxTxnBytes: store.DefaultMaxTxnBytes})
	const large, smallPerLarge = 6, 3
	const largeBytes, smallBytes = 600 << 10, 1 << 10

	start, err := s.List(ctx, resource.ConfigMaps, "", store.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	events, err := s.Watch(ctx, resource.ConfigMaps, "", store.WatchOptions{ResourceVersion: start.ResourceVersion})
	if err != nil {
		t.Fatal(err)
	}

	for round, opType := range []store.OpType{store.OpCreate, store.OpUpdate} {
		var ops []store.Op
		var want []string // "name=payload length/first byte" of every op, in order
		for i := range large {
			fill := byte('a' + round)
			ops = append(ops, store.Op{Type: opType, Resource: resource.ConfigMaps, Object: payloadConfigMap(fmt.Sprintf("large-%d", i), largeBytes, fill)})
			for j := range smallPerLarge {
				ops = append(ops, store.Op{Type: opType, Resource: resource.ConfigMaps, Object: payloadConfigMap(fmt.Sprintf("small-%d-%d", i, j), smallBytes, fill)})
			}
		}
		for _, op := range ops {
			want = append(want, summary(op.Object.(*corev1.ConfigMap)))
		}
		results := s.Batch(ctx, ops)

		revisions := map[string][]string{} // resourceVersion → names committed in it
		for i, r := range results {
			if r.Err != nil {
				t.Fatalf("round %d: op %d (%s): %v", round, i, ops[i].Object.GetName(), r.Err)
			}
			rv := r.Object.GetResourceVersion()
			revisions[rv] = append(revisions[rv], r.Object.GetName())
		}
		if len(revisions) != large {
			t.Errorf("round %d: the batch was committed in %d transactions, want %d (one per large object):\n%v", round, len(revisions), large, revisions)
		}
		for rv, names := range revisions {
			n := 0
			for _, name := range names {
				if strings.HasPrefix(name, "large-") {
					n++
				}
			}
			if n != 1 {
				t.Errorf("round %d: transaction %s holds %d large objects, want 1: %v", round, rv, n, names)
			}
		}
		if err := checkConsecutive(revisions); err != nil {
			t.Errorf("round %d: %v", round, err)
		}

		list, err := s.List(ctx, resource.ConfigMaps, "", store.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		got := make([]string, 0, len(list.Items))
		for _, o := range list.Items {
			got = append(got, summary(o.(*corev1.ConfigMap)))
		}
		slices.Sort(got)
		sorted := slices.Sorted(slices.Values(want))
		if diff := cmp.Diff(sorted, got); diff != "" {
			t.Errorf("round %d: stored objects (-want +got):\n%s", round, diff)
		}
	}

	// One event per object per round: nothing written twice, nothing missing.
	wantType := []watch.EventType{watch.Added, watch.Modified}
	total := 2 * large * (1 + smallPerLarge)
	seen := map[string]int{}
	timeout := time.After(time.Minute) // only bounds a hung test
	for n := 0; n < total; n++ {
		select {
		case ev := <-events:
			if ev.Type != wantType[n/(total/2)] {
				t.Fatalf("event %d: %s %v, want %s", n, ev.Type, ev.Err, wantType[n/(total/2)])
			}
			seen[string(ev.Type)+" "+ev.Object.GetName()]++
		case <-timeout:
			t.Fatalf("saw %d of %d watch events", n, total)
		}
	}
	for k, n := range seen {
		if n != 1 {
			t.Errorf("%s seen %d times", k, n)
		}
	}
	if len(seen) != total {
		t.Errorf("%d distinct events, want %d", len(seen), total)
	}
}

func payloadConfigMap(name string, size int, fill byte) *corev1.ConfigMap {
	cm := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name},
		Data:       map[string]string{"payload": strings.Repeat(string(fill), size)},
	}
	resource.ConfigMaps.SetTypeMeta(cm)
	return cm
}

func summary(cm *corev1.ConfigMap) string {
	p := cm.Data["payload"]
	if p == "" {
		return cm.Name + "=empty"
	}
	return fmt.Sprintf("%s=%d×%c", cm.Name, len(p), p[0])
}

// checkConsecutive checks that the transactions' revisions follow each other: no revision of
// the batch went to a write outside the ones reported.
func checkConsecutive(revisions map[string][]string) error {
	var revs []int
	for rv := range revisions {
		n, err := strconv.Atoi(rv)
		if err != nil {
			return fmt.Errorf("resourceVersion %q: %w", rv, err)
		}
		revs = append(revs, n)
	}
	slices.Sort(revs)
	if len(revs) > 0 && revs[len(revs)-1]-revs[0] != len(revs)-1 {
		return fmt.Errorf("revisions %v are not consecutive", revs)
	}
	return nil
}
