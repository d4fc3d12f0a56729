package podstest

import (
	"context"
	"fmt"
	"sync"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/bosun-gitops/bosun/nodeagent/pods"
)

// Calls is an ordered log of the fakes' calls, shared by a Runtime and a Network to check order.
type Calls struct {
	mu    sync.Mutex
	calls []string
}

func (c *Calls) add(s string) { c.Add(s) }

// Add records a call, for fakes that tests define around these ones.
func (c *Calls) Add(s string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls = append(c.calls, s)
}

// List returns the calls so far.
func (c *Calls) List() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.calls...)
}

// Reset forgets the calls so far.
func (c *Calls) Reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls = nil
}

// StatusWriter records the statuses written.
type StatusWriter struct {
	mu      sync.Mutex
	writes  []*corev1.Pod
	deletes []string
	err     error
	// OnDelete, when set, is called for every DeletePod (outside the lock).
	OnDelete func(pod *corev1.Pod)
}

var _ pods.StatusWriter = (*StatusWriter)(nil)

func (s *StatusWriter) UpdatePodStatus(ctx context.Context, pod *corev1.Pod) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return s.err
	}
	s.writes = append(s.writes, pod.DeepCopy())
	return nil
}

// DeletePod records the deletion; OnDelete, when set, plays the API's delete event.
func (s *StatusWriter) DeletePod(ctx context.Context, pod *corev1.Pod) error {
	s.mu.Lock()
	if s.err != nil {
		defer s.mu.Unlock()
		return s.err
	}
	s.deletes = append(s.deletes, string(pod.UID))
	onDelete := s.OnDelete
	s.mu.Unlock()
	if onDelete != nil {
		onDelete(pod)
	}
	return nil
}

// Deletes returns the UIDs of the pods deleted so far.
func (s *StatusWriter) Deletes() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.deletes...)
}

// SetError makes writes fail with err (nil clears it).
func (s *StatusWriter) SetError(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.err = err
}

// Writes returns every pod written so far.
func (s *StatusWriter) Writes() []*corev1.Pod {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*corev1.Pod(nil), s.writes...)
}

// Last returns the last status written for the pod with uid, or nil.
func (s *StatusWriter) Last(uid string) *corev1.PodStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := len(s.writes) - 1; i >= 0; i-- {
		if string(s.writes[i].UID) == uid {
			return s.writes[i].Status.DeepCopy()
		}
	}
	return nil
}

// Objects is an in-memory pods.ObjectGetter.
type Objects struct {
	mu         sync.Mutex
	secrets    map[string]*corev1.Secret
	configMaps map[string]*corev1.ConfigMap
}

var _ pods.ObjectGetter = (*Objects)(nil)

// AddSecret stores s.
func (o *Objects) AddSecret(s *corev1.Secret) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.secrets == nil {
		o.secrets = map[string]*corev1.Secret{}
	}
	o.secrets[s.Namespace+"/"+s.Name] = s.DeepCopy()
}

// AddConfigMap stores cm.
func (o *Objects) AddConfigMap(cm *corev1.ConfigMap) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.configMaps == nil {
		o.configMaps = map[string]*corev1.ConfigMap{}
	}
	o.configMaps[cm.Namespace+"/"+cm.Name] = cm.DeepCopy()
}

func (o *Objects) GetSecret(ctx context.Context, ns, name string) (*corev1.Secret, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if s, ok := o.secrets[ns+"/"+name]; ok {
		return s.DeepCopy(), nil
	}
	return nil, apierrors.NewNotFound(schema.GroupResource{Resource: "secrets"}, name)
}

func (o *Objects) GetConfigMap(ctx context.Context, ns, name string) (*corev1.ConfigMap, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if cm, ok := o.configMaps[ns+"/"+name]; ok {
		return cm.DeepCopy(), nil
	}
	return nil, apierrors.NewNotFound(schema.GroupResource{Resource: "configmaps"}, name)
}

// Event is one recorded event.
type Event struct {
	Pod, Type, Reason, Message string
}

// Recorder records events.
type Recorder struct {
	mu     sync.Mutex
	events []Event
}

var _ pods.EventRecorder = (*Recorder)(nil)

func (r *Recorder) Eventf(pod *corev1.Pod, eventType, reason, messageFmt string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, Event{Pod: pod.Namespace + "/" + pod.Name, Type: eventType, Reason: reason, Message: fmt.Sprintf(messageFmt, args...)})
}

// Events returns the events so far.
func (r *Recorder) Events() []Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Event(nil), r.events...)
}

// Mounter records tmpfs mounts instead of mounting.
type Mounter struct {
	mu      sync.Mutex
	mounted map[string]int64
}

var _ pods.Mounter = (*Mounter)(nil)

func (m *Mounter) MountTmpfs(dir string, size int64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.mounted == nil {
		m.mounted = map[string]int64{}
	}
	m.mounted[dir] = size
	return nil
}

func (m *Mounter) Unmount(dir string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.mounted, dir)
	return nil
}

// Mounted returns the tmpfs mounts in place, dir → size.
func (m *Mounter) Mounted() map[string]int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[string]int64{}
	for k, v := range m.mounted {
		out[k] = v
	}
	return out
}
