package runtimetest

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/containerd/containerd"
	"github.com/containerd/containerd/cio"
	"github.com/containerd/containerd/namespaces"
	"github.com/containerd/containerd/oci"
)

// RawStartLatency measures containerd's own create+task+start of n containers of image (already
// present and unpacked with overlayfs), running `sleep 3600`, parallel at a time, with no pod
// machinery around it: the ceiling the agent's pod-start benchmark compares against. It uses the
// namespace in ctx, else "bosun". The containers are killed and removed afterwards; the returned
// durations are sorted.
func RawStartLatency(ctx context.Context, socket, image string, n, parallel int) ([]time.Duration, error) {
	if parallel < 1 {
		parallel = 1
	}
	if _, ok := namespaces.Namespace(ctx); !ok {
		ctx = namespaces.WithNamespace(ctx, "bosun")
	}
	client, err := containerd.New(socket)
	if err != nil {
		return nil, fmt.Errorf("connecting to containerd at %s: %w", socket, err)
	}
	defer client.Close()
	img, err := client.GetImage(ctx, image)
	if err != nil {
		return nil, fmt.Errorf("raw start: image %s: %w", image, err)
	}
	prefix := fmt.Sprintf("raw-bench-%d", time.Now().UnixNano())
	durations := make([]time.Duration, n)
	var (
		mu       sync.Mutex
		firstErr error
		wg       sync.WaitGroup
		sem      = make(chan struct{}, parallel)
		started  []containerd.Container
	)
	for i := 0; i < n; i++ {
		wg.Add(1)
		sem <- struct{}{}
		go func(i int) {
			defer wg.Done()
			defer func() { <-sem }()
			id := fmt.Sprintf("%s-%d", prefix, i)
			begin := time.Now()
			ctr, err := client.NewContainer(ctx, id,
				containerd.WithImage(img),
				containerd.WithSnapshotter("overlayfs"),
				containerd.WithNewSnapshot(id+"-snap", img),
				containerd.WithNewSpec(oci.WithImageConfig(img), oci.WithProcessArgs("sleep", "3600")))
			if err == nil {
				mu.Lock()
				started = append(started, ctr)
				mu.Unlock()
				var task containerd.Task
				task, err = ctr.NewTask(ctx, cio.NullIO)
				if err == nil {
					err = task.Start(ctx)
				}
			}
			durations[i] = time.Since(begin)
			if err != nil {
				mu.Lock()
				if firstErr == nil {
					firstErr = fmt.Errorf("raw start of %s: %w", id, err)
				}
				mu.Unlock()
			}
		}(i)
	}
	wg.Wait()
	for _, ctr := range started {
		if task, err := ctr.Task(ctx, nil); err == nil {
			_, _ = task.Delete(ctx, containerd.WithProcessKill)
		}
		_ = ctr.Delete(ctx, containerd.WithSnapshotCleanup)
	}
	if firstErr != nil {
		return nil, firstErr
	}
	sort.Slice(durations, func(i, j int) bool { return durations[i] < durations[j] })
	return durations, nil
}

// Percentile returns the p-th percentile (0-100) of sorted durations.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted)-1) * p / 100)
	return sorted[i]
}
