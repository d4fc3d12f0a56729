package pods

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
)

const (
	// resyncPeriod bounds how long a worker sleeps without news (missed exit events, changed
	// ConfigMaps, retries).
	resyncPeriod = 10 * time.Second
	// retryPeriod is the delay before retrying a failed network or volume setup.
	retryPeriod = 5 * time.Second
	// defaultGracePeriod is terminationGracePeriodSeconds' default.
	defaultGracePeriod = 30 * time.Second
	// maxActionPasses bounds the immediate re-syncs after a sync that acted.
	maxActionPasses = 4
)

// ctrRun is the worker's record of one container of the pod (its current or last run).
type ctrRun struct {
	name string
	init bool
	// id is the current (or last) run's container; "" before the first creation.
	id           string
	restartCount int32
	hash         string
	status       ContainerStatus
	imageID      string
	// startFailed marks a run whose StartContainer failed; status then holds the synthesized exit.
	startFailed bool
	// waiting explains why the container is not running (pull errors, back-off, config errors).
	waiting *corev1.ContainerStateWaiting
	// last is the previous run's termination (lastState).
	last    *corev1.ContainerStateTerminated
	pullErr string
	// forceRestart restarts an exited container whatever the restart policy (spec change).
	forceRestart bool
	started      bool
	ready        bool
	probes       map[probeKind]*probeState
	// backoffEventFor is the exit whose BackOff event was recorded.
	backoffEventFor time.Time
}

func (r *ctrRun) exited() bool { return r.id != "" && r.status.State == StateExited }

func (r *ctrRun) succeeded() bool { return r.exited() && r.status.ExitCode == 0 }

// podWorker owns one pod: its goroutine runs sync whenever woken (pod update, container exit) or
// when a timer it asked for fires (back-off end, probe due, status rate limit, resync).
type podWorker struct {
	m   *Manager
	uid types.UID
	log *slog.Logger

	mu      sync.Mutex
	pod     *corev1.Pod
	deleted bool // DeletePod, SyncAll without it, or an orphan: terminate, clean up, exit
	phase   corev1.PodPhase
	wake    chan struct{}

	// Owned by the worker goroutine.
	ctrs     map[string]*ctrRun
	staleIDs []string // adopted containers of older runs, removed on the first sync
	netReady bool
	// netReleased: the finished pod's network was given back (releaseFinished).
	netReleased bool
	// deletionConfirmed: the stopped pod was deleted for good (confirmDeletion).
	deletionConfirmed bool
	podIP             string
	netnsPath         string
	// pendingNet is a SetupPod running during one syncContainers call (see beginNetwork).
	pendingNet   *netSetup
	volumes      *podVolumes
	initDone     bool
	terminal     corev1.PodPhase
	startTime    *metav1.Time
	lastWritten  *corev1.PodStatus
	lastWriteAt  time.Time
	crashBackoff *backoff
	pullBackoff  *backoff
	lastMountErr string
	nextWake     time.Time
	done         bool
	// writtenOver is the resourceVersion of the pod copy the last status write replaced: while
	// the informer still hands that copy, lastWritten stands for the API's status.
	writtenOver string
	// seen is when the worker was created; startTimed is set once the pod's first Running status
	// was written (or the pod ran before this worker), for the pod start metric.
	seen       time.Time
	startTimed bool
}

func newPodWorker(m *Manager, pod *corev1.Pod) *podWorker {
	w := &podWorker{
		m:            m,
		uid:          pod.UID,
		log:          m.log.With("pod", pod.Namespace+"/"+pod.Name, "uid", string(pod.UID)),
		pod:          pod,
		wake:         make(chan struct{}, 1),
		ctrs:         map[string]*ctrRun{},
		volumes:      newPodVolumes(m.cfg.DataDir, m.cfg.Mounter, m.cfg.Objects, string(pod.UID)),
		crashBackoff: newBackoff(),
		pullBackoff:  newBackoff(),
		lastWritten:  pod.Status.DeepCopy(),
		startTime:    pod.Status.StartTime,
		seen:         m.clock.Now(),
		startTimed:   pod.Status.Phase != "" && pod.Status.Phase != corev1.PodPending,
	}
	if p := pod.Status.Phase; p == corev1.PodSucceeded || p == corev1.PodFailed {
		// A finished pod stays finished, also across an agent restart: nothing runs again.
		w.terminal, w.podIP = p, pod.Status.PodIP
	}
	return w
}

