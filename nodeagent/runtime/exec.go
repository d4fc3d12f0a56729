package runtime

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/containerd"
	"github.com/containerd/containerd/cio"
)

// maxExecOutput bounds the output Exec keeps (probe messages only need the start).
const maxExecOutput = 4 << 10

// Exec runs cmd in the running container id (for exec probes) and returns its exit code and
// combined output. On timeout the process is killed and an error returned.
func (r *Runtime) Exec(ctx context.Context, id string, cmd []string, timeout time.Duration) (int, []byte, error) {
	if len(cmd) == 0 {
		return 0, nil, fmt.Errorf("exec in %s: empty command", id)
	}
	ctr, err := r.client.LoadContainer(ctx, id)
	if err != nil {
		return 0, nil, fmt.Errorf("exec in %s: %w", id, err)
	}
	spec, err := ctr.Spec(ctx)
	if err != nil {
		return 0, nil, fmt.Errorf("exec in %s: %w", id, err)
	}
	task, err := ctr.Task(ctx, nil)
	if err != nil {
		return 0, nil, fmt.Errorf("exec in %s: no running task: %w", id, err)
	}
	pspec := *spec.Process
	pspec.Args = cmd
	pspec.Terminal = false
	out := &limitedBuffer{max: maxExecOutput}
	execID := "exec-" + strconv.FormatUint(r.execSeq.Add(1), 10) + "-" + strconv.FormatInt(time.Now().UnixNano()%1e6, 10)
	proc, err := task.Exec(ctx, execID, &pspec, cio.NewCreator(cio.WithStreams(nil, out, out)))
	if err != nil {
		return 0, nil, fmt.Errorf("exec in %s: %w", id, err)
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		_, _ = proc.Delete(dctx, containerd.WithProcessKill)
	}()
	exited, err := proc.Wait(ctx)
	if err != nil {
		return 0, nil, fmt.Errorf("exec in %s: %w", id, err)
	}
	if err := proc.Start(ctx); err != nil {
		return 0, nil, fmt.Errorf("exec in %s: starting %q: %w", id, cmd[0], err)
	}
	if timeout <= 0 {
		timeout = time.Minute
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case st := <-exited:
		proc.IO().Wait()
		code, _, err := st.Result()
		if err != nil {
			return 0, out.Bytes(), fmt.Errorf("exec in %s: %w", id, err)
		}
		return int(code), out.Bytes(), nil
	case <-timer.C:
		_ = proc.Kill(ctx, syscall.SIGKILL)
		return 0, out.Bytes(), fmt.Errorf("exec in %s: %q timed out after %s", id, cmd[0], timeout)
	case <-ctx.Done():
		_ = proc.Kill(context.WithoutCancel(ctx), syscall.SIGKILL)
		return 0, out.Bytes(), ctx.Err()
	}
}

// limitedBuffer keeps the first max bytes written and discards the rest.
type limitedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
	max int
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if room := b.max - b.buf.Len(); room > 0 {
		if len(p) > room {
			b.buf.Write(p[:room])
		} else {
			b.buf.Write(p)
		}
	}
	return len(p), nil
}

func (b *limitedBuffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]byte(nil), b.buf.Bytes()...)
}
