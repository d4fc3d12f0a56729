package store

import (
	"runtime"
	"testing"

	"github.com/bosun-gitops/bosun/internal/resource"
)

// TestDecodeCacheBounds checks the shared decodes' limits: the same value is decoded once while
// something holds its object, the oldest value goes when the cache is full, and the cache never
// keeps an object alive: once nothing holds it, it is collected and decoded anew.
func TestDecodeCacheBounds(t *testing.T) {
	c := newDecodeCache(2)
	value := []byte(`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a","namespace":"default"},"data":{"k":"some data to make the object large enough"}}`)
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
		t.Error("the same value decoded twice while its object is held")
	}
	if other := get("k1", 2); other == first {
		t.Error("another revision of the key got the cached object")
	}
	if rv := first.GetResourceVersion(); rv != "1" {
		t.Errorf("resourceVersion %q, want 1", rv)
	}
	third := get("k3", 3) // the cache remembers two: k1@1 goes
	if again := get("k1", 1); again == first {
		t.Error("the oldest value was not dropped when the cache was full")
	}
	if again := get("k3", 3); again != third {
		t.Error("a value still remembered, its object held, was decoded again")
	}
	if c.decoded.Load() != 4 || c.shared.Load() != 2 {
		t.Errorf("counted %d decoded, %d shared; want 4 and 2", c.decoded.Load(), c.shared.Load())
	}
	runtime.KeepAlive(first)

	// Nothing holds k3's object any more: the collector frees it, the cache forgets it.
	held := third.GetUID() // what the test keeps: not the object
	third = nil
	runtime.GC()
	runtime.GC()
	decoded := c.decoded.Load()
	if again := get("k3", 3); again.GetUID() != held || c.decoded.Load() != decoded+1 {
		t.Errorf("a value whose object was collected: decoded %d times more, want once", c.decoded.Load()-decoded)
	}
}
