package nodeagent

import (
	"context"
	"fmt"
	"log/slog"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/record"
)

// apiStatusWriter writes pod status through the status subresource (pods.StatusWriter).
type apiStatusWriter struct{ client kubernetes.Interface }

func (s apiStatusWriter) UpdatePodStatus(ctx context.Context, pod *corev1.Pod) error {
	if _, err := s.client.CoreV1().Pods(pod.Namespace).UpdateStatus(ctx, pod, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("updating status of pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	return nil
}

func (s apiStatusWriter) DeletePod(ctx context.Context, pod *corev1.Pod) error {
	zero, uid := int64(0), pod.UID
	err := s.client.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name,
		metav1.DeleteOptions{GracePeriodSeconds: &zero, Preconditions: &metav1.Preconditions{UID: &uid}})
	if err != nil {
		return fmt.Errorf("deleting stopped pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	return nil
}

// apiObjects fetches Secrets and ConfigMaps on demand (pods.ObjectGetter); the operator lets a
// node read only the Secrets its pods use.
type apiObjects struct{ client kubernetes.Interface }

func (o apiObjects) GetSecret(ctx context.Context, namespace, name string) (*corev1.Secret, error) {
	return o.client.CoreV1().Secrets(namespace).Get(ctx, name, metav1.GetOptions{})
}

func (o apiObjects) GetConfigMap(ctx context.Context, namespace, name string) (*corev1.ConfigMap, error) {
	return o.client.CoreV1().ConfigMaps(namespace).Get(ctx, name, metav1.GetOptions{})
}

// eventRecorder posts Events through the API (pods.EventRecorder), aggregated by client-go.
type eventRecorder struct {
	rec         record.EventRecorder
	broadcaster record.EventBroadcaster
}

func newEventRecorder(client kubernetes.Interface, nodeName string, log *slog.Logger) *eventRecorder {
	b := record.NewBroadcaster()
	b.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: client.CoreV1().Events("")})
	b.StartEventWatcher(func(e *corev1.Event) {
		log.Debug("event", "object", e.InvolvedObject.Namespace+"/"+e.InvolvedObject.Name, "reason", e.Reason, "message", e.Message)
	})
	return &eventRecorder{
		rec:         b.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "bosun-agent", Host: nodeName}),
		broadcaster: b,
	}
}

func (e *eventRecorder) Eventf(pod *corev1.Pod, eventType, reason, messageFmt string, args ...any) {
	e.rec.Eventf(pod, eventType, reason, messageFmt, args...)
}

func (e *eventRecorder) stop() { e.broadcaster.Shutdown() }
