package pods

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
)

// Manager runs one worker per pod bound to this node.
type Manager struct {
	cfg   ManagerConfig
	log   *slog.Logger
	clock clock.WithTicker

	mu      sync.Mutex
	workers map[types.UID]*podWorker
	// Before Run adopted what runs, pods wait in pending.
	pending map[types.UID]*corev1.Pod
	started bool
	runCtx  context.Context
	// adopted holds the containers found at start, by pod UID, until a worker takes them.
	adopted map[types.UID][]ContainerStatus
	// leftovers are pods found at start (containers, namespaces, directories) not yet claimed;
	// they are cleaned up once the first SyncAll says they are not desired.
	leftovers map[types.UID]PodRef
	synced    bool

	wg sync.WaitGroup
	// busy counts workers that are syncing or have a wake-up pending; tests wait for zero.
	busy atomic.Int64
}

// NewManager validates the configuration and returns a Manager; Run starts it.
func NewManager(cfg ManagerConfig) (*Manager, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.setDefaults()
	return &Manager{
		cfg:       cfg,
		log:       cfg.Logger.With("component", "pods"),
		clock:     cfg.Clock,
		workers:   map[types.UID]*podWorker{},
		pending:   map[types.UID]*corev1.Pod{},
		adopted:   map[types.UID][]ContainerStatus{},
		leftovers: map[types.UID]PodRef{},
	}, nil
}

// Run adopts the containers and pod networks that already exist, starts the workers of the pods
// received so far, and routes container exits to their workers until ctx ends. Containers keep
// running when it returns.
func (m *Manager) Run(ctx context.Context) error {
	events, err := m.cfg.Runtime.Events(ctx)
	if err != nil {
		return fmt.Errorf("subscribing to container events: %w", err)
	}
	containers, err := m.cfg.Runtime.ListContainers(ctx)
	if err != nil {
		return fmt.Errorf("listing containers to adopt: %w", err)
	}
	netPods, err := m.cfg.Network.ListPods(ctx)
	if err != nil {
		return fmt.Errorf("listing pod networks to adopt: %w", err)
	}
	m.mu.Lock()
	for _, st := range containers {
		uid := types.UID(st.Labels[LabelPodUID])
		if uid == "" {
			continue
		}
		m.adopted[uid] = append(m.adopted[uid], st)
		m.leftovers[uid] = PodRef{UID: string(uid), Namespace: st.Labels[LabelPodNamespace], Name: st.Labels[LabelPodName]}
	}
	for _, p := range netPods {
		m.leftovers[types.UID(p.UID)] = p
	}
	if dirs, err := os.ReadDir(filepath.Join(m.cfg.DataDir, "pods")); err == nil {
		for _, d := range dirs {
			uid := types.UID(d.Name())
			if _, ok := m.leftovers[uid]; !ok && d.IsDir() {
				m.leftovers[uid] = PodRef{UID: string(uid)}
			}
		}
	}
	m.log.Info("adopting", "containers", len(containers), "podNetworks", len(netPods))
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		m.runLogRotation(ctx)
	}()
	m.started = true
	m.runCtx = ctx
	for _, pod := range m.pending {
		m.startWorkerLocked(pod)
	}
	m.pending = nil
	if m.synced {
		m.cleanupLeftoversLocked()
	}
	m.mu.Unlock()

	for {
		select {
		case <-ctx.Done():
			m.wg.Wait()
			return nil
		case ev, ok := <-events:
			if !ok {
				m.wg.Wait()
				return nil
			}
			m.busy.Add(1)
			m.routeEvent(ev)
			m.busy.Add(-1)
		}
	}
}

func (m *Manager) routeEvent(ev ContainerEvent) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for uid, w := range m.workers {
		if strings.HasPrefix(ev.ID, string(uid)+"-") {
			w.wakeUp()
			return
		}
	}
}

