package runtime

import (
	"cmp"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/containerd/containerd"
	"github.com/containerd/containerd/cio"
	"github.com/containerd/containerd/containers"
	"github.com/containerd/containerd/errdefs"
	"github.com/containerd/containerd/oci"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/bosun-gitops/bosun/nodeagent/pods"
)

// Labels the runtime keeps on containers, beside the pod labels, so that a new Runtime (after an
// agent restart) knows everything it needs.
const (
	labelLogPath   = "bosun.dev/log-path"
	labelStartedAt = "bosun.dev/started-at"
	labelOOMKilled = "bosun.dev/oom-killed"
	// labelImageDigest is the digest of the image the container was created from: its status's
	// imageID, whatever its image's name points at later.
	labelImageDigest = "bosun.dev/image-digest"
)

// killWait bounds how long StopContainer waits for a task to die after SIGKILL.
const killWait = 10 * time.Second

// CreateContainer creates the container (snapshot + OCI spec) and its task without starting
// it: runc sets up the container's namespaces, mounts and cgroup, and its process waits for
// StartContainer. The spec's network namespace and mount sources must exist; if runc refuses
// them, StartContainer reports it.
func (r *Runtime) CreateContainer(ctx context.Context, spec pods.ContainerSpec) error {
	if spec.ID == "" || spec.Image == "" {
		return fmt.Errorf("creating container: spec needs an ID and an image")
	}
	name, err := NormalizeRef(spec.Image)
	if err != nil {
		return err
	}
	labels := map[string]string{}
	for k, v := range spec.Labels {
		labels[k] = v
	}
	labels[labelLogPath] = spec.LogPath
	img, stopSignal, err := r.imageForCreate(ctx, name)
	if err != nil {
		return fmt.Errorf("creating container %s: image %s: %w", spec.ID, name, err)
	}
	labels[containerd.StopSignalLabel] = stopSignal
	labels[labelImageDigest] = img.Target().Digest.String()
	ctr, err := r.client.NewContainer(ctx, spec.ID,
		containerd.WithImage(img),
		containerd.WithSnapshotter(r.cfg.Snapshotter),
		containerd.WithNewSnapshot(spec.ID, img),
		containerd.WithContainerLabels(labels),
		containerd.WithNewSpec(specOpts(img, spec, r.swapLimit)...))
	if errdefs.IsAlreadyExists(err) {
		return fmt.Errorf("creating container %s: %w: %w", spec.ID, pods.ErrContainerExists, err)
	}
	if err != nil {
		r.forgetImage(name)
		return fmt.Errorf("creating container %s: %w", spec.ID, err)
	}
	// runc's create fails for what would make the kubelet's start fail (a mount over a file of
	// another kind, a cgroup limit it refuses): the container stays, without a task, and
	// StartContainer tries again and reports the error, so that the restart policy applies.
	task, err := newTask(ctx, ctr, spec.LogPath)
	if err != nil {
		r.log.Debug("creating the task ahead failed; StartContainer retries it", "id", spec.ID, "err", err)
	}
	r.freshMu.Lock()
	r.fresh[spec.ID] = freshContainer{ctr: ctr, task: task, logPath: spec.LogPath}
	r.freshMu.Unlock()
	r.log.Debug("created container", "id", spec.ID, "image", name)
	return nil
}

// freshContainer is a container this Runtime created and has not started, with its created
// task (nil when creating it failed) and log path, so StartContainer need not read them back.
type freshContainer struct {
	ctr     containerd.Container
	task    containerd.Task
	logPath string
}

// takeFresh returns and forgets id's freshContainer.
func (r *Runtime) takeFresh(id string) (freshContainer, bool) {
	r.freshMu.Lock()
	defer r.freshMu.Unlock()
	f, ok := r.fresh[id]
	delete(r.fresh, id)
	return f, ok
}

// imageForCreate returns the image to create a container of, and its stop signal. The image
// EnsureImage has just checked (the pod worker always calls it first) is used as it found it:
// the container runs the digest that was checked, and the create saves containerd a lookup and a
// config read.
func (r *Runtime) imageForCreate(ctx context.Context, name string) (containerd.Image, string, error) {
	if k, ok := r.lastKnown(name); ok {
		return containerd.NewImage(r.client, k.record), cmp.Or(k.info.StopSignal, "SIGTERM"), nil
	}
	img, err := r.client.GetImage(ctx, name)
	if err != nil {
		return nil, "", err
	}
	sig, err := containerd.GetOCIStopSignal(ctx, img, "SIGTERM")
	if err != nil {
		return nil, "", err
	}
	return img, sig, nil
}

