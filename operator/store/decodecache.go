package store

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/bosun-gitops/bosun/internal/resource"
	"github.com/prometheus/client_golang/prometheus"
)

// Bounds of the watches' shared decodes.
const (
	decodeCacheSize = 4096            // values remembered
	decodeCacheTTL  = 5 * time.Second // how long an unused value stays
)

// decodeCache lets the store's watches share the objects they decode. Every watch of a resource
// receives the same etcd events, usually milliseconds apart: the first watch to reach an event
// decodes its value, the others take that object. Many watches of one resource are the normal
// case (each node's agent watches the pods bound to it, the controllers' informers and the API's
// clients watch whole kinds), and decoding an event once rather than once per watch is what lets
// them follow a busy resource; kube-apiserver's watch cache exists for the same reason.
//
// It remembers the last decodeCacheSize values for at most decodeCacheTTL, so that it holds
// nothing once the store is idle; a watch that has fallen further behind decodes for itself.
type decodeCache struct {
	mu      sync.Mutex
	index   map[decodeKey]resource.Object
	ring    []decodeEntry // FIFO, oldest at head
	head, n int
	ttl     time.Duration
	sweep   *time.Timer // pending expiry of the oldest entries; nil when empty

	decoded, shared atomic.Uint64
}

// decodeKey names one decoded object: an etcd key and ModRevision name one value, stamped
// with one resourceVersion (a deleted object's last state carries the deletion's revision).
type decodeKey struct {
	key         string
	valueRev    int64
	resourceRev int64
}

type decodeEntry struct {
	key   decodeKey
	added time.Time
}

// newDecodeCache returns a cache of size values kept at most ttl.
func newDecodeCache(size int, ttl time.Duration) *decodeCache {
	return &decodeCache{index: map[decodeKey]resource.Object{}, ring: make([]decodeEntry, size), ttl: ttl}
}

// decode returns the object of value (res's value at etcdKey, written at valueRev) with
// resourceVersion resourceRev, decoding it unless a watch already did.
func (c *decodeCache) decode(res *resource.Resource, etcdKey []byte, valueRev, resourceRev int64, value []byte) (resource.Object, error) {
	k := decodeKey{key: string(etcdKey), valueRev: valueRev, resourceRev: resourceRev}
	c.mu.Lock()
	obj, ok := c.index[k]
	c.mu.Unlock()
	if ok {
		c.shared.Add(1)
		return obj, nil
	}
	obj, err := decode(res, value, resourceRev)
	if err != nil {
		return nil, err
	}
	c.decoded.Add(1)
	c.mu.Lock()
	defer c.mu.Unlock()
	if prev, ok := c.index[k]; ok {
		return prev, nil // decoded by another watch meanwhile: all get the same object
	}
	if c.n == len(c.ring) {
		c.dropOldestLocked()
	}
	c.ring[(c.head+c.n)%len(c.ring)] = decodeEntry{key: k, added: time.Now()}
	c.n++
	c.index[k] = obj
	if c.sweep == nil {
		c.sweep = time.AfterFunc(c.ttl, c.expire)
	}
	return obj, nil
}

func (c *decodeCache) dropOldestLocked() {
	delete(c.index, c.ring[c.head].key)
	c.ring[c.head] = decodeEntry{}
	c.head = (c.head + 1) % len(c.ring)
	c.n--
}

// expire drops the entries older than the TTL and comes back when the next one is due.
func (c *decodeCache) expire() {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	for c.n > 0 && now.Sub(c.ring[c.head].added) >= c.ttl {
		c.dropOldestLocked()
	}
	if c.n == 0 {
		c.sweep = nil
		return
	}
	c.sweep = time.AfterFunc(c.ttl-now.Sub(c.ring[c.head].added), c.expire)
}

// len returns the number of objects held.
func (c *decodeCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
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
