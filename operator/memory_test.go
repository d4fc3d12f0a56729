package operator

import (
	"log/slog"
	"os"
	"path/filepath"
	"testing"
)

// TestIdleReleaser: memory goes back to the OS on the first check after a quiet interval with
// enough to reclaim, once per burst; never while the process allocates.
func TestIdleReleaser(t *testing.T) {
	const mib = 1 << 20
	var allocs, reclaimable uint64
	frees := 0
	r := &idleReleaser{
		read: func() (uint64, uint64) { return allocs, reclaimable },
		free: func() { frees++; reclaimable = 2 * mib },
		log:  slog.New(slog.DiscardHandler),
	}
	steps := []struct {
		name               string
		allocated, garbage uint64
		want               bool
	}{
		{"first check: no baseline", 0, 300 * mib, false},
		{"busy: a sync allocates", 500 * mib, 300 * mib, false},
		{"busy: controllers fan out", 200 * mib, 350 * mib, false},
		{"idle after the burst", 1 * mib, 350 * mib, true},
		{"idle, what is left is too little", 1 * mib, 2 * mib, false},
		{"idle, a little garbage", 4 * mib, 10 * mib, false},
		{"busy again", 100 * mib, 120 * mib, false},
		{"idle again", 0, 120 * mib, true},
	}
	for _, s := range steps {
		allocs += s.allocated
		reclaimable = s.garbage
		before := frees
		if got := r.check(); got != s.want || (frees > before) != s.want {
			t.Errorf("%s: check() = %v (frees %d -> %d), want %v", s.name, got, before, frees, s.want)
		}
	}
}

func TestCgroupMemoryLimit(t *testing.T) {
	write := func(t *testing.T, path, data string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name      string
		cgroup    string
		files     map[string]string
		want      int64
		wantLimit bool
	}{
		{"v2 with a limit", "0::/system.slice/bosun.service\n",
			map[string]string{"system.slice/bosun.service/memory.max": "1073741824\n"}, 1 << 30, true},
		{"v2 without a limit", "0::/system.slice/bosun.service\n",
			map[string]string{"system.slice/bosun.service/memory.max": "max\n"}, 0, false},
		{"v2 in a container (its cgroup is the root)", "0::/\n",
			map[string]string{"memory.max": "536870912\n"}, 512 << 20, true},
		{"v1 with a limit", "12:pids:/x\n4:memory:/docker/abc\n1:name=systemd:/x\n",
			map[string]string{"memory/docker/abc/memory.limit_in_bytes": "268435456\n"}, 256 << 20, true},
		{"v1 without a limit", "4:memory:/\n",
			map[string]string{"memory/memory.limit_in_bytes": "9223372036854771712\n"}, 0, false},
		{"no memory controller", "1:cpu:/\n", nil, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			write(t, filepath.Join(dir, "cgroup"), tc.cgroup)
			for p, data := range tc.files {
				write(t, filepath.Join(dir, "fs", p), data)
			}
			got, ok := cgroupMemoryLimitAt(filepath.Join(dir, "cgroup"), filepath.Join(dir, "fs"))
			if got != tc.want || ok != tc.wantLimit {
				t.Errorf("cgroupMemoryLimitAt = %d, %v; want %d, %v", got, ok, tc.want, tc.wantLimit)
			}
		})
	}
}
