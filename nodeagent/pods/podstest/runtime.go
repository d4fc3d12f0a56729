package podstest

import (
	"context"
	"fmt"
	"os"
	"sort"
	"sync"
	"time"

	"k8s.io/utils/clock"

	"github.com/bosun-gitops/bosun/nodeagent/pods"
)

// Behavior says what a fake container does once started.
type Behavior struct {
	// ExitImmediately makes the process exit with ExitCode as soon as it starts.
	ExitImmediately bool
	ExitCode        int32
	// IgnoreSIGTERM makes StopContainer end the process with SIGKILL (137) instead of 143.
	IgnoreSIGTERM bool
}

// ExecFunc answers Exec calls (probes, preStop hooks).
type ExecFunc func(id string, cmd []string) (exitCode int, output []byte, err error)

type container struct {
	spec   pods.ContainerSpec
	status pods.ContainerStatus
}

// Runtime is an in-memory pods.Runtime.
type Runtime struct {
	clock clock.PassiveClock
	calls *Calls

	mu         sync.Mutex
	images     map[string]pods.ImageInfo
	pullErrors map[string]error
	containers map[string]*container
	behaviors  map[string]Behavior // by container name
	exec       ExecFunc
	events     []chan pods.ContainerEvent
	pulls      []PullRecord
}

// PullRecord is one EnsureImage call.
type PullRecord struct {
	Ref    string
	Policy pods.PullPolicy
	Auth   []pods.RegistryAuth
}

var _ pods.Runtime = (*Runtime)(nil)

// NewRuntime returns a fake runtime on clk that logs its calls into calls (may be nil).
func NewRuntime(clk clock.PassiveClock, calls *Calls) *Runtime {
	if calls == nil {
		calls = &Calls{}
	}
	return &Runtime{
		clock: clk, calls: calls,
		images: map[string]pods.ImageInfo{}, pullErrors: map[string]error{},
		containers: map[string]*container{}, behaviors: map[string]Behavior{},
	}
}

// SetImage makes ref pullable with info (Ref and Digest are filled in when empty).
func (r *Runtime) SetImage(ref string, info pods.ImageInfo) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if info.Ref == "" {
		info.Ref = ref
	}
	if info.Digest == "" {
		info.Digest = "sha256:" + fmt.Sprintf("%064x", len(ref))
	}
	r.images[ref] = info
}

// SetPullError makes pulls of ref fail with err (nil clears it).
func (r *Runtime) SetPullError(ref string, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err == nil {
		delete(r.pullErrors, ref)
		return
	}
	r.pullErrors[ref] = err
}

// SetBehavior sets what containers with this name do when started.
func (r *Runtime) SetBehavior(containerName string, b Behavior) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.behaviors[containerName] = b
}

// SetExec sets the answer to Exec calls; by default they succeed.
func (r *Runtime) SetExec(f ExecFunc) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.exec = f
}

// Pulls returns the EnsureImage calls so far.
func (r *Runtime) Pulls() []PullRecord {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]PullRecord(nil), r.pulls...)
}

func (r *Runtime) EnsureImage(ctx context.Context, ref string, policy pods.PullPolicy, auth []pods.RegistryAuth, progress func(string)) (pods.ImageInfo, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls.add("EnsureImage " + ref)
	r.pulls = append(r.pulls, PullRecord{Ref: ref, Policy: policy, Auth: auth})
	if err, ok := r.pullErrors[ref]; ok {
		return pods.ImageInfo{}, err
	}
	info, ok := r.images[ref]
	switch {
	case !ok && policy == pods.PullNever:
		return pods.ImageInfo{}, fmt.Errorf("image %s: %w", ref, pods.ErrImageNeverPull)
	case !ok:
		return pods.ImageInfo{}, fmt.Errorf("pulling %s: not found", ref)
	}
	if progress != nil && policy == pods.PullAlways {
		progress("resolved " + ref)
	}
	return info, nil
}

func (r *Runtime) CreateContainer(ctx context.Context, spec pods.ContainerSpec) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls.add("CreateContainer " + spec.ID)
	if _, ok := r.containers[spec.ID]; ok {
		return fmt.Errorf("container %s: %w", spec.ID, pods.ErrContainerExists)
	}
	r.containers[spec.ID] = &container{spec: spec, status: pods.ContainerStatus{
		ID: spec.ID, Labels: spec.Labels, Image: spec.Image, ImageID: r.images[spec.Image].Digest, State: pods.StateCreated,
	}}
	return nil
}

func (r *Runtime) StartContainer(ctx context.Context, id string) (pods.ContainerStatus, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls.add("StartContainer " + id)
	c, ok := r.containers[id]
	if !ok {
		return pods.ContainerStatus{}, fmt.Errorf("container %s not found", id)
	}
	if c.status.State != pods.StateCreated {
		return pods.ContainerStatus{}, fmt.Errorf("container %s is %s", id, c.status.State)
	}
	// As runc: it bind-mounts the sources, so they must exist.
	for _, m := range c.spec.Mounts {
		if _, err := os.Stat(m.HostPath); err != nil {
			return pods.ContainerStatus{}, fmt.Errorf("starting container %s: mount %s: %w", id, m.ContainerPath, err)
		}
	}
	c.status.State = pods.StateRunning
	c.status.StartedAt = r.clock.Now()
	c.status.Pid = 1000
	if b := r.behaviors[c.spec.Labels[pods.LabelContainerName]]; b.ExitImmediately {
		r.exitLocked(c, b.ExitCode, false)
	}
	return c.status, nil
}

