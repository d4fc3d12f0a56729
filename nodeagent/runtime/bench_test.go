package runtime_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/bosun-gitops/bosun/internal/testutil/images"
	"github.com/bosun-gitops/bosun/nodeagent/runtime"
	"github.com/bosun-gitops/bosun/nodeagent/runtime/runtimetest"
)

// BenchmarkRawContainerdStart measures containerd's own create+task+start of the busybox image:
// the ceiling the agent's pod-start benchmark compares against.
func BenchmarkRawContainerdStart(b *testing.B) {
	socket := runtimetest.StartContainerd(b)
	dir := b.TempDir()
	_, ref := images.Busybox(b, dir, "busybox")
	r := newRuntime(b, socket, runtime.Config{ImportDir: dir})
	_ = r
	ctx := context.Background()
	for i := 0; i < b.N; i++ {
		one, err := runtimetest.RawStartLatency(ctx, socket, ref, 20, 1)
		if err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		burst, err := runtimetest.RawStartLatency(ctx, socket, ref, 50, 8)
		if err != nil {
			b.Fatal(err)
		}
		total := time.Since(start)
		if i == b.N-1 {
			ms := func(d time.Duration) string { return fmt.Sprintf("%.1f", float64(d.Microseconds())/1000) }
			fmt.Printf("bench: containerd-raw-start-p50 %s ms\n", ms(runtimetest.Percentile(one, 50)))
			fmt.Printf("bench: containerd-raw-start-p99 %s ms\n", ms(runtimetest.Percentile(one, 99)))
			fmt.Printf("bench: containerd-raw-start-50x8-p50 %s ms\n", ms(runtimetest.Percentile(burst, 50)))
			fmt.Printf("bench: containerd-raw-start-50x8-p99 %s ms\n", ms(runtimetest.Percentile(burst, 99)))
			fmt.Printf("bench: containerd-raw-start-50x8-total %s ms\n", ms(total))
		}
	}
}