// adopt takes over the containers that already run for this pod (after an agent restart): the
// newest run of each container becomes the current one, so nothing is restarted or duplicated.
func (w *podWorker) adopt(containers []ContainerStatus) {
	newest := map[string]ContainerStatus{}
	previous := map[string]ContainerStatus{}
	appSeen := false
	for _, st := range containers {
		name := st.Labels[LabelContainerName]
		rc := restartLabel(st)
		if cur, ok := newest[name]; ok {
			if restartLabel(cur) > rc {
				if p, ok := previous[name]; !ok || restartLabel(p) < rc {
					previous[name] = st
				}
				continue
			}
			if p, ok := previous[name]; !ok || restartLabel(p) < restartLabel(cur) {
				previous[name] = cur
			}
		}
		newest[name] = st
	}
	for name, st := range newest {
		r := w.ctr(name, st.Labels[LabelInit] == "true")
		r.id = st.ID
		r.restartCount = restartLabel(st)
		r.hash = st.Labels[LabelSpecHash]
		r.status = st
		r.imageID = imageID(st.Image, st.ImageID)
		if !r.init {
			appSeen = true
		}
		if p, ok := previous[name]; ok && p.State == StateExited {
			r.last = terminatedState(p)
		}
	}
	for _, st := range containers {
		if newest[st.Labels[LabelContainerName]].ID != st.ID {
			w.staleIDs = append(w.staleIDs, st.ID)
		}
	}
	// App containers only ever start after the init containers completed.
	w.initDone = appSeen
}

func restartLabel(st ContainerStatus) int32 {
	n, _ := strconv.Atoi(st.Labels[LabelRestartCount])
	return int32(n)
}

func (w *podWorker) ctr(name string, init bool) *ctrRun {
	r, ok := w.ctrs[name]
	if !ok {
		r = &ctrRun{name: name, init: init, probes: map[probeKind]*probeState{}}
		w.ctrs[name] = r
	}
	return r
}

// update hands the worker a newer version of its pod.
func (w *podWorker) update(pod *corev1.Pod) {
	w.mu.Lock()
	if !w.deleted {
		w.pod = pod
	}
	w.mu.Unlock()
	w.wakeUp()
}

// markDeleted makes the worker stop the pod, clean up and exit.
func (w *podWorker) markDeleted() {
	w.mu.Lock()
	w.deleted = true
	w.mu.Unlock()
	w.wakeUp()
}

func (w *podWorker) wakeUp() {
	select {
	case w.wake <- struct{}{}:
		w.m.busy.Add(1)
	default:
	}
}

func (w *podWorker) snapshot() (*corev1.Pod, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.pod, w.deleted
}

func (w *podWorker) currentPhase() corev1.PodPhase {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.phase
}

// wakeAt asks for a sync no later than t.
func (w *podWorker) wakeAt(t time.Time) {
	if w.nextWake.IsZero() || t.Before(w.nextWake) {
		w.nextWake = t
	}
}

func (w *podWorker) event(pod *corev1.Pod, typ, reason, format string, args ...any) {
	w.m.cfg.Recorder.Eventf(pod, typ, reason, format, args...)
}

// run is the worker's goroutine; the Manager counted it busy before starting it.
func (w *podWorker) run(ctx context.Context) {
	defer w.m.wg.Done()
	for {
		next := w.syncPasses(ctx)
		if w.done {
			w.m.forget(w)
			select {
			case <-w.wake:
				w.m.busy.Add(-1)
			default:
			}
			w.m.busy.Add(-1)
			return
		}
		// With AfterFunc the timer wakes the worker like any other news, which lets tests on a
		// fake clock see when every worker has caught up.
		var timer clock.Timer
		var timerC <-chan time.Time
		if dc, ok := w.m.clock.(clock.WithDelayedExecution); ok {
			timer = dc.AfterFunc(next, w.wakeUp)
		} else {
			timer = w.m.clock.NewTimer(next)
			timerC = timer.C()
		}
		w.m.busy.Add(-1)
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-w.wake: // wakeUp counted us busy
			timer.Stop()
		case <-timerC:
			w.m.busy.Add(1)
		}
	}
}