func (r *Runtime) exitLocked(c *container, code int32, oom bool) {
	c.status.State = pods.StateExited
	c.status.FinishedAt = r.clock.Now()
	c.status.ExitCode = code
	c.status.OOMKilled = oom
	c.status.Pid = 0
	switch {
	case oom:
		c.status.Reason = "OOMKilled"
	case code == 0:
		c.status.Reason = "Completed"
	default:
		c.status.Reason = "Error"
	}
	for _, ch := range r.events {
		select {
		case ch <- pods.ContainerEvent{ID: c.status.ID, ExitCode: code}:
		default:
		}
	}
}

// Exit makes a running container exit with code.
func (r *Runtime) Exit(id string, code int32) error {
	return r.end(id, code, false)
}

// OOMKill makes a running container die of the OOM killer (exit 137).
func (r *Runtime) OOMKill(id string) error {
	return r.end(id, 137, true)
}

func (r *Runtime) end(id string, code int32, oom bool) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	c, ok := r.containers[id]
	if !ok || c.status.State != pods.StateRunning {
		return fmt.Errorf("container %s is not running", id)
	}
	r.exitLocked(c, code, oom)
	return nil
}

func (r *Runtime) StopContainer(ctx context.Context, id string, grace time.Duration) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls.add(fmt.Sprintf("StopContainer %s %s", id, grace))
	c, ok := r.containers[id]
	if !ok || c.status.State != pods.StateRunning {
		return nil
	}
	code := int32(143)
	if r.behaviors[c.spec.Labels[pods.LabelContainerName]].IgnoreSIGTERM {
		code = 137
	}
	r.exitLocked(c, code, false)
	return nil
}

func (r *Runtime) RemoveContainer(ctx context.Context, id string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.containers[id]; !ok {
		return nil
	}
	r.calls.add("RemoveContainer " + id)
	if r.containers[id].status.State == pods.StateRunning {
		return fmt.Errorf("container %s is running", id)
	}
	delete(r.containers, id)
	return nil
}

func (r *Runtime) ContainerStatus(ctx context.Context, id string) (pods.ContainerStatus, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	c, ok := r.containers[id]
	if !ok {
		return pods.ContainerStatus{}, fmt.Errorf("container %s not found", id)
	}
	return c.status, nil
}

func (r *Runtime) ListContainers(ctx context.Context) ([]pods.ContainerStatus, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]pods.ContainerStatus, 0, len(r.containers))
	for _, c := range r.containers {
		out = append(out, c.status)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

func (r *Runtime) Exec(ctx context.Context, id string, cmd []string, timeout time.Duration) (int, []byte, error) {
	r.mu.Lock()
	c, ok := r.containers[id]
	running := ok && c.status.State == pods.StateRunning
	f := r.exec
	r.mu.Unlock()
	r.calls.add(fmt.Sprintf("Exec %s %v", id, cmd))
	if !running {
		return 0, nil, fmt.Errorf("container %s is not running", id)
	}
	if f == nil {
		return 0, nil, nil
	}
	return f(id, cmd)
}

func (r *Runtime) Events(ctx context.Context) (<-chan pods.ContainerEvent, error) {
	ch := make(chan pods.ContainerEvent, 1024)
	r.mu.Lock()
	r.events = append(r.events, ch)
	r.mu.Unlock()
	go func() {
		<-ctx.Done()
		r.mu.Lock()
		defer r.mu.Unlock()
		for i, c := range r.events {
			if c == ch {
				r.events = append(r.events[:i], r.events[i+1:]...)
				break
			}
		}
		close(ch)
	}()
	return ch, nil
}

// PendingEvents is the number of exit events not yet received by subscribers.
func (r *Runtime) PendingEvents() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, ch := range r.events {
		n += len(ch)
	}
	return n
}

// Spec returns the spec a container was created with.
func (r *Runtime) Spec(id string) (pods.ContainerSpec, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	c, ok := r.containers[id]
	if !ok {
		return pods.ContainerSpec{}, false
	}
	return c.spec, true
}

// Containers returns the status of every container, sorted by ID.
func (r *Runtime) Containers() []pods.ContainerStatus {
	out, _ := r.ListContainers(context.Background())
	return out
}

// AddContainer puts a container in the runtime directly, as if a previous agent had created it.
func (r *Runtime) AddContainer(spec pods.ContainerSpec, st pods.ContainerStatus) {
	r.mu.Lock()
	defer r.mu.Unlock()
	st.ID, st.Labels = spec.ID, spec.Labels
	r.containers[spec.ID] = &container{spec: spec, status: st}
}
