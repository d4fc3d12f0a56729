package store

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	etcdstorage "go.etcd.io/etcd/server/v3/storage"
)

// Compaction frees the history it drops inside etcd's database file, where later writes reuse
// the pages, but the file never shrinks: it stays at the largest size the data and its history
// ever reached, which counts against etcd's space quota (2 GiB by default; past it etcd refuses
// writes, see RecoverSpace) and, for the pages etcd has read, in the operator's memory, since
// bbolt maps the file. Defragmenting rewrites the file with only what is in use. It stalls every
// request to the member while it runs (BenchmarkDefragment, 2 cores and a virtual disk: 0.32 s
// for 30 000 values of 1.2 KB, 54 MiB in use, 4–5 times writing as many bytes), so an embedded
// member defragments at start, before the API serves, and while serving only once most of the
// file is free. etcd clusters given with --etcd-endpoints are their owners' to defragment
// (etcdctl defrag).

// DBSize is the size of a member's database file and the part of it in use.
type DBSize struct {
	Size, InUse int64
}

// Free is the unused space inside the file, which a defragmentation gives back.
func (d DBSize) Free() int64 { return d.Size - d.InUse }

func (d DBSize) String() string {
	return fmt.Sprintf("%.1f MiB (%.1f MiB in use)", float64(d.Size)/(1<<20), float64(d.InUse)/(1<<20))
}

// DefragPolicy says when a database file has enough unused space to be worth a defragmentation:
// at least MinFree bytes and MinFreeRatio of the file.
type DefragPolicy struct {
	MinFree      int64
	MinFreeRatio float64
}

// Worth reports whether d's unused space is worth a defragmentation.
func (p DefragPolicy) Worth(d DBSize) bool {
	return d.Size > 0 && d.Free() >= p.MinFree && float64(d.Free()) >= p.MinFreeRatio*float64(d.Size)
}

var (
	// StartupDefrag is the policy at start, before the API serves, when a stall costs nothing.
	StartupDefrag = DefragPolicy{MinFree: 8 << 20, MinFreeRatio: 0.25}
	// ServingDefrag is the policy while the API serves: a stall only for a file mostly free.
	ServingDefrag = DefragPolicy{MinFree: 64 << 20, MinFreeRatio: 0.5}
)

// DefragCheckInterval is how often the operator's RunDefragmenter looks at the file: the
// compactor's period.
const DefragCheckInterval = compactorIntervalDef

// DBSize returns the member's database size.
func (e *Etcd) DBSize() DBSize {
	be := e.server.Server.Backend()
	return DBSize{Size: be.Size(), InUse: be.SizeInUse()}
}

// DefragmentIfWorth defragments the member's database when p finds it worth it, and returns
// its size before and after (the same when it did nothing).
func (e *Etcd) DefragmentIfWorth(ctx context.Context, p DefragPolicy) (before, after DBSize, err error) {
	before = e.DBSize()
	if !p.Worth(before) {
		return before, before, nil
	}
	if _, err := e.client.Defragment(ctx, e.endpoints[0]); err != nil {
		return before, e.DBSize(), fmt.Errorf("defragmenting the etcd database (%s): %w", before, err)
	}
	e.defrags.Add(1)
	return before, e.DBSize(), nil
}

// Defragment defragments the member's database whatever its unused space, as DefragmentIfWorth
// with a policy that always finds it worth it.
func (e *Etcd) Defragment(ctx context.Context) (before, after DBSize, err error) {
	return e.DefragmentIfWorth(ctx, DefragPolicy{})
}

// RunDefragmenter recovers the member from a full database (see RecoverSpace) and defragments
// it with policy p (the operator's: ServingDefrag), checking every interval, until ctx ends.
func (e *Etcd) RunDefragmenter(ctx context.Context, interval time.Duration, p DefragPolicy, log *slog.Logger) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		e.maintain(ctx, p, log)
	}
}

// DefragmentAtStart recovers the member from a full database (see RecoverSpace), then
// defragments it with StartupDefrag's policy; call it before the API serves.
func (e *Etcd) DefragmentAtStart(ctx context.Context, log *slog.Logger) {
	e.maintain(ctx, StartupDefrag, log)
}

