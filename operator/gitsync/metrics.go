package gitsync

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the bosun_gitsync_* series of one Syncer, labelled with the GitSync name.
type metrics struct {
	syncs       *prometheus.CounterVec
	duration    prometheus.Histogram
	applied     *prometheus.CounterVec
	lastSuccess prometheus.Gauge
}

// Sync results as counted by bosun_gitsync_syncs_total.
const (
	resultSynced    = "synced"
	resultUnchanged = "unchanged"
	resultInvalid   = "invalid"
	resultFailed    = "failed"
)

func newMetrics(name string) *metrics {
	labels := prometheus.Labels{"gitsync": name}
	return &metrics{
		syncs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bosun_gitsync_syncs_total", Help: "Git syncs by result (synced, unchanged, invalid, failed).",
			ConstLabels: labels,
		}, []string{"result"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "bosun_gitsync_sync_duration_seconds", Help: "Duration of a Git sync, fetch to last write.",
			ConstLabels: labels, Buckets: prometheus.ExponentialBuckets(0.005, 2, 14),
		}),
		applied: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bosun_gitsync_objects_applied_total", Help: "Objects written by Git sync, by action (created, updated, deleted).",
			ConstLabels: labels,
		}, []string{"action"}),
		lastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "bosun_gitsync_last_success_timestamp_seconds", Help: "Unix time of the last successful sync.",
			ConstLabels: labels,
		}),
	}
}

// Collectors returns the Syncer's Prometheus collectors (bosun_gitsync_*), for a registry of the
// caller's choice.
func (s *Syncer) Collectors() []prometheus.Collector {
	return []prometheus.Collector{s.metrics.syncs, s.metrics.duration, s.metrics.applied, s.metrics.lastSuccess}
}

// Register registers the Syncer's metrics on reg.
func (s *Syncer) Register(reg prometheus.Registerer) error {
	for _, c := range s.Collectors() {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}