// syncPasses syncs until a pass takes no action (a started container may exit at once) and
// returns how long to sleep.
func (w *podWorker) syncPasses(ctx context.Context) time.Duration {
	for i := 0; i < maxActionPasses; i++ {
		w.nextWake = time.Time{}
		if !w.sync(ctx) || w.done {
			break
		}
	}
	now := w.m.clock.Now()
	w.wakeAt(now.Add(resyncPeriod))
	d := w.nextWake.Sub(now)
	if d < 0 {
		d = 0
	}
	return d
}

// sync compares the pod with what runs and acts once; it reports whether it changed anything in
// the runtime.
func (w *podWorker) sync(ctx context.Context) bool {
	pod, deleted := w.snapshot()
	if deleted {
		if err := w.terminate(ctx, pod); err != nil {
			w.log.Error("cleaning up pod", "err", err)
			w.wakeAt(w.m.clock.Now().Add(retryPeriod))
			return false
		}
		w.done = true
		return false
	}
	w.removeStale(ctx)
	w.refresh(ctx)
	acted := false
	switch {
	case pod.DeletionTimestamp != nil:
		w.killAll(ctx, pod, gracePeriod(pod), "Stopping container %s")
		w.confirmDeletion(ctx, pod)
	case w.terminal == "":
		acted = w.syncContainers(ctx, pod)
	}
	w.updateStatus(ctx, pod)
	if w.terminal != "" && pod.DeletionTimestamp == nil {
		w.releaseFinished(ctx, pod)
	}
	return acted
}

// confirmDeletion deletes a pod that is being deleted gracefully for good once none of its
// containers runs, as the kubelet does: the API then drops it, and its removal here cleans up
// the rest (containers, network, volumes).
func (w *podWorker) confirmDeletion(ctx context.Context, pod *corev1.Pod) {
	if w.deletionConfirmed {
		return
	}
	for _, r := range w.ctrs {
		if r.id != "" && r.status.State == StateRunning {
			return // killAll could not stop it; the next sync tries again
		}
	}
	err := w.m.cfg.Status.DeletePod(ctx, pod)
	if err != nil && !apierrors.IsNotFound(err) {
		// A conflict too is tried again: if another pod now has the name, this one is gone
		// and its removal from the informer ends this worker first.
		w.log.Warn("deleting the stopped pod", "err", err)
		w.wakeAt(w.m.clock.Now().Add(retryPeriod))
		return
	}
	w.deletionConfirmed = true
	w.log.Info("pod stopped; deleted")
}

// releaseFinished gives back what a pod that has finished (Succeeded or Failed) holds on the
// node, as the kubelet does: its network namespace and IP go back to the node's pool at once,
// rather than when the pod is deleted, which a Job-like pod from Git may never be. Its exited
// containers and logs stay until the pod is deleted, and its status keeps the IP it had.
func (w *podWorker) releaseFinished(ctx context.Context, pod *corev1.Pod) {
	if w.netReleased || pod.Spec.HostNetwork {
		return
	}
	w.killAll(ctx, pod, gracePeriod(pod), "Stopping container %s: the pod has finished")
	if err := w.m.cfg.Network.TeardownPod(ctx, podRef(pod)); err != nil {
		w.log.Error("releasing the network of a finished pod", "err", err)
		w.wakeAt(w.m.clock.Now().Add(retryPeriod))
		return
	}
	w.netReady, w.netReleased = false, true
	w.log.Info("pod finished; network released", "phase", w.terminal, "ip", w.podIP)
}

