package memtrim

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"
	"runtime/metrics"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// IdleThresholds say when a process counts as idle and when a release is worth a collection.
type IdleThresholds struct {
	// Interval is how often the heap is checked.
	Interval time.Duration
	// IdleAlloc is what the process may allocate in one interval and still count as idle.
	IdleAlloc uint64
	// MinReclaimable is the least reclaimable heap worth a collection to hand back.
	MinReclaimable uint64
}

// OperatorThresholds suit the operator: at rest it renews its lease and little else; a burst (a
// large sync, the controllers' fan-out) leaves hundreds of MB of garbage.
var OperatorThresholds = IdleThresholds{Interval: 10 * time.Second, IdleAlloc: 8 << 20, MinReclaimable: 32 << 20}

// AgentThresholds suit the node agent: at rest it renews its lease, resyncs its pods and probes
// them; a burst of pod starts leaves a few MB of garbage on a heap of about ten.
var AgentThresholds = IdleThresholds{Interval: 10 * time.Second, IdleAlloc: 8 << 20, MinReclaimable: 6 << 20}

// idleReleases counts releases in this process, for the metric.
var idleReleases atomic.Uint64

// NewReleasesCounter returns the metric bosun_idle_memory_releases_total, for a process's
// registry.
func NewReleasesCounter() prometheus.Collector {
	return prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "bosun_idle_memory_releases_total",
		Help: "Times the process went idle after a burst of work and handed its heap's free memory back to the OS.",
	}, func() float64 { return float64(idleReleases.Load()) })
}

// ReleaseWhenIdle hands the heap's garbage and free pages back to the OS each time the process
// goes idle after a burst of work (an interval that allocated more than th.IdleAlloc), until
// ctx ends. The cost is one collection per burst. Run one per process: the heap is the process's.
func ReleaseWhenIdle(ctx context.Context, th IdleThresholds, log *slog.Logger) {
	r := &idleReleaser{th: th, read: heapState, free: debug.FreeOSMemory, log: log}
	t := time.NewTicker(th.Interval)
	defer t.Stop()
	r.check() // the baseline
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			r.check()
		}
	}
}

// idleReleaser decides, one check interval at a time, when to hand memory back.
type idleReleaser struct {
	th   IdleThresholds
	read func() (allocs, reclaimable uint64)
	free func()
	log  *slog.Logger
	last uint64 // allocs at the previous check
	seen bool
	// burst is set by an interval that allocated more than IdleAlloc and cleared by a release:
	// one release per burst, however the heap's garbage settles at rest.
	burst bool
}

// check reads the heap and frees memory if the process allocated little since the previous
// check, a burst of work came before, and a collection would hand back enough; it reports
// whether it did.
func (r *idleReleaser) check() bool {
	allocs, reclaimable := r.read()
	idle := r.seen && allocs-r.last <= r.th.IdleAlloc
	if r.seen && !idle {
		r.burst = true
	}
	r.last, r.seen = allocs, true
	if !idle || !r.burst || reclaimable < r.th.MinReclaimable {
		return false
	}
	start := time.Now()
	r.free()
	r.burst = false
	idleReleases.Add(1)
	allocs, left := r.read()
	r.last = allocs // the collection's own allocations are not the process's work
	r.log.Debug("idle: returned the heap's free memory to the OS", "reclaimable", formatMiB(reclaimable),
		"left", formatMiB(left), "took", time.Since(start).Round(time.Millisecond))
	return true
}

// heapState reads the bytes allocated so far and the heap memory that a collection would hand
// back: dead objects, unused span space and free pages not yet released, less what is live.
func heapState() (allocs, reclaimable uint64) {
	s := []metrics.Sample{
		{Name: "/gc/heap/allocs:bytes"},
		{Name: "/memory/classes/heap/objects:bytes"},
		{Name: "/memory/classes/heap/unused:bytes"},
		{Name: "/memory/classes/heap/free:bytes"},
		{Name: "/gc/heap/live:bytes"},
	}
	metrics.Read(s)
	held := s[1].Value.Uint64() + s[2].Value.Uint64() + s[3].Value.Uint64()
	if live := s[4].Value.Uint64(); held > live {
		reclaimable = held - live
	}
	return s[0].Value.Uint64(), reclaimable
}

func formatMiB(n uint64) string { return fmt.Sprintf("%dMiB", n>>20) }
