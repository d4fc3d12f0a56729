package replicaset

import (
	"sync"
	"time"

	"k8s.io/utils/clock"
)

// expectationsTTL bounds how long a controller waits for the informer to report its own writes
// (Kubernetes' ExpectationsTimeout): past it, a lost event cannot wedge an owner forever.
const expectationsTTL = 5 * time.Minute

// expectations records, per owner key, the pod creations and deletions a sync has issued but the
// informer has not reported yet. While any are outstanding the owner's pod count from the cache
// is stale, and acting on it would create or delete twice (Kubernetes' UIDTrackingControllerExpectations).
type expectations struct {
	clock clock.PassiveClock
	mu    sync.Mutex
	m     map[string]*expectation
}

type expectation struct {
	adds int
	dels map[string]bool // keys of pods whose deletion is awaited
	at   time.Time
}

func newExpectations(clk clock.PassiveClock) *expectations {
	return &expectations{clock: clk, m: map[string]*expectation{}}
}

// satisfied reports whether the cache reflects every write issued for key (or the wait expired).
func (e *expectations) satisfied(key string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	x, ok := e.m[key]
	if !ok {
		return true
	}
	if x.adds <= 0 && len(x.dels) == 0 {
		return true
	}
	return e.clock.Since(x.at) > expectationsTTL
}

// expectCreations records that n pods are about to be created for key.
func (e *expectations) expectCreations(key string, n int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.m[key] = &expectation{adds: n, dels: map[string]bool{}, at: e.clock.Now()}
}

// expectDeletions records that the pods podKeys are about to be deleted for key.
func (e *expectations) expectDeletions(key string, podKeys []string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	x := &expectation{dels: make(map[string]bool, len(podKeys)), at: e.clock.Now()}
	for _, k := range podKeys {
		x.dels[k] = true
	}
	e.m[key] = x
}

// creationObserved lowers the outstanding creations of key by n (an informer add, or a create
// that was skipped or failed and so will never be observed).
func (e *expectations) creationObserved(key string, n int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if x, ok := e.m[key]; ok {
		x.adds -= n
	}
}

// deletionObserved marks the deletion of podKey as seen (or as never going to happen).
func (e *expectations) deletionObserved(key, podKey string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if x, ok := e.m[key]; ok {
		delete(x.dels, podKey)
	}
}

// forget drops the record of a deleted owner.
func (e *expectations) forget(key string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.m, key)
}
