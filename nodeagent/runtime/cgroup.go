package runtime

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"strings"
)

// The host paths swapAccounted reads.
const (
	cgroupRoot     = "/sys/fs/cgroup"
	procSelfCgroup = "/proc/self/cgroup"
)

// swapAccounted reports whether the memory cgroup under root accounts swap, so that runc may be
// given a memory+swap limit (the CRI sets it equal to the memory limit: no swap beyond it).
// selfCgroup is the content of /proc/self/cgroup.
//
//   - cgroup v1 (or hybrid, memory on v1): root/memory/memory.memsw.limit_in_bytes exists
//     (swapaccount=1 on the kernel command line).
//   - cgroup v2 (root/cgroup.controllers exists): memory.swap.max exists in the cgroups below the
//     root, never in the root itself; look in our own cgroup, else in any child of the root.
func swapAccounted(root string, selfCgroup []byte) bool {
	if exists(filepath.Join(root, "memory", "memory.memsw.limit_in_bytes")) {
		return true
	}
	if !exists(filepath.Join(root, "cgroup.controllers")) {
		return false
	}
	if self := unifiedPath(selfCgroup); self != "" && self != "/" {
		if exists(filepath.Join(root, self, "memory.swap.max")) {
			return true
		}
	}
	children, err := os.ReadDir(root)
	if err != nil {
		return false
	}
	for _, c := range children {
		if c.IsDir() && exists(filepath.Join(root, c.Name(), "memory.swap.max")) {
			return true
		}
	}
	return false
}

// unifiedPath is the cgroup v2 path in a /proc/<pid>/cgroup ("0::/system.slice/x.service"), or "".
func unifiedPath(procCgroup []byte) string {
	sc := bufio.NewScanner(bytes.NewReader(procCgroup))
	for sc.Scan() {
		if p, ok := strings.CutPrefix(sc.Text(), "0::"); ok {
			return p
		}
	}
	return ""
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
