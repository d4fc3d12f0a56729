package store_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/bosun-gitops/bosun/internal/resource"
	"github.com/bosun-gitops/bosun/operator/store"
	"github.com/bosun-gitops/bosun/operator/store/storetest"
	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
)

func names(objs []resource.Object) []string {
	out := []string{}
	for _, o := range objs {
		out = append(out, o.GetNamespace()+"/"+o.GetName())
	}
	return out
}

func TestList(t *testing.T) {
	ctx := context.Background()
	s := storetest.NewStore(t)
	for i := range 6 {
		ns := "a"
		if i >= 4 {
			ns = "b"
		}
		p := pod(ns, fmt.Sprintf("p%d", i), fmt.Sprintf("node-%d", i%2))
		if i%3 == 0 {
			p.Labels["tier"] = "front"
		}
		if _, err := s.Create(ctx, resource.Pods, p); err != nil {
			t.Fatal(err)
		}
	}
	// A namespace whose name is a prefix of another must not leak into it.
	if _, err := s.Create(ctx, resource.Pods, pod("ab", "x", "")); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name      string
		namespace string
		opts      store.ListOptions
		want      []string
	}{
		{"all", "", store.ListOptions{}, []string{"a/p0", "a/p1", "a/p2", "a/p3", "ab/x", "b/p4", "b/p5"}},
		{"namespace", "a", store.ListOptions{}, []string{"a/p0", "a/p1", "a/p2", "a/p3"}},
		{"label", "", store.ListOptions{LabelSelector: labels.SelectorFromSet(labels.Set{"tier": "front"})}, []string{"a/p0", "a/p3"}},
		{"field nodeName", "", store.ListOptions{FieldSelector: fields.OneTermEqualSelector("spec.nodeName", "node-1")}, []string{"a/p1", "a/p3", "b/p5"}},
		{"field name", "b", store.ListOptions{FieldSelector: fields.OneTermEqualSelector("metadata.name", "p4")}, []string{"b/p4"}},
		{"both", "a", store.ListOptions{
			LabelSelector: labels.SelectorFromSet(labels.Set{"tier": "front"}),
			FieldSelector: fields.OneTermNotEqualSelector("spec.nodeName", "node-0"),
		}, []string{"a/p3"}},
		{"no match", "", store.ListOptions{LabelSelector: labels.SelectorFromSet(labels.Set{"nope": "1"})}, []string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.List(ctx, resource.Pods, tt.namespace, tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, names(got.Items)); diff != "" {
				t.Errorf("items (-want +got):\n%s", diff)
			}
			if got.ResourceVersion == 0 || got.Continue != "" {
				t.Errorf("rv %d continue %q", got.ResourceVersion, got.Continue)
			}
		})
	}

	if _, err := s.List(ctx, resource.Pods, "", store.ListOptions{FieldSelector: fields.OneTermEqualSelector("spec.bogus", "x")}); !apierrors.IsBadRequest(err) {
		t.Errorf("unsupported field selector: err = %v, want BadRequest", err)
	}
}

func TestListPaging(t *testing.T) {
	ctx := context.Background()
	s := storetest.NewStore(t)
	var want []string
	for i := range 25 {
		p := pod("default", fmt.Sprintf("p%02d", i), "")
		if i%2 == 0 {
			p.Labels["even"] = "yes"
			want = append(want, "default/"+p.Name)
		}
		if _, err := s.Create(ctx, resource.Pods, p); err != nil {
			t.Fatal(err)
		}
	}
	sel := labels.SelectorFromSet(labels.Set{"even": "yes"})
	var got []string
	var firstRV int64
	opts := store.ListOptions{Limit: 4, LabelSelector: sel}
	for page := 0; ; page++ {
		res, err := s.List(ctx, resource.Pods, "default", opts)
		if err != nil {
			t.Fatal(err)
		}
		if page == 0 {
			firstRV = res.ResourceVersion
			// Writes after the first page are not seen by later pages: one snapshot.
			if _, err := s.Create(ctx, resource.Pods, pod("default", "p99", "")); err != nil {
				t.Fatal(err)
			}
		}
		if res.ResourceVersion != firstRV {
			t.Errorf("page %d read at %d, want %d", page, res.ResourceVersion, firstRV)
		}
		if len(res.Items) > 4 {
			t.Errorf("page %d has %d items", page, len(res.Items))
		}
		got = append(got, names(res.Items)...)
		if res.Continue == "" {
			break
		}
		opts.Continue = res.Continue
		if page > 10 {
			t.Fatal("paging does not end")
		}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("paged items (-want +got):\n%s", diff)
	}
	if _, err := s.List(ctx, resource.Pods, "default", store.ListOptions{Limit: 1, Continue: "garbage"}); !apierrors.IsBadRequest(err) {
		t.Errorf("bad continue: err = %v", err)
	}

	// A continue token whose revision was compacted is 410 Gone.
	res, err := s.List(ctx, resource.Pods, "default", store.ListOptions{Limit: 2})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if _, err := s.Create(ctx, resource.Pods, pod("default", fmt.Sprintf("late%d", i), "")); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Compact(ctx, 1, 0); err != nil {
		t.Fatal(err)
	}
	_, err = s.List(ctx, resource.Pods, "default", store.ListOptions{Limit: 2, Continue: res.Continue})
	if !apierrors.IsResourceExpired(err) {
		t.Errorf("continue after compaction: err = %v, want ResourceExpired", err)
	}
}

func TestFieldSet(t *testing.T) {
	p := pod("ns", "n", "node-1")
	p.Status.Phase = corev1.PodPending
	got := fieldSubset(store.FieldSet(resource.Pods, p), "metadata.name", "metadata.namespace", "spec.nodeName", "status.phase")
	want := fields.Set{"metadata.name": "n", "metadata.namespace": "ns", "spec.nodeName": "node-1", "status.phase": "Pending"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("pod field set (-want +got):\n%s", diff)
	}
	ev := &corev1.Event{InvolvedObject: corev1.ObjectReference{Kind: "Pod", Name: "n", Namespace: "ns"}}
	got = fieldSubset(store.FieldSet(resource.Events, ev), "involvedObject.kind", "involvedObject.name", "involvedObject.namespace")
	want = fields.Set{"involvedObject.kind": "Pod", "involvedObject.name": "n", "involvedObject.namespace": "ns"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("event field set (-want +got):\n%s", diff)
	}
	if _, ok := store.FieldSet(resource.Nodes, &corev1.Node{})["metadata.namespace"]; ok {
		t.Errorf("cluster-scoped kind has metadata.namespace")
	}
}

func fieldSubset(set fields.Set, keys ...string) fields.Set {
	out := fields.Set{}
	for _, k := range keys {
		if v, ok := set[k]; ok {
			out[k] = v
		}
	}
	return out
}
