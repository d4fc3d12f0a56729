package apiserver_test

import (
	"log/slog"
	"strings"
	"testing"

	"github.com/bosun-gitops/bosun/internal/testutil"
	"github.com/bosun-gitops/bosun/operator/apiserver"
	"github.com/bosun-gitops/bosun/operator/store/storetest"
	"github.com/prometheus/client_golang/prometheus"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestAccessLogsAndMetrics(t *testing.T) {
	logs := &testutil.SyncBuffer{}
	reg := prometheus.NewRegistry()
	ts := startServerWith(t, storetest.NewStore(t), t.TempDir(), func(c *apiserver.Config) {
		c.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
		c.Metrics = reg
	})
	ctx := testCtx(t)
	ts.createNamespace(t, "a")
	if _, err := ts.client.CoreV1().Pods("a").List(ctx, metav1.ListOptions{}); err != nil {
		t.Fatal(err)
	}
	ts.rawGet(t, "/api/v1/pods", "wrong-token-value", nil)
	w, err := ts.client.CoreV1().Pods("a").Watch(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "open watch gauge", func() bool {
		return metricValue(t, reg, "bosun_apiserver_open_watches", map[string]string{"resource": "pods"}) == 1
	})
	w.Stop()

	out := logs.String()
	for _, want := range []string{
		`method=GET path=/api/v1/namespaces/a/pods verb=list user=admin code=200`,
		`method=POST path=/api/v1/namespaces verb=create user=admin code=201`,
		`path=/api/v1/pods verb=GET user=system:anonymous code=401`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("access log lacks %q:\n%s", want, out)
		}
	}
	for _, secret := range []string{ts.config.BearerToken, "wrong-token-value"} {
		if strings.Contains(out, secret) {
			t.Errorf("a token appears in the logs")
		}
	}
	if got := metricValue(t, reg, "bosun_apiserver_requests_total", map[string]string{"verb": "list", "resource": "pods", "code": "200"}); got != 1 {
		t.Errorf("requests_total{verb=list,resource=pods,code=200} = %v, want 1", got)
	}
	if got := metricValue(t, reg, "bosun_apiserver_requests_total", map[string]string{"verb": "GET", "resource": "", "code": "401"}); got != 1 {
		t.Errorf("requests_total{code=401} = %v, want 1", got)
	}
	if got := metricValue(t, reg, "bosun_apiserver_request_duration_seconds", map[string]string{"verb": "list", "resource": "pods"}); got != 1 {
		t.Errorf("request_duration_seconds count = %v, want 1", got)
	}
}

// metricValue sums the series of name whose labels include want; histograms count observations.
func metricValue(t *testing.T, reg *prometheus.Registry, name string, want map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var total float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			for k, v := range want {
				if labels[k] != v {
					continue series
				}
			}
			switch {
			case m.Counter != nil:
				total += m.GetCounter().GetValue()
			case m.Gauge != nil:
				total += m.GetGauge().GetValue()
			case m.Histogram != nil:
				total += float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return total
}
