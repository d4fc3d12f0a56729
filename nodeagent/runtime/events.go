package runtime

import (
	"context"
	"fmt"
	"time"

	apievents "github.com/containerd/containerd/api/events"
	"github.com/containerd/containerd/errdefs"
	"github.com/containerd/typeurl/v2"

	"github.com/bosun-gitops/bosun/nodeagent/pods"
)

// Events delivers one event per exit of a container's main process, from containerd's
// /tasks/exit events. The channel closes when ctx ends or the event stream fails (the worker
// resubscribes and re-reads every status, being level-triggered).
func (r *Runtime) Events(ctx context.Context) (<-chan pods.ContainerEvent, error) {
	filter := fmt.Sprintf(`topic=="/tasks/exit",namespace==%q`, r.cfg.Namespace)
	envelopes, errs := r.client.EventService().Subscribe(ctx, filter)
	out := make(chan pods.ContainerEvent, 64)
	go func() {
		defer close(out)
		for {
			select {
			case <-ctx.Done():
				return
			case err := <-errs:
				if err != nil && ctx.Err() == nil {
					r.log.Error("containerd event stream ended", "err", err)
				}
				return
			case env := <-envelopes:
				if env == nil || env.Event == nil {
					continue
				}
				v, err := typeurl.UnmarshalAny(env.Event)
				if err != nil {
					r.log.Warn("decoding containerd event", "topic", env.Topic, "err", err)
					continue
				}
				exit, ok := v.(*apievents.TaskExit)
				if !ok || exit.ID != exit.ContainerID {
					continue // an exec process (probe), not the container
				}
				select {
				case out <- pods.ContainerEvent{ID: exit.ContainerID, ExitCode: int32(exit.ExitStatus)}:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return out, nil
}

// watchOOM records /tasks/oom events as a label on the container, so that an OOM kill is still
// known after the cgroup is gone. It resubscribes until ctx ends.
func (r *Runtime) watchOOM(ctx context.Context) {
	defer close(r.oomDone)
	filter := fmt.Sprintf(`topic=="/tasks/oom",namespace==%q`, r.cfg.Namespace)
	for ctx.Err() == nil {
		envelopes, errs := r.client.EventService().Subscribe(ctx, filter)
	loop:
		for {
			select {
			case <-ctx.Done():
				return
			case err := <-errs:
				if err != nil && ctx.Err() == nil {
					r.log.Warn("containerd oom event stream ended; resubscribing", "err", err)
				}
				break loop
			case env := <-envelopes:
				if env == nil || env.Event == nil {
					continue
				}
				v, err := typeurl.UnmarshalAny(env.Event)
				if err != nil {
					continue
				}
				oom, ok := v.(*apievents.TaskOOM)
				if !ok {
					continue
				}
				r.markOOM(ctx, oom.ContainerID)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
}

func (r *Runtime) markOOM(ctx context.Context, id string) {
	ctr, err := r.client.LoadContainer(ctx, id)
	if err != nil {
		if !errdefs.IsNotFound(err) {
			r.log.Warn("recording OOM kill", "id", id, "err", err)
		}
		return
	}
	if _, err := ctr.SetLabels(ctx, map[string]string{labelOOMKilled: "true"}); err != nil {
		r.log.Warn("recording OOM kill", "id", id, "err", err)
		return
	}
	r.log.Info("container OOM-killed", "id", id)
}
