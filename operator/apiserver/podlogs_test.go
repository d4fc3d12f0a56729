package apiserver_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestPodLogsOptions: limitBytes cuts the agent's stream; the options that need a time per line
// (timestamps=true, sinceSeconds, sinceTime), which Bosun's log files do not record, are refused
// with a message saying so, not ignored.
func TestPodLogsOptions(t *testing.T) {
	ts := startServer(t)
	ctx := testCtx(t)
	agent := startLogNode(t, ts)
	certPEM, keyPEM, err := ts.srv.NodeServingCA().IssueNodeServing("n1", []string{"n1", "127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	agent.present(t, certPEM, keyPEM)

	five, zero, ten := int64(5), int64(0), int64(10)
	since := metav1.NewTime(time.Now().Add(-time.Minute))
	for _, tc := range []struct {
		name    string
		opts    corev1.PodLogOptions
		want    string // the log read, when wantErr is ""
		wantErr string
	}{
		{"no options", corev1.PodLogOptions{}, "a log line\n", ""},
		{"limitBytes", corev1.PodLogOptions{LimitBytes: &five}, "a log", ""},
		{"limitBytes=10 drops the newline", corev1.PodLogOptions{LimitBytes: &ten}, "a log line", ""},
		{"limitBytes=0", corev1.PodLogOptions{LimitBytes: &zero}, "", `limitBytes="0": must be a number greater than 0`},
		{"timestamps", corev1.PodLogOptions{Timestamps: true}, "", "timestamps=true: Bosun's container logs are the containers' output as written, with no time per line"},
		{"sinceSeconds", corev1.PodLogOptions{SinceSeconds: &ten}, "", "sinceSeconds: Bosun's container logs"},
		{"sinceTime", corev1.PodLogOptions{SinceTime: &since}, "", "cut by time; use tailLines"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := ts.client.CoreV1().Pods("a").GetLogs("p", &tc.opts).DoRaw(ctx)
			if tc.wantErr == "" {
				if err != nil || string(b) != tc.want {
					t.Fatalf("logs: %q, %v; want %q", b, err, tc.want)
				}
				return
			}
			var st metav1.Status
			if err == nil || json.Unmarshal(b, &st) != nil || st.Code != 400 || !strings.Contains(st.Message, tc.wantErr) {
				t.Errorf("logs: %q, %v; want a 400 with %q", b, err, tc.wantErr)
			}
		})
	}
}
