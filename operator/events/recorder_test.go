package events

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/bosun-gitops/bosun/internal/resource"
	"github.com/bosun-gitops/bosun/operator/store"
	"github.com/bosun-gitops/bosun/operator/store/storetest"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clocktesting "k8s.io/utils/clock/testing"
)

func TestRecorderAggregatesAndExpires(t *testing.T) {
	st := storetest.NewStore(t)
	clk := clocktesting.NewFakeClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	r := NewRecorder(st, "test-controller", slog.Default(), clk)
	ctx := context.Background()
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web-1", UID: "u1"}}
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1", UID: "u2"}}

	r.Eventf(pod, corev1.EventTypeWarning, "BackOff", "restarting %s", "c")
	r.Eventf(pod, corev1.EventTypeWarning, "BackOff", "restarting %s", "c")
	r.Eventf(node, corev1.EventTypeNormal, "NodeNotReady", "lease expired")
	for range 3 {
		r.write(ctx, <-r.queue)
	}
	list, err := st.List(ctx, resource.Events, "", store.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Items) != 2 {
		t.Fatalf("%d events stored, want 2 (the repeat aggregated)", len(list.Items))
	}
	for _, o := range list.Items {
		ev := o.(*corev1.Event)
		switch ev.Reason {
		case "BackOff":
			if ev.Count != 2 || ev.Namespace != "shop" || ev.InvolvedObject.Kind != "Pod" || ev.Source.Component != "test-controller" {
				t.Errorf("aggregated event = count %d ns %s kind %s source %s", ev.Count, ev.Namespace, ev.InvolvedObject.Kind, ev.Source.Component)
			}
		case "NodeNotReady":
			if ev.Namespace != "default" || ev.InvolvedObject.Kind != "Node" {
				t.Errorf("cluster-scoped object's event in ns %q kind %q, want default/Node", ev.Namespace, ev.InvolvedObject.Kind)
			}
		}
	}

	clk.Step(2 * time.Hour)
	r.expire(ctx)
	list, _ = st.List(ctx, resource.Events, "", store.ListOptions{})
	if len(list.Items) != 0 {
		t.Fatalf("%d events left after the TTL, want 0", len(list.Items))
	}
}
