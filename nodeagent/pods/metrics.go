package pods

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Runtime operations timed by Metrics.Operation, as the operation label's values.
const (
	opNetworkSetup    = "network_setup"
	opImage           = "image"
	opCreateContainer = "create_container"
	opStartContainer  = "start_container"
	opStatusUpdate    = "status_update"
)

// Metrics are the pod workers' Prometheus metrics, shaped after the kubelet's
// kubelet_pod_start_duration_seconds and kubelet_runtime_operations_duration_seconds.
type Metrics struct {
	podStart   prometheus.Histogram
	operations *prometheus.HistogramVec
}

// NewMetrics creates the metrics and registers them with reg (nil: not registered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	buckets := []float64{.005, .01, .025, .05, .075, .1, .15, .2, .3, .5, .75, 1, 2, 5, 10, 30}
	m := &Metrics{
		podStart: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "bosun_agent_pod_start_duration_seconds",
			Help:    "Time from the agent first seeing a pod to writing its first status with phase Running (image pulls included).",
			Buckets: buckets,
		}),
		operations: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "bosun_agent_runtime_operations_duration_seconds",
			Help:    "Duration of the pod workers' operations: network_setup (netns + CNI ADD), image (check or pull), create_container, start_container, status_update (API write).",
			Buckets: buckets,
		}, []string{"operation"}),
	}
	if reg != nil {
		reg.MustRegister(m.podStart, m.operations)
	}
	return m
}

// observe records one operation that took d.
func (m *Metrics) observe(operation string, d time.Duration) {
	m.operations.WithLabelValues(operation).Observe(d.Seconds())
}
