package runtime

import (
	"os"
	"path/filepath"
	"testing"
)

// TestSwapAccounted checks the detection against fake cgroup trees of each layout: this
// machine's own tree is one case only (cgroup v1 without swap accounting).
func TestSwapAccounted(t *testing.T) {
	const v2Self = "0::/system.slice/bosun-agent.service\n"
	tests := []struct {
		name  string
		files []string // created empty under the fake /sys/fs/cgroup
		self  string   // /proc/self/cgroup
		want  bool
	}{
		{"v1 with swapaccount=1", []string{"memory/memory.limit_in_bytes", "memory/memory.memsw.limit_in_bytes"}, "4:memory:/\n0::/\n", true},
		{"v1 without swap accounting", []string{"memory/memory.limit_in_bytes"}, "4:memory:/\n0::/\n", false},
		{"hybrid: memory on v1 without swap accounting, v2 beside it", []string{"memory/memory.limit_in_bytes", "unified/cgroup.controllers", "unified/init.scope/memory.swap.max"}, "4:memory:/\n0::/init.scope\n", false},
		{"v2: our own cgroup has swap.max", []string{"cgroup.controllers", "system.slice/bosun-agent.service/memory.swap.max"}, v2Self, true},
		{"v2 in the root cgroup: a child has swap.max", []string{"cgroup.controllers", "memory.stat", "init.scope/memory.swap.max"}, "0::/\n", true},
		{"v2 without swap accounting (swapaccount=0)", []string{"cgroup.controllers", "system.slice/bosun-agent.service/memory.max", "init.scope/memory.max"}, v2Self, false},
		{"v2 without the memory controller", []string{"cgroup.controllers", "system.slice/bosun-agent.service/cgroup.procs"}, v2Self, false},
		{"no cgroup file system", nil, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			for _, f := range tt.files {
				p := filepath.Join(root, f)
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, nil, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if got := swapAccounted(root, []byte(tt.self)); got != tt.want {
				t.Errorf("swapAccounted = %v, want %v", got, tt.want)
			}
		})
	}
}
