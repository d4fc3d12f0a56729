package memtrim

import (
	"log/slog"
	"testing"
)

// TestIdleReleaser: memory goes back to the OS on the first check after a quiet interval with
// enough to reclaim, once per burst; never while the process allocates, nor twice at rest.
func TestIdleReleaser(t *testing.T) {
	const mib = 1 << 20
	var allocs, reclaimable uint64
	frees := 0
	r := &idleReleaser{
		th:   OperatorThresholds,
		read: func() (uint64, uint64) { return allocs, reclaimable },
		free: func() { frees++; reclaimable = 2 * mib },
		log:  slog.New(slog.DiscardHandler),
	}
	steps := []struct {
		name               string
		allocated, garbage uint64
		want               bool
	}{
		{"first check: no baseline", 0, 300 * mib, false},
		{"busy: a sync allocates", 500 * mib, 300 * mib, false},
		{"busy: controllers fan out", 200 * mib, 350 * mib, false},
		{"idle after the burst", 1 * mib, 350 * mib, true},
		{"idle, what is left is too little", 1 * mib, 2 * mib, false},
		{"idle, a little garbage", 4 * mib, 10 * mib, false},
		{"busy again", 100 * mib, 120 * mib, false},
		{"idle again", 0, 120 * mib, true},
		{"idle, garbage settles: no burst since the release", 2 * mib, 60 * mib, false},
		{"idle, still no burst", 2 * mib, 60 * mib, false},
		{"a burst too small to release after", 20 * mib, 1 * mib, false},
		{"idle after it", 0, 1 * mib, false},
		{"garbage grows at rest, the burst still counts", 1 * mib, 40 * mib, true},
	}
	for _, s := range steps {
		allocs += s.allocated
		reclaimable = s.garbage
		before := frees
		if got := r.check(); got != s.want || (frees > before) != s.want {
			t.Errorf("%s: check() = %v (frees %d -> %d), want %v", s.name, got, before, frees, s.want)
		}
	}
}
