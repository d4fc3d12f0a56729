package pods

// Hooks for the external tests (package pods_test), which use podstest.

// WorkersBusy is the number of workers syncing or with a wake-up pending.
func WorkersBusy(m *Manager) int64 { return m.busy.Load() }

// Started reports whether Run has adopted and started the workers.
func Started(m *Manager) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.started
}