// refresh reads the runtime's state of every current container.
func (w *podWorker) refresh(ctx context.Context) {
	for _, r := range w.ctrs {
		if r.id == "" || r.startFailed {
			continue
		}
		st, err := w.m.cfg.Runtime.ContainerStatus(ctx, r.id)
		if err != nil {
			w.log.Warn("reading container status", "container", r.name, "err", err)
			continue
		}
		r.status = st
		if st.ImageID != "" {
			r.imageID = imageID(st.Image, st.ImageID)
		}
	}
}

func (w *podWorker) removeStale(ctx context.Context) {
	var keep []string
	for _, id := range w.staleIDs {
		if err := w.m.cfg.Runtime.RemoveContainer(ctx, id); err != nil {
			w.log.Warn("removing old container", "id", id, "err", err)
			keep = append(keep, id)
		}
	}
	w.staleIDs = keep
}

// syncContainers brings up the network and volumes, then the init containers one at a time and
// then the app containers, and runs the due probes.
//
// When the network pins the pod's namespace ahead (see beginNetwork), CNI ADD runs while the
// images are checked and the first containers are created: start waits for it, and it is always
// joined before syncContainers returns.
func (w *podWorker) syncContainers(ctx context.Context, pod *corev1.Pod) bool {
	if !w.netReady && w.beginNetwork(ctx, pod) {
		defer w.awaitNetwork(pod)
	} else {
		if !w.ensureNetwork(ctx, pod) {
			return false
		}
		if !w.writeEtcFiles(pod) {
			return false
		}
	}
	if err := w.volumes.prepare(ctx, pod, w.m.cfg.NodeAllocatable); err != nil {
		if err.Error() != w.lastMountErr {
			w.event(pod, corev1.EventTypeWarning, "FailedMount", "%v", err)
			w.lastMountErr = err.Error()
		}
		w.wakeAt(w.m.clock.Now().Add(retryPeriod))
		return false
	}
	w.lastMountErr = ""
	if w.startTime == nil {
		t := mt(w.m.clock.Now())
		w.startTime = &t
	}
	acted := false
	if !w.initDone {
		for i := range pod.Spec.InitContainers {
			c := &pod.Spec.InitContainers[i]
			r := w.ctr(c.Name, true)
			if r.succeeded() {
				continue
			}
			return w.syncContainer(ctx, pod, c, r)
		}
		w.initDone = true
	}
	for i := range pod.Spec.Containers {
		c := &pod.Spec.Containers[i]
		if w.syncContainer(ctx, pod, c, w.ctr(c.Name, false)) {
			acted = true
		}
	}
	w.runProbes(ctx, pod)
	return acted
}

func (w *podWorker) dnsInput() dnsInput {
	hostResolv, _ := os.ReadFile(w.m.cfg.HostResolvConf)
	return dnsInput{
		clusterDNS: w.m.cfg.ClusterDNS, clusterDomain: w.m.cfg.ClusterDomain,
		searchDomains: w.m.cfg.SearchDomains, hostResolv: hostResolv,
	}
}

func (w *podWorker) writeEtcFiles(pod *corev1.Pod) bool {
	if err := w.volumes.writeEtcFiles(pod, w.podIP, w.dnsInput(), false); err != nil {
		w.log.Error("writing pod files", "err", err)
		w.wakeAt(w.m.clock.Now().Add(retryPeriod))
		return false
	}
	return true
}

// netnsPinner is implemented by networks that can create and pin a pod's namespace ahead of
// SetupPod (which then wires the pinned namespace).
type netnsPinner interface {
	// PinNetns creates and pins the pod's namespace unless it is pinned already, and returns its
	// path.
	PinNetns(ctx context.Context, pod PodRef) (string, error)
}

// netSetup is a SetupPod call running concurrently with container creation.
type netSetup struct {
	done chan struct{}
	pn   PodNetwork
	err  error
}

