package store_test

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/bosun-gitops/bosun/internal/resource"
	"github.com/bosun-gitops/bosun/operator/store"
	"github.com/bosun-gitops/bosun/operator/store/storetest"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
)

// TestJSONValuesStillRead checks that values an earlier Bosun wrote as JSON are read by every
// path (get, list, metadata list, watch), and that the next write stores the object as protobuf.
func TestJSONValuesStillRead(t *testing.T) {
	t.Parallel()
	s := storetest.NewStore(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	const key = "/bosun/registry/core/configmaps/default/old"
	legacy := `{"kind":"ConfigMap","apiVersion":"v1","metadata":{"name":"old","namespace":"default","uid":"u-1","labels":{"app":"web"},"annotations":{"bosun.dev/source":"old.yaml"}},"data":{"k":"v"}}`
	watchFrom, err := s.CurrentRevision(ctx)
	if err != nil {
		t.Fatal(err)
	}
	events, err := s.Watch(ctx, resource.ConfigMaps, "default", store.WatchOptions{ResourceVersion: watchFrom})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Client().Put(ctx, key, legacy); err != nil {
		t.Fatal(err)
	}

	check := func(how string, obj resource.Object) {
		t.Helper()
		cm, ok := obj.(*corev1.ConfigMap)
		if !ok || cm.Name != "old" || cm.Labels["app"] != "web" || cm.Data["k"] != "v" || cm.UID != "u-1" {
			t.Errorf("%s read the JSON value as %#v", how, obj)
		}
	}
	got, err := s.Get(ctx, resource.ConfigMaps, "default", "old")
	if err != nil {
		t.Fatal(err)
	}
	check("Get", got)
	list, err := s.List(ctx, resource.ConfigMaps, "default", store.ListOptions{})
	if err != nil || len(list.Items) != 1 {
		t.Fatalf("List: %v, %d items", err, len(list.Items))
	}
	check("List", list.Items[0])
	metas, _, err := s.ListMetadata(ctx, resource.ConfigMaps, "default")
	if err != nil || len(metas) != 1 || metas[0].Annotations["bosun.dev/source"] != "old.yaml" {
		t.Fatalf("ListMetadata: %v, %+v", err, metas)
	}
	select {
	case ev := <-events:
		if ev.Type != watch.Added {
			t.Fatalf("watch event %s %v", ev.Type, ev.Err)
		}
		check("Watch", ev.Object)
	case <-ctx.Done():
		t.Fatal("no watch event for the JSON value")
	}

	cm := got.(*corev1.ConfigMap).DeepCopy()
	cm.Data["k"] = "v2"
	if _, err := s.Update(ctx, resource.ConfigMaps, cm); err != nil {
		t.Fatal(err)
	}
	raw, err := s.Client().Get(ctx, key)
	if err != nil || len(raw.Kvs) != 1 {
		t.Fatalf("raw read: %v", err)
	}
	if !bytes.HasPrefix(raw.Kvs[0].Value, []byte("k8s\x00")) {
		t.Errorf("after an update the value is still %q, want protobuf", raw.Kvs[0].Value)
	}
	again, err := s.Get(ctx, resource.ConfigMaps, "default", "old")
	if err != nil || again.(*corev1.ConfigMap).Data["k"] != "v2" || again.GetUID() != "u-1" {
		t.Errorf("after the update Get = %v, %v", again, err)
	}
}

// TestCorruptValue checks that a value that is neither JSON nor protobuf is reported as a
// decoding error naming the resource, not returned as an empty object.
func TestCorruptValue(t *testing.T) {
	t.Parallel()
	s := storetest.NewStore(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for name, value := range map[string]string{
		"truncated": "k8s\x00\x0a\x09\x0a\x02v1", // typeMeta's length runs past the end
		"bad-raw":   "k8s\x00\x12\x03\x0a\x05ab", // raw holds a metadata field longer than raw
		"not-json":  "{nope",
	} {
		if _, err := s.Client().Put(ctx, "/bosun/registry/core/configmaps/default/"+name, value); err != nil {
			t.Fatal(err)
		}
		_, err := s.Get(ctx, resource.ConfigMaps, "default", name)
		if !apierrors.IsInternalError(err) || !strings.Contains(err.Error(), "decoding stored configmaps") {
			t.Errorf("%s: Get error = %v, want an internal error decoding stored configmaps", name, err)
		}
	}
}

// TestMediaTypeJSON checks that a store told to write JSON (operators sharing etcd with an older
// Bosun) writes JSON for every kind, and that stores of either media type read each other's values.
func TestMediaTypeJSON(t *testing.T) {
	t.Parallel()
	pbStore := storetest.NewStore(t)
	jsonStore := store.New(pbStore.Client(), store.Options{MediaType: store.MediaTypeJSON})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	for _, w := range []struct {
		name         string
		writer       *store.Store
		wantProtobuf bool
	}{{"by-json", jsonStore, false}, {"by-protobuf", pbStore, true}} {
		if _, err := w.writer.Create(ctx, resource.ConfigMaps, &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: w.name}, Data: map[string]string{"k": w.name}}); err != nil {
			t.Fatal(err)
		}
		raw, err := pbStore.Client().Get(ctx, "/bosun/registry/core/configmaps/default/"+w.name)
		if err != nil || len(raw.Kvs) != 1 {
			t.Fatalf("raw read: %v", err)
		}
		if got := bytes.HasPrefix(raw.Kvs[0].Value, []byte("k8s\x00")); got != w.wantProtobuf {
			t.Errorf("%s: stored as protobuf = %v, want %v: %q", w.name, got, w.wantProtobuf, raw.Kvs[0].Value)
		}
		for _, r := range []*store.Store{pbStore, jsonStore} {
			got, err := r.Get(ctx, resource.ConfigMaps, "default", w.name)
			if err != nil || got.(*corev1.ConfigMap).Data["k"] != w.name {
				t.Errorf("%s: read back %v, %v", w.name, got, err)
			}
		}
	}
}