// specOpts translates a ContainerSpec into OCI spec options on top of the image's defaults.
// swapLimit says whether the host's memory cgroup accounts swap (see swapAccounted).
func specOpts(img containerd.Image, spec pods.ContainerSpec, swapLimit bool) []oci.SpecOpts {
	opts := []oci.SpecOpts{oci.WithImageConfig(img)}
	if len(spec.Args) > 0 {
		opts = append(opts, oci.WithProcessArgs(spec.Args...))
	}
	if len(spec.Env) > 0 {
		opts = append(opts, oci.WithEnv(spec.Env))
	}
	if spec.WorkingDir != "" {
		opts = append(opts, oci.WithProcessCwd(spec.WorkingDir))
	}
	opts = append(opts, securityOpts(spec)...)
	if spec.Hostname != "" && !spec.HostNetwork {
		opts = append(opts, oci.WithHostname(spec.Hostname))
	}
	switch {
	case spec.HostNetwork:
		// As the CRI does for hostNetwork pods: the node's network and hostname.
		opts = append(opts, oci.WithHostNamespace(specs.NetworkNamespace), oci.WithHostNamespace(specs.UTSNamespace))
	case spec.NetnsPath != "":
		// The pod's pinned namespace, never /proc/<pid>/ns/net: it outlives every container.
		opts = append(opts, oci.WithLinuxNamespace(specs.LinuxNamespace{Type: specs.NetworkNamespace, Path: spec.NetnsPath}))
	}
	if len(spec.Mounts) > 0 {
		var mounts []specs.Mount
		for _, m := range spec.Mounts {
			options := []string{"rbind", "rprivate", "rw"}
			if m.ReadOnly {
				options[2] = "ro"
			}
			mounts = append(mounts, specs.Mount{Destination: m.ContainerPath, Type: "bind", Source: m.HostPath, Options: options})
		}
		opts = append(opts, oci.WithMounts(mounts))
	}
	res := spec.Resources
	if res.MemoryLimitBytes > 0 {
		opts = append(opts, oci.WithMemoryLimit(uint64(res.MemoryLimitBytes)))
		if swapLimit {
			// As the CRI does: no swap beyond the memory limit (v1 memsw, v2 swap.max = 0).
			opts = append(opts, withNoSwap(res.MemoryLimitBytes))
		}
	}
	if res.CPUShares > 0 {
		opts = append(opts, oci.WithCPUShares(res.CPUShares))
	}
	if res.CPUQuota > 0 {
		period := res.CPUPeriod
		if period == 0 {
			period = 100000
		}
		opts = append(opts, oci.WithCPUCFS(res.CPUQuota, period))
	}
	return opts
}

// withNoSwap sets the memory+swap limit equal to the memory limit.
func withNoSwap(limit int64) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *specs.Spec) error {
		if s.Linux == nil {
			s.Linux = &specs.Linux{}
		}
		if s.Linux.Resources == nil {
			s.Linux.Resources = &specs.LinuxResources{}
		}
		if s.Linux.Resources.Memory == nil {
			s.Linux.Resources.Memory = &specs.LinuxMemory{}
		}
		s.Linux.Resources.Memory.Swap = &limit
		return nil
	}
}

// StartContainer starts the container's process (creating its task first when it has none,
// with stdout and stderr appended to its log file) and returns the container's status. Starting
// a running container succeeds.
func (r *Runtime) StartContainer(ctx context.Context, id string) (pods.ContainerStatus, error) {
	ctr, task, err := r.taskToStart(ctx, id)
	if err != nil {
		return pods.ContainerStatus{}, fmt.Errorf("starting container %s: %w", id, err)
	}
	if task == nil { // running already
		return r.status(ctx, ctr)
	}
	if err := task.Start(ctx); err != nil {
		_, _ = task.Delete(ctx, containerd.WithProcessKill)
		return pods.ContainerStatus{}, fmt.Errorf("starting container %s: %w", id, err)
	}
	started := time.Now().UTC()
	labels, err := ctr.SetLabels(ctx, map[string]string{labelStartedAt: started.Format(time.RFC3339Nano)})
	if err != nil {
		r.log.Warn("recording start time", "id", id, "err", err)
	}
	r.log.Debug("started container", "id", id, "pid", task.Pid())
	// The status as status() would read it back: the process has just started (an exit right
	// after comes as an event).
	info, err := ctr.Info(ctx, containerd.WithoutRefreshedMetadata)
	if err != nil {
		return r.status(ctx, ctr)
	}
	if labels == nil {
		labels = info.Labels
	}
	st := pods.ContainerStatus{ID: id, Labels: labels, Image: info.Image, ImageID: labels[labelImageDigest],
		State: pods.StateRunning, Pid: task.Pid(), StartedAt: started}
	if st.ImageID == "" {
		return r.status(ctx, ctr) // created by an older agent
	}
	return st, nil
}