// beginNetwork pins the pod's namespace, writes its /etc files (/etc/hosts without the pod IP
// yet) and starts SetupPod in the background, when the network can pin namespaces ahead and no
// container's environment needs the pod IP; it reports whether it did. Containers may then be
// created (runc joins the namespace and mounts the files) while CNI ADD runs; awaitNetwork,
// which start calls, completes /etc/hosts in place before any process starts. The caller must
// call awaitNetwork before syncContainers returns.
func (w *podWorker) beginNetwork(ctx context.Context, pod *corev1.Pod) bool {
	np, ok := w.m.cfg.Network.(netnsPinner)
	if !ok || pod.Spec.HostNetwork || needsPodIP(pod) {
		return false
	}
	path, err := np.PinNetns(ctx, podRef(pod))
	if err != nil {
		w.log.Warn("pinning the pod's network namespace ahead of CNI", "err", err)
		return false // ensureNetwork retries it the ordinary way and reports what fails
	}
	if err := w.volumes.writeEtcFiles(pod, "", w.dnsInput(), false); err != nil {
		w.log.Warn("writing pod files", "err", err)
		return false
	}
	w.netnsPath = path
	ports := hostPorts(pod)
	ns := &netSetup{done: make(chan struct{})}
	go func() {
		defer close(ns.done)
		began := w.m.clock.Now()
		ns.pn, ns.err = w.m.cfg.Network.SetupPod(ctx, podRef(pod), ports)
		w.m.cfg.Metrics.observe(opNetworkSetup, w.m.clock.Since(began))
	}()
	w.pendingNet = ns
	return true
}

// awaitNetwork waits for a SetupPod started by beginNetwork and writes the pod's /etc files;
// it reports whether containers may start. Without a pending setup it reports netReady.
func (w *podWorker) awaitNetwork(pod *corev1.Pod) bool {
	ns := w.pendingNet
	if ns == nil {
		return w.netReady
	}
	w.pendingNet = nil
	<-ns.done
	if ns.err != nil {
		w.networkFailed(pod, ns.err)
		return false
	}
	if ns.pn.NetnsPath != w.netnsPath {
		w.log.Warn("pod network namespace differs from the pinned path", "want", w.netnsPath, "got", ns.pn.NetnsPath)
	}
	w.podIP, w.netnsPath, w.netReady = ns.pn.IP, ns.pn.NetnsPath, true
	// In place: the containers created meanwhile have the files bind-mounted already.
	if err := w.volumes.writeEtcFiles(pod, w.podIP, w.dnsInput(), true); err != nil {
		w.log.Error("writing pod files", "err", err)
		w.wakeAt(w.m.clock.Now().Add(retryPeriod))
		return false
	}
	return true
}

// needsPodIP reports whether a container's environment refers to the pod IP, which is only
// known after SetupPod.
func needsPodIP(pod *corev1.Pod) bool {
	for _, list := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for _, c := range list {
			for _, e := range c.Env {
				if f := e.ValueFrom; f != nil && f.FieldRef != nil {
					switch f.FieldRef.FieldPath {
					case "status.podIP", "status.podIPs":
						return true
					}
				}
			}
		}
	}
	return false
}

func hostPorts(pod *corev1.Pod) []PortMapping {
	var ports []PortMapping
	for _, c := range pod.Spec.Containers {
		for _, p := range c.Ports {
			if p.HostPort == 0 {
				continue
			}
			proto := "tcp"
			if p.Protocol == corev1.ProtocolUDP {
				proto = "udp"
			}
			ports = append(ports, PortMapping{HostPort: p.HostPort, ContainerPort: p.ContainerPort, Protocol: proto, HostIP: p.HostIP})
		}
	}
	return ports
}

func (w *podWorker) networkFailed(pod *corev1.Pod, err error) {
	w.event(pod, corev1.EventTypeWarning, "FailedCreatePodSandBox", "Failed to set up the pod network: %v", err)
	w.log.Error("setting up pod network", "err", err)
	w.wakeAt(w.m.clock.Now().Add(retryPeriod))
}

