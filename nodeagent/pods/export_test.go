package pods

import corev1 "k8s.io/api/core/v1"

// Hooks for the external tests (package pods_test), which use podstest.

// WorkersBusy is the number of workers syncing or with a wake-up pending.
func WorkersBusy(m *Manager) int64 { return m.busy.Load() }

// FakeServices is a ServiceLister over a fixed list for the external tests.
type FakeServices = fakeServices

// NewFakeServices returns FakeServices over list, its Services read (synced) or not yet.
func NewFakeServices(synced bool, list ...*corev1.Service) *FakeServices {
	return newFakeServices(synced, list...)
}

// SetSynced marks the Services read.
func (f *fakeServices) SetSynced() { f.synced.Store(true) }

// Started reports whether Run has adopted and started the workers.
func Started(m *Manager) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.started
}