// startWorkerLocked starts the worker of a pod, handing it the containers found at start.
func (m *Manager) startWorkerLocked(pod *corev1.Pod) *podWorker {
	w := newPodWorker(m, pod)
	if cs, ok := m.adopted[pod.UID]; ok {
		w.adopt(cs)
		delete(m.adopted, pod.UID)
	}
	delete(m.leftovers, pod.UID)
	m.workers[pod.UID] = w
	m.busy.Add(1)
	m.wg.Add(1)
	go w.run(m.runCtx)
	return w
}

// UpdatePod adds or updates a pod bound to this node.
func (m *Manager) UpdatePod(pod *corev1.Pod) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.updateLocked(pod)
}

func (m *Manager) updateLocked(pod *corev1.Pod) {
	if pod.Spec.NodeName != "" && pod.Spec.NodeName != m.cfg.NodeName {
		return
	}
	if !m.started {
		m.pending[pod.UID] = pod
		return
	}
	if w, ok := m.workers[pod.UID]; ok {
		w.update(pod)
		return
	}
	m.startWorkerLocked(pod)
}

// DeletePod stops the pod gracefully, tears it down and forgets it.
func (m *Manager) DeletePod(pod *corev1.Pod) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.deleteLocked(pod)
}

func (m *Manager) deleteLocked(pod *corev1.Pod) {
	if !m.started {
		delete(m.pending, pod.UID)
		return
	}
	w, ok := m.workers[pod.UID]
	if !ok {
		w = m.startWorkerLocked(pod)
	}
	w.markDeleted()
}

// SyncAll is the full set of pods bound to this node: pods not in it are stopped and cleaned
// up, including those deleted while the agent was down.
func (m *Manager) SyncAll(pods []*corev1.Pod) {
	m.mu.Lock()
	defer m.mu.Unlock()
	desired := map[types.UID]bool{}
	for _, pod := range pods {
		if pod.Spec.NodeName != "" && pod.Spec.NodeName != m.cfg.NodeName {
			continue
		}
		desired[pod.UID] = true
		m.updateLocked(pod)
	}
	m.synced = true
	if !m.started {
		for uid := range m.pending {
			if !desired[uid] {
				delete(m.pending, uid)
			}
		}
		return
	}
	for uid, w := range m.workers {
		if !desired[uid] {
			w.markDeleted()
		}
	}
	m.cleanupLeftoversLocked()
}

// cleanupLeftoversLocked starts a terminating worker for every pod found at start that nobody
// claimed.
func (m *Manager) cleanupLeftoversLocked() {
	for uid, ref := range m.leftovers {
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{UID: uid, Name: ref.Name, Namespace: ref.Namespace}}
		pod.Spec.TerminationGracePeriodSeconds = leftoverGracePeriod(m.adopted[uid])
		m.log.Info("cleaning up a pod that is no longer bound to this node", "pod", ref.Namespace+"/"+ref.Name, "uid", string(uid))
		w := m.startWorkerLocked(pod)
		w.markDeleted()
	}
}

// leftoverGracePeriod is the termination grace period a pod's containers were created with (the
// longest, if they disagree), or nil (the default) when none says.
func leftoverGracePeriod(containers []ContainerStatus) *int64 {
	var grace *int64
	for _, st := range containers {
		g, err := strconv.ParseInt(st.Labels[LabelGracePeriod], 10, 64)
		if err == nil && g >= 0 && (grace == nil || g > *grace) {
			grace = &g
		}
	}
	return grace
}

// forget drops a worker that finished its pod's cleanup.
func (m *Manager) forget(w *podWorker) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.workers[w.uid] == w {
		delete(m.workers, w.uid)
	}
}

// RunningPods is the number of pods this manager runs: workers whose pod is neither being
// deleted nor Succeeded/Failed.
func (m *Manager) RunningPods() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for _, w := range m.workers {
		w.mu.Lock()
		active := !w.deleted && w.phase != corev1.PodSucceeded && w.phase != corev1.PodFailed
		w.mu.Unlock()
		if active {
			n++
		}
	}
	return n
}
