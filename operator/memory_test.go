package operator

import (
	"os"
	"path/filepath"
	"testing"
)

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
