package apiserver

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	watches  *prometheus.GaugeVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bosun_apiserver_requests_total",
			Help: "API requests by verb, resource and response code.",
		}, []string{"verb", "resource", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "bosun_apiserver_request_duration_seconds",
			Help:    "API request latency by verb and resource (watches excluded).",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"verb", "resource"}),
		watches: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "bosun_apiserver_open_watches",
			Help: "Watches currently open, by resource.",
		}, []string{"resource"}),
	}
	for _, c := range []prometheus.Collector{m.requests, m.latency, m.watches} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("registering apiserver metrics: %w", err)
		}
	}
	return m, nil
}
