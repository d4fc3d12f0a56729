package store

import (
	"testing"
	"time"

	"github.com/bosun-gitops/bosun/internal/resource"
)

// TestDecodeCacheBounds checks the shared decodes' limits: the oldest value goes when the cache
// is full, every value goes once its TTL has passed, and a value decoded again after that is a
// new object.
func TestDecodeCacheBounds(t *testing.T) {
	c := newDecodeCache(2, 200*time.Millisecond)
	value := []byte(`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a","namespace":"default"}}`)
	get := func(key string, rev int64) resource.Object {
		t.Helper()
		obj, err := c.decode(resource.ConfigMaps, []byte(key), rev, rev, value)
		if err != nil {
			t.Fatal(err)
		}
		return obj
	}
	first := get("k1", 1)
	if again := get("k1", 1); again != first {
		t.Error("the same value decoded twice while cached")
	}
	if other := get("k1", 2); other == first {
		t.Error("another revision of the key got the cached object")
	}
	if rv := first.GetResourceVersion(); rv != "1" {
		t.Errorf("resourceVersion %q, want 1", rv)
	}
	third := get("k3", 3) // the cache holds two: k1@1 goes
	if again := get("k1", 1); again == first {
		t.Error("the oldest value was not dropped when the cache was full")
	}
	if got := c.len(); got != 2 {
		t.Errorf("the cache holds %d values, want its size, 2", got)
	}
	if again := get("k3", 3); again != third {
		t.Error("a value still cached was decoded again")
	}
	if c.decoded.Load() != 4 || c.shared.Load() != 2 {
		t.Errorf("counted %d decoded, %d shared; want 4 and 2", c.decoded.Load(), c.shared.Load())
	}

	deadline := time.Now().Add(10 * time.Second)
	for c.len() > 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := c.len(); n > 0 {
		t.Fatalf("%d values still held 10 s after their TTL of 200 ms", n)
	}
	if again := get("k3", 3); again == third {
		t.Error("an expired value was handed out again")
	}
}
