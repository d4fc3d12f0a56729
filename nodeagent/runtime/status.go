package runtime

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/containerd/containerd"
	"github.com/containerd/containerd/errdefs"

	"github.com/bosun-gitops/bosun/nodeagent/pods"
)

// ContainerStatus reports the container's state, exit code, times and whether the OOM killer
// ended it.
func (r *Runtime) ContainerStatus(ctx context.Context, id string) (pods.ContainerStatus, error) {
	ctr, err := r.client.LoadContainer(ctx, id)
	if err != nil {
		return pods.ContainerStatus{}, fmt.Errorf("status of container %s: %w", id, err)
	}
	return r.status(ctx, ctr)
}

// ListContainers lists the containers the agent created (those with a pod UID label).
func (r *Runtime) ListContainers(ctx context.Context) ([]pods.ContainerStatus, error) {
	ctrs, err := r.client.Containers(ctx, fmt.Sprintf("labels.%q", pods.LabelPodUID))
	if err != nil {
		return nil, fmt.Errorf("listing containers: %w", err)
	}
	out := make([]pods.ContainerStatus, 0, len(ctrs))
	for _, c := range ctrs {
		st, err := r.status(ctx, c)
		if errdefs.IsNotFound(err) {
			continue // removed meanwhile
		}
		if err != nil {
			return nil, err
		}
		out = append(out, st)
	}
	return out, nil
}

func (r *Runtime) status(ctx context.Context, ctr containerd.Container) (pods.ContainerStatus, error) {
	id := ctr.ID()
	info, err := ctr.Info(ctx, containerd.WithoutRefreshedMetadata)
	if err != nil {
		return pods.ContainerStatus{}, fmt.Errorf("status of container %s: %w", id, err)
	}
	st := pods.ContainerStatus{ID: id, Labels: info.Labels, Image: info.Image, State: pods.StateCreated}
	if d := info.Labels[labelImageDigest]; d != "" {
		st.ImageID = d
	} else if img, err := r.client.ImageService().Get(ctx, info.Image); err == nil { // created by an older agent
		st.ImageID = img.Target.Digest.String()
	}
	if t, err := time.Parse(time.RFC3339Nano, info.Labels[labelStartedAt]); err == nil {
		st.StartedAt = t
	}
	task, err := ctr.Task(ctx, nil)
	if errdefs.IsNotFound(err) {
		if !st.StartedAt.IsZero() {
			// Started once, but the task is gone: containerd lost it (machine reboot) or someone
			// deleted it.
			st.State, st.ExitCode, st.Reason = pods.StateExited, 255, "Error"
			st.Message = "the container's task is gone (containerd or the machine restarted)"
		}
		return st, nil
	}
	if err != nil {
		return pods.ContainerStatus{}, fmt.Errorf("status of container %s: %w", id, err)
	}
	ts, err := task.Status(ctx)
	if err != nil {
		return pods.ContainerStatus{}, fmt.Errorf("status of container %s: %w", id, err)
	}
	st.Pid = task.Pid()
	switch ts.Status {
	case containerd.Created:
		st.State = pods.StateCreated
	case containerd.Running, containerd.Paused, containerd.Pausing:
		st.State = pods.StateRunning
	case containerd.Stopped:
		st.State = pods.StateExited
		st.ExitCode = int32(ts.ExitStatus)
		st.FinishedAt = ts.ExitTime
		st.OOMKilled = info.Labels[labelOOMKilled] == "true" || r.cgroupOOMKilled(id)
		switch {
		case st.OOMKilled:
			st.Reason = "OOMKilled"
		case st.ExitCode == 0:
			st.Reason = "Completed"
		default:
			st.Reason = "Error"
		}
	default:
		st.State = pods.StateUnknown
	}
	return st, nil
}

// cgroupOOMKilled reads the oom_kill counter of the container's memory cgroup, which lives on
// until the task is deleted: memory.events on cgroup v2, memory.oom_control on v1. Containers
// use containerd's default cgroup path /<namespace>/<id>.
func (r *Runtime) cgroupOOMKilled(id string) bool {
	rel := filepath.Join(r.cfg.Namespace, id)
	for _, f := range []string{
		filepath.Join("/sys/fs/cgroup", rel, "memory.events"),
		filepath.Join("/sys/fs/cgroup/memory", rel, "memory.oom_control"),
	} {
		if n, ok := readCounter(f, "oom_kill"); ok {
			return n > 0
		}
	}
	return false
}

// readCounter reads "key value" lines from a cgroup file.
func readCounter(path, key string) (int64, bool) {
	f, err := os.Open(path)
	if err != nil {
		return 0, false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), " ")
		if ok && k == key {
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			return n, err == nil
		}
	}
	return 0, false
}
