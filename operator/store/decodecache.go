package store

import (
	"reflect"
	"sync"
	"sync/atomic"
	"unsafe"
	"weak"

	"github.com/bosun-gitops/bosun/internal/resource"
	"github.com/prometheus/client_golang/prometheus"
)

// decodeCacheSize is how many values the watches' shared decodes remember.
const decodeCacheSize = 4096

// decodeCache lets the store's watches share the objects they decode. Every watch of a resource
// receives the same etcd events, usually milliseconds apart: the first watch to reach an event
// decodes its value, the others take that object. Many watches of one resource are the normal
// case (each node's agent watches the pods bound to it, the controllers' informers and the API's
// clients watch whole kinds), and decoding an event once rather than once per watch is what lets
// them follow a busy resource; kube-apiserver's watch cache exists for the same reason.
//
// It refers to the objects weakly, so it never keeps one alive: an object is shared while some
// watch, informer or response still holds it, and is collected as usual after that. It remembers
// the last decodeCacheSize values; a watch that has fallen further behind decodes for itself.
type decodeCache struct {
	mu      sync.Mutex
	index   map[decodeKey]weakObject
	ring    []decodeKey // FIFO of the keys in index, oldest at head
	head, n int

	decoded, shared atomic.Uint64
}

// decodeKey names one decoded object: an etcd key and ModRevision name one value, stamped
// with one resourceVersion (a deleted object's last state carries the deletion's revision).
type decodeKey struct {
	key         string
	valueRev    int64
	resourceRev int64
}

// weakObject refers to a decoded object without keeping it alive.
type weakObject struct {
	typ reflect.Type       // the object's struct type (corev1.Pod for a *corev1.Pod)
	ref weak.Pointer[byte] // the object's first byte, which stands for the whole object
}

func weakOf(obj resource.Object) weakObject {
	v := reflect.ValueOf(obj)
	return weakObject{typ: v.Type().Elem(), ref: weak.Make((*byte)(v.UnsafePointer()))}
}

// get returns the object, or nil once it has been collected.
func (w weakObject) get() resource.Object {
	p := w.ref.Value()
	if p == nil {
		return nil
	}
	return reflect.NewAt(w.typ, unsafe.Pointer(p)).Interface().(resource.Object)
}

// newDecodeCache returns a cache of the last size values.
func newDecodeCache(size int) *decodeCache {
	return &decodeCache{index: map[decodeKey]weakObject{}, ring: make([]decodeKey, size)}
}

// decode returns the object of value (res's value at etcdKey, written at valueRev) with
// resourceVersion resourceRev, decoding it unless a watch already did and still holds it.
func (c *decodeCache) decode(res *resource.Resource, etcdKey []byte, valueRev, resourceRev int64, value []byte) (resource.Object, error) {
	k := decodeKey{key: string(etcdKey), valueRev: valueRev, resourceRev: resourceRev}
	c.mu.Lock()
	w, ok := c.index[k]
	c.mu.Unlock()
	if ok {
		if obj := w.get(); obj != nil {
			c.shared.Add(1)
			return obj, nil
		}
	}
	obj, err := decode(res, value, resourceRev)
	if err != nil {
		return nil, err
	}
	c.decoded.Add(1)
	c.mu.Lock()
	defer c.mu.Unlock()
	if w, ok := c.index[k]; ok {
		if prev := w.get(); prev != nil {
			return prev, nil // decoded by another watch meanwhile: all get the same object
		}
		c.index[k] = weakOf(obj) // the earlier one was collected; the key keeps its place
		return obj, nil
	}
	if c.n == len(c.ring) {
		delete(c.index, c.ring[c.head])
		c.ring[c.head] = decodeKey{}
		c.head = (c.head + 1) % len(c.ring)
		c.n--
	}
	c.ring[(c.head+c.n)%len(c.ring)] = k
	c.n++
	c.index[k] = weakOf(obj)
	return obj, nil
}

// Collectors returns the store's Prometheus metrics: how many watch events' objects were
// decoded, and how many were shared with another watch that had decoded them.
func (s *Store) Collectors() []prometheus.Collector {
	return []prometheus.Collector{
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "bosun_store_watch_decodes_total",
			Help: "Objects decoded from etcd watch events (once per value, whatever the number of watches).",
		}, func() float64 { return float64(s.decodes.decoded.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "bosun_store_watch_shared_decodes_total",
			Help: "Watch events whose object another watch of the same resource had already decoded.",
		}, func() float64 { return float64(s.decodes.shared.Load()) }),
	}
}
