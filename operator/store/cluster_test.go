package store_test

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/bosun-gitops/bosun/internal/resource"
	"github.com/bosun-gitops/bosun/operator/store"
	"github.com/bosun-gitops/bosun/operator/store/storetest"
	clientv3 "go.etcd.io/etcd/client/v3"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/watch"
)

// TestThreeMemberCluster runs a real three-member cluster on loopback and stops one member:
// the store, connected to all three, keeps reading and writing.
func TestThreeMemberCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three etcd members")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	members := storetest.NewCluster(t, 3)
	var endpoints []string
	for _, m := range members {
		endpoints = append(endpoints, m.Endpoints()...)
	}
	client, err := store.Connect(ctx, store.ClientConfig{Endpoints: endpoints, Logger: storetest.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	s := store.New(client, store.Options{Logger: storetest.Logger(t)})

	before, err := s.Create(ctx, resource.Pods, pod("a", "before", ""))
	if err != nil {
		t.Fatal(err)
	}
	// A watch started before the failover follows every later write, resuming from the last
	// resourceVersion it saw when the store ends it (etcd lost its leader), as a reflector does.
	seen := make(chan []string, 1)
	go func() {
		var names []string
		rv := rvOf(t, before)
		for len(names) < 20 && ctx.Err() == nil {
			ch, err := s.Watch(ctx, resource.Pods, "a", store.WatchOptions{ResourceVersion: rv})
			if err != nil {
				time.Sleep(100 * time.Millisecond)
				continue
			}
			for ev := range ch {
				if ev.Type == watch.Error {
					t.Logf("watch ended during failover: %v; resuming from %d", ev.Err, rv)
					break
				}
				if ev.Type == watch.Added {
					names = append(names, ev.Object.GetName())
				}
				if n, err := strconv.ParseInt(ev.Object.GetResourceVersion(), 10, 64); err == nil {
					rv = n
				}
				if len(names) == 20 {
					break
				}
			}
		}
		seen <- names
	}()
	// Stop the leader, the hardest case: the others must elect a new one.
	leader := leaderIndex(ctx, t, client, members)
	if err := members[leader].Close(); err != nil {
		t.Fatal(err)
	}
	t.Logf("stopped member %s (leader)", members[leader].Name())

	// Writes may fail while a new leader is elected; they must succeed soon after. The loop is
	// bounded by ctx, not a wall-clock assertion.
	var created int
	for i := 0; created < 20; i++ {
		if ctx.Err() != nil {
			t.Fatalf("only %d writes succeeded after stopping a member", created)
		}
		wctx, wcancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := s.Create(wctx, resource.Pods, pod("a", fmt.Sprintf("after-%d", i), ""))
		wcancel()
		if err != nil {
			t.Logf("write during failover: %v", err)
			time.Sleep(100 * time.Millisecond)
			continue
		}
		created++
	}
	list, err := s.List(ctx, resource.Pods, "a", store.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Items) != 21 {
		t.Errorf("listed %d pods, want 21", len(list.Items))
	}
	got, err := s.Get(ctx, resource.Pods, "a", "before")
	if err != nil {
		t.Fatal(err)
	}
	if got.(*corev1.Pod).Spec.Containers[0].Image != "busybox" {
		t.Errorf("read back %v", got)
	}
	names := <-seen
	if len(names) != 20 || len(slices.Compact(slices.Sorted(slices.Values(names)))) != 20 {
		t.Errorf("the watch saw %d pods added after the failover (%v), want each of the 20 once", len(names), names)
	}
}

func leaderIndex(ctx context.Context, t *testing.T, client *clientv3.Client, members []*store.Etcd) int {
	t.Helper()
	for i, m := range members {
		st, err := client.Status(ctx, m.Endpoints()[0])
		if err != nil {
			t.Fatal(err)
		}
		if st.Leader == st.Header.MemberId {
			return i
		}
	}
	t.Fatal("no leader")
	return -1
}
