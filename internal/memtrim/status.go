package memtrim

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// StatusBytes reads one size field of /proc/<pid>/status ("VmRSS", "RssAnon", "RssFile", ...)
// in bytes; pid 0 is this process.
func StatusBytes(pid int, field string) (int64, error) {
	path := "/proc/self/status"
	if pid != 0 {
		path = "/proc/" + strconv.Itoa(pid) + "/status"
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, field+":"); ok {
			var kb int64
			if _, err := fmt.Sscanf(v, "%d", &kb); err != nil {
				return 0, fmt.Errorf("%s in %s: %w", field, path, err)
			}
			return kb * 1024, nil
		}
	}
	return 0, fmt.Errorf("no %s in %s", field, path)
}