// ensureNetwork sets up the pod's network namespace once (SetupPod is idempotent, so an adopted
// pod gets its existing namespace and IP back).
func (w *podWorker) ensureNetwork(ctx context.Context, pod *corev1.Pod) bool {
	if w.netReady {
		return true
	}
	if pod.Spec.HostNetwork {
		w.podIP, w.netReady = w.m.cfg.NodeIP, true
		return true
	}
	began := w.m.clock.Now()
	pn, err := w.m.cfg.Network.SetupPod(ctx, podRef(pod), hostPorts(pod))
	w.m.cfg.Metrics.observe(opNetworkSetup, w.m.clock.Since(began))
	if err != nil {
		w.networkFailed(pod, err)
		return false
	}
	w.podIP, w.netnsPath, w.netReady = pn.IP, pn.NetnsPath, true
	return true
}

func podRef(pod *corev1.Pod) PodRef {
	return PodRef{UID: string(pod.UID), Namespace: pod.Namespace, Name: pod.Name}
}

// syncContainer acts on one container: start it, restart it (restart policy, back-off, spec
// change) or leave it.
func (w *podWorker) syncContainer(ctx context.Context, pod *corev1.Pod, c *corev1.Container, r *ctrRun) bool {
	if r.id != "" {
		switch r.status.State {
		case StateCreated:
			return w.start(ctx, pod, r)
		case StateRunning:
			if r.hash != specHash(c) {
				w.killContainer(ctx, pod, r, gracePeriod(pod), fmt.Sprintf("Container %s definition changed, will be restarted", c.Name))
				r.forceRestart = true
				return true
			}
			return false
		case StateExited:
		default:
			return false
		}
		if !w.shouldRestart(pod, r) {
			r.waiting = nil
			return false
		}
		now := w.m.clock.Now()
		key := c.Name
		if in, end, delay := w.crashBackoff.inBackoffSince(key, r.status.FinishedAt, now); in && !r.forceRestart {
			msg := fmt.Sprintf("back-off %s restarting failed container=%s pod=%s_%s(%s)", delay, c.Name, pod.Name, pod.Namespace, pod.UID)
			r.waiting = &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff", Message: msg}
			if !r.backoffEventFor.Equal(r.status.FinishedAt) {
				r.backoffEventFor = r.status.FinishedAt
				w.event(pod, corev1.EventTypeWarning, "BackOff", "Back-off restarting failed container %s in pod %s_%s(%s)", c.Name, pod.Name, pod.Namespace, pod.UID)
			}
			w.wakeAt(end)
			return false
		}
		if !r.forceRestart {
			w.crashBackoff.next(key, r.status.FinishedAt, now)
		}
	}
	return w.createAndStart(ctx, pod, c, r)
}

// shouldRestart applies the restart policy to an exited container.
func (w *podWorker) shouldRestart(pod *corev1.Pod, r *ctrRun) bool {
	if r.forceRestart {
		return true
	}
	failed := r.status.ExitCode != 0
	if r.init {
		return failed && pod.Spec.RestartPolicy != corev1.RestartPolicyNever
	}
	switch pod.Spec.RestartPolicy {
	case corev1.RestartPolicyNever:
		return false
	case corev1.RestartPolicyOnFailure:
		return failed
	}
	return true
}