// maintain recovers the member from a full database, then defragments it if p finds it worth it.
func (e *Etcd) maintain(ctx context.Context, p DefragPolicy, log *slog.Logger) {
	if err := e.RecoverSpace(ctx, log); err != nil && ctx.Err() == nil {
		log.Error("etcd's database is full and refuses writes", "err", err)
	}
	e.defragmentLogged(ctx, p, log)
}

// RecoverSpace brings the member back from etcd's NOSPACE alarm, raised when the database file
// passed the space quota: from then on etcd serves only reads and deletes, so no object can be
// written, and compaction alone gives no space back. It compacts all of the history (watchers
// re-list), defragments, and disarms the alarm. It does nothing without the alarm; it fails when
// the data in use alone is over the quota (delete objects, or raise the quota).
func (e *Etcd) RecoverSpace(ctx context.Context, log *slog.Logger) error {
	alarms, err := e.client.AlarmList(ctx)
	if err != nil {
		return fmt.Errorf("listing etcd's alarms: %w", err)
	}
	var noSpace []*etcdserverpb.AlarmMember
	for _, a := range alarms.Alarms {
		if a.Alarm == etcdserverpb.AlarmType_NOSPACE {
			noSpace = append(noSpace, a)
		}
	}
	if len(noSpace) == 0 {
		return nil
	}
	quota := e.quota()
	log.Error("etcd's database reached its space quota and refuses writes: compacting its history and defragmenting it",
		"database", e.DBSize().String(), "quotaMiB", quota>>20)
	cur, err := e.client.Get(ctx, "/", clientv3.WithCountOnly(), clientv3.WithLimit(1))
	if err != nil {
		return fmt.Errorf("reading etcd's revision: %w", err)
	}
	if err := compactTo(ctx, e.client, cur.Header.Revision, clientv3.WithCompactPhysical()); err != nil {
		return fmt.Errorf("compacting etcd's history: %w", err)
	}
	_, after, err := e.Defragment(ctx)
	if err != nil {
		return err
	}
	if after.InUse >= quota {
		return fmt.Errorf("the data in use, %s, is over etcd's space quota of %d MiB: delete objects (or files from Git) or raise the quota", after, quota>>20)
	}
	for _, a := range noSpace {
		if _, err := e.client.AlarmDisarm(ctx, (*clientv3.AlarmMember)(a)); err != nil {
			return fmt.Errorf("disarming etcd's NOSPACE alarm: %w", err)
		}
	}
	log.Info("etcd's database is below its space quota again and takes writes", "database", after.String())
	return nil
}

// quota is the member's space quota.
func (e *Etcd) quota() int64 {
	if q := e.server.Server.Cfg.QuotaBackendBytes; q > 0 {
		return q
	}
	return etcdstorage.DefaultQuotaBytes
}

func (e *Etcd) defragmentLogged(ctx context.Context, p DefragPolicy, log *slog.Logger) {
	start := time.Now()
	before, after, err := e.DefragmentIfWorth(ctx, p)
	switch {
	case err != nil && ctx.Err() == nil:
		log.Warn("etcd defragmentation failed; the database keeps its size", "err", err)
	case err == nil && after != before:
		log.Info("defragmented the etcd database", "before", before.String(), "after", after.String(),
			"duration", time.Since(start).Round(time.Millisecond))
	}
}

// Collectors returns the member's metrics: the database file's size, the part in use, and the
// defragmentations made.
func (e *Etcd) Collectors() []prometheus.Collector {
	return []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "bosun_etcd_db_size_bytes",
			Help: "Size of the embedded etcd's database file (etcd refuses writes past its space quota, 2 GiB by default).",
		}, func() float64 { return float64(e.DBSize().Size) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "bosun_etcd_db_size_in_use_bytes",
			Help: "Part of the embedded etcd's database file in use; the rest is freed history that a defragmentation gives back.",
		}, func() float64 { return float64(e.DBSize().InUse) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "bosun_etcd_defragmentations_total",
			Help: "Defragmentations of the embedded etcd's database file.",
		}, func() float64 { return float64(e.defrags.Load()) }),
	}
}
