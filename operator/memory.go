package operator

import (
	"bufio"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
)

// DefaultGCPercent is `bosun operator`'s --gc-percent: a collection once the heap has grown by
// half of what the last one kept, not Go's default of doubling it. Most of the operator's heap
// is long-lived (the controllers' caches, the Git loader's cache, etcd's index); a large sync or
// the controllers' fan-out after it grows the heap to twice that at GOGC=100, and because Go
// does not move objects, the spans the burst's survivors end up scattered over stay in use long
// after it. With 10 000 objects in Git (make bench-e2e, 2 cores) 50 keeps the RSS at 333–347 MB
// once the controllers are quiet and 298–307 MB at rest, against 427–464 and 350–376 MB at 100,
// for a push-to-visible about 10% longer. Prometheus makes the same trade (GOGC=75 unless set).
const DefaultGCPercent = 50

// AutoMemoryLimit is the soft memory limit `--memory-limit auto` picks: 90% of the memory limit
// of the process's cgroup (a systemd MemoryMax=, a container's limit), so that the garbage
// collector, not the kernel's OOM killer, reacts first; 0 (none) outside such a cgroup, or when
// $GOMEMLIMIT is set (the Go runtime applies it).
func AutoMemoryLimit() int64 {
	if os.Getenv("GOMEMLIMIT") != "" {
		return 0
	}
	if n, ok := cgroupMemoryLimit(); ok {
		return n / 10 * 9
	}
	return 0
}

// applyGCSettings sets the process's garbage collector parameters from cfg.
func applyGCSettings(cfg Config, log *slog.Logger) {
	if cfg.GCPercent > 0 {
		debug.SetGCPercent(cfg.GCPercent)
	}
	if cfg.MemoryLimit > 0 {
		debug.SetMemoryLimit(cfg.MemoryLimit)
	}
	limit := "none"
	if n := debug.SetMemoryLimit(-1); n != math.MaxInt64 {
		limit = formatBytes(n)
	}
	gogc := strconv.Itoa(cfg.GCPercent)
	if cfg.GCPercent == 0 {
		if gogc = os.Getenv("GOGC"); gogc == "" {
			gogc = "100"
		}
	}
	log.Info("garbage collector", "gcPercent", gogc, "memoryLimit", limit)
}

// cgroupMemoryLimit returns the memory limit of the cgroup this process runs in (cgroup v2's
// memory.max, or v1's memory.limit_in_bytes), and false when there is none.
func cgroupMemoryLimit() (int64, bool) {
	return cgroupMemoryLimitAt("/proc/self/cgroup", "/sys/fs/cgroup")
}

// cgroupMemoryLimitAt is cgroupMemoryLimit reading the process's cgroup file procCgroup and the
// cgroup file system mounted at root.
func cgroupMemoryLimitAt(procCgroup, root string) (int64, bool) {
	f, err := os.Open(procCgroup)
	if err != nil {
		return 0, false
	}
	defer f.Close()
	var v1, v2 string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// "hierarchy-ID:controller-list:cgroup-path"
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		switch {
		case parts[0] == "0" && parts[1] == "":
			v2 = parts[2]
		case strings.Contains(","+parts[1]+",", ",memory,"):
			v1 = parts[2]
		}
	}
	candidates := []string{}
	if v1 != "" {
		candidates = append(candidates,
			filepath.Join(root, "memory", v1, "memory.limit_in_bytes"),
			filepath.Join(root, "memory", "memory.limit_in_bytes")) // a container sees its cgroup as the root
	}
	if v2 != "" {
		candidates = append(candidates, filepath.Join(root, v2, "memory.max"), filepath.Join(root, "memory.max"))
	}
	for _, p := range candidates {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		s := strings.TrimSpace(string(b))
		if s == "max" {
			return 0, false
		}
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n <= 0 || n >= math.MaxInt64/2 { // v1 reports "no limit" as a huge number
			return 0, false
		}
		return n, true
	}
	return 0, false
}

// formatBytes prints n in MiB for logs.
func formatBytes(n int64) string {
	return fmt.Sprintf("%dMiB", n>>20)
}