// createAndStart creates the container's next run (pulling its image first) and starts it.
func (w *podWorker) createAndStart(ctx context.Context, pod *corev1.Pod, c *corev1.Container, r *ctrRun) bool {
	restart := int32(0)
	if r.id != "" {
		restart = r.restartCount + 1
	}
	if r.id == "" && r.waiting == nil {
		r.waiting = &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}
	}
	began := w.m.clock.Now()
	image, ok := w.ensureImage(ctx, pod, c, r)
	w.m.cfg.Metrics.observe(opImage, w.m.clock.Since(began))
	if !ok {
		return false
	}
	spec, err := w.containerSpec(ctx, pod, c, r.init, restart, image)
	if err != nil {
		reason := "CreateContainerError"
		var cfgErr *configError
		if errors.As(err, &cfgErr) {
			reason = "CreateContainerConfigError"
		}
		r.waiting = &corev1.ContainerStateWaiting{Reason: reason, Message: err.Error()}
		w.event(pod, corev1.EventTypeWarning, "Failed", "Error: %v", err)
		w.wakeAt(w.m.clock.Now().Add(retryPeriod))
		return false
	}
	uid := string(pod.UID)
	if err := os.MkdirAll(LogDir(w.m.cfg.DataDir, uid, c.Name), 0o755); err != nil {
		w.log.Error("creating log dir", "err", err)
	}
	// Keep this run's and the previous run's logs only.
	for old := restart - 2; old >= 0; old-- {
		if err := removeRunLogs(LogPath(w.m.cfg.DataDir, uid, c.Name, old)); errors.Is(err, os.ErrNotExist) {
			break
		}
	}
	rt := w.m.cfg.Runtime
	began = w.m.clock.Now()
	err = rt.CreateContainer(ctx, spec)
	if errors.Is(err, ErrContainerExists) { // a leftover of a crashed agent
		if rerr := rt.RemoveContainer(ctx, spec.ID); rerr != nil {
			w.log.Warn("removing leftover container", "id", spec.ID, "err", rerr)
		}
		err = rt.CreateContainer(ctx, spec)
	}
	w.m.cfg.Metrics.observe(opCreateContainer, w.m.clock.Since(began))
	if err != nil {
		r.waiting = &corev1.ContainerStateWaiting{Reason: "CreateContainerError", Message: err.Error()}
		w.event(pod, corev1.EventTypeWarning, "Failed", "Error: %v", err)
		w.wakeAt(w.m.clock.Now().Add(retryPeriod))
		return false
	}
	w.event(pod, corev1.EventTypeNormal, "Created", "Created container %s", c.Name)
	oldID := r.id
	if r.exited() {
		r.last = terminatedState(r.status)
	}
	r.id, r.restartCount, r.hash = spec.ID, restart, spec.Labels[LabelSpecHash]
	r.imageID = imageID(image.Ref, image.Digest)
	r.status = ContainerStatus{ID: spec.ID, State: StateCreated, Labels: spec.Labels}
	r.waiting, r.forceRestart, r.startFailed = nil, false, false
	r.started, r.ready = false, false
	r.probes = map[probeKind]*probeState{}
	if oldID != "" && oldID != spec.ID {
		if err := rt.RemoveContainer(ctx, oldID); err != nil {
			w.staleIDs = append(w.staleIDs, oldID)
		}
	}
	w.start(ctx, pod, r)
	return true
}

// start starts a created container; a failure counts as a run that exited at once (StartError),
// so that the restart policy and back-off apply.
func (w *podWorker) start(ctx context.Context, pod *corev1.Pod, r *ctrRun) bool {
	if !w.awaitNetwork(pod) {
		return false
	}
	began := w.m.clock.Now()
	st, err := w.m.cfg.Runtime.StartContainer(ctx, r.id)
	w.m.cfg.Metrics.observe(opStartContainer, w.m.clock.Since(began))
	if err != nil {
		now := w.m.clock.Now()
		r.startFailed = true
		r.status = ContainerStatus{ID: r.id, Labels: r.status.Labels, State: StateExited, ExitCode: 128,
			Reason: "StartError", Message: err.Error(), StartedAt: now, FinishedAt: now}
		w.event(pod, corev1.EventTypeWarning, "Failed", "Error: %v", err)
		return true
	}
	w.event(pod, corev1.EventTypeNormal, "Started", "Started container %s", r.name)
	r.status = st
	return true
}

// imageID renders an image's identity as the kubelet shows it: "<repository>@sha256:...".
func imageID(ref, digest string) string {
	if digest == "" || strings.Contains(digest, "@") {
		return digest
	}
	if i := strings.IndexByte(ref, '@'); i >= 0 {
		ref = ref[:i]
	}
	return ref + "@" + digest
}

// gracePeriod is the pod's deletion grace period, or terminationGracePeriodSeconds (default 30 s).
func gracePeriod(pod *corev1.Pod) time.Duration {
	if pod.DeletionGracePeriodSeconds != nil {
		return time.Duration(*pod.DeletionGracePeriodSeconds) * time.Second
	}
	if pod.Spec.TerminationGracePeriodSeconds != nil {
		return time.Duration(*pod.Spec.TerminationGracePeriodSeconds) * time.Second
	}
	return defaultGracePeriod
}
