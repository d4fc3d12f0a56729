package store_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/bosun-gitops/bosun/internal/resource"
	"github.com/bosun-gitops/bosun/operator/store"
	"github.com/bosun-gitops/bosun/operator/store/storetest"
	"github.com/google/go-cmp/cmp"
)

// TestListMetadata compares ListMetadata with List: same objects, same order, the same
// metadata and resourceVersions, across more objects than one etcd read returns.
func TestListMetadata(t *testing.T) {
	ctx := context.Background()
	s := storetest.NewStore(t)
	for i := range 1100 {
		p := pod(fmt.Sprintf("ns-%d", i%3), fmt.Sprintf("p%04d", i), "node-1")
		p.Annotations = map[string]string{"a": fmt.Sprint(i)}
		if _, err := s.Create(ctx, resource.Pods, p); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Create(ctx, resource.Pods, pod("other", "x", "")); err != nil {
		t.Fatal(err)
	}
	for _, ns := range []string{"", "ns-1", "absent"} {
		t.Run("namespace="+ns, func(t *testing.T) {
			full, err := s.List(ctx, resource.Pods, ns, store.ListOptions{})
			if err != nil {
				t.Fatal(err)
			}
			metas, rev, err := s.ListMetadata(ctx, resource.Pods, ns)
			if err != nil {
				t.Fatal(err)
			}
			if rev != full.ResourceVersion {
				t.Errorf("revision %d, List read at %d", rev, full.ResourceVersion)
			}
			var want, got []string
			for _, o := range full.Items {
				want = append(want, fmt.Sprintf("%s/%s rv=%s uid=%s a=%s", o.GetNamespace(), o.GetName(), o.GetResourceVersion(), o.GetUID(), o.GetAnnotations()["a"]))
			}
			for _, m := range metas {
				if m.Kind != "Pod" || m.APIVersion != "v1" {
					t.Fatalf("type meta %v", m.TypeMeta)
				}
				got = append(got, fmt.Sprintf("%s/%s rv=%s uid=%s a=%s", m.Namespace, m.Name, m.ResourceVersion, m.UID, m.Annotations["a"]))
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("ListMetadata differs from List (-List +ListMetadata):\n%s", diff)
			}
		})
	}
}