// taskToStart returns the container and its created task, making the task when there is none;
// the task is nil when it runs already.
func (r *Runtime) taskToStart(ctx context.Context, id string) (containerd.Container, containerd.Task, error) {
	if f, ok := r.takeFresh(id); ok {
		if f.task != nil {
			return f.ctr, f.task, nil
		}
		task, err := newTask(ctx, f.ctr, f.logPath)
		return f.ctr, task, err
	}
	ctr, err := r.client.LoadContainer(ctx, id)
	if err != nil {
		return nil, nil, err
	}
	task, err := ctr.Task(ctx, nil)
	switch {
	case err == nil:
		st, err := task.Status(ctx)
		if err != nil {
			return nil, nil, err
		}
		switch st.Status {
		case containerd.Running:
			return ctr, nil, nil
		case containerd.Created:
			return ctr, task, nil
		}
		return nil, nil, fmt.Errorf("its task is %s; create a new container to run it again", st.Status)
	case errdefs.IsNotFound(err):
		labels, err := ctr.Labels(ctx)
		if err != nil {
			return nil, nil, err
		}
		task, err := newTask(ctx, ctr, labels[labelLogPath])
		return ctr, task, err
	default:
		return nil, nil, err
	}
}

// newTask creates ctr's task with stdout and stderr appended to logPath ("" = discarded).
func newTask(ctx context.Context, ctr containerd.Container, logPath string) (containerd.Task, error) {
	creator := cio.NullIO
	if logPath != "" {
		if err := os.MkdirAll(filepath.Dir(logPath), 0o755); err != nil {
			return nil, fmt.Errorf("log dir: %w", err)
		}
		creator = cio.LogFile(logPath)
	}
	task, err := ctr.NewTask(ctx, creator)
	if err != nil {
		return nil, fmt.Errorf("creating task: %w", err)
	}
	return task, nil
}

// StopContainer sends the image's stop signal (SIGTERM by default), waits up to grace for the
// process to exit, then SIGKILLs it. A stopped or missing container is success.
func (r *Runtime) StopContainer(ctx context.Context, id string, grace time.Duration) error {
	ctr, err := r.client.LoadContainer(ctx, id)
	if errdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("stopping container %s: %w", id, err)
	}
	task, err := ctr.Task(ctx, nil)
	if errdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("stopping container %s: %w", id, err)
	}
	st, err := task.Status(ctx)
	if err != nil {
		return fmt.Errorf("stopping container %s: %w", id, err)
	}
	switch st.Status {
	case containerd.Stopped:
		return nil
	case containerd.Created:
		// Never started: the task is removed rather than signalled, which would end runc's init
		// and read as a run that exited with code 2 (the container stays, without a task, as
		// before CreateContainer).
		r.takeFresh(id)
		if _, err := task.Delete(ctx, containerd.WithProcessKill); err != nil && !errdefs.IsNotFound(err) {
			return fmt.Errorf("stopping container %s: %w", id, err)
		}
		return nil
	}
	exited, err := task.Wait(ctx)
	if err != nil {
		return fmt.Errorf("stopping container %s: %w", id, err)
	}
	sig, err := containerd.GetStopSignal(ctx, ctr, syscall.SIGTERM)
	if err != nil {
		sig = syscall.SIGTERM
	}
	if grace > 0 {
		if err := task.Kill(ctx, sig); err != nil && !errdefs.IsNotFound(err) {
			return fmt.Errorf("stopping container %s: sending %s: %w", id, sig, err)
		}
		timer := time.NewTimer(grace)
		defer timer.Stop()
		select {
		case <-exited:
			return nil
		case <-timer.C:
			r.log.Info("grace period over, killing", "id", id, "grace", grace)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if err := task.Kill(ctx, syscall.SIGKILL, containerd.WithKillAll); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("stopping container %s: SIGKILL: %w", id, err)
	}
	select {
	case <-exited:
		return nil
	case <-time.After(killWait):
		return fmt.Errorf("stopping container %s: still running %s after SIGKILL", id, killWait)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// RemoveContainer kills and deletes the task, then deletes the container and its snapshot.
// A missing container is success.
func (r *Runtime) RemoveContainer(ctx context.Context, id string) error {
	r.takeFresh(id)
	ctr, err := r.client.LoadContainer(ctx, id)
	if errdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("removing container %s: %w", id, err)
	}
	if task, err := ctr.Task(ctx, nil); err == nil {
		if _, err := task.Delete(ctx, containerd.WithProcessKill); err != nil && !errdefs.IsNotFound(err) {
			return fmt.Errorf("removing container %s: deleting task: %w", id, err)
		}
	} else if !errdefs.IsNotFound(err) {
		return fmt.Errorf("removing container %s: %w", id, err)
	}
	if err := ctr.Delete(ctx, containerd.WithSnapshotCleanup); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("removing container %s: %w", id, err)
	}
	r.log.Debug("removed container", "id", id)
	return nil
}
