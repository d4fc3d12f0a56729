package node

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// SystemInfo is what the node reports about its machine.
type SystemInfo struct {
	OSImage       string
	KernelVersion string
	Arch          string
	MachineID     string
	BootID        string
	SystemUUID    string
	CPUs          int
	MemoryBytes   int64
	// DiskBytes is the size of the file system holding the data dir (ephemeral storage).
	DiskBytes int64
}

// Stats are the figures the pressure conditions are computed from.
type Stats struct {
	MemAvailableBytes int64
	DiskAvailBytes    int64
	DiskTotalBytes    int64
	PIDs, PIDMax      int64
}

// ReadSystemInfo reads /etc/os-release, uname, /proc and the data dir's file system.
func ReadSystemInfo(dataDir string) (SystemInfo, error) {
	var si SystemInfo
	si.Arch = runtime.GOARCH
	si.CPUs = runtime.NumCPU()
	si.OSImage = osImage("/etc/os-release")
	var u unix.Utsname
	if err := unix.Uname(&u); err == nil {
		si.KernelVersion = unix.ByteSliceToString(u.Release[:])
	}
	si.MachineID = readTrim("/etc/machine-id")
	si.BootID = readTrim("/proc/sys/kernel/random/boot_id")
	si.SystemUUID = readTrim("/sys/class/dmi/id/product_uuid")
	mem, err := meminfo()
	if err != nil {
		return si, err
	}
	si.MemoryBytes = mem["MemTotal"]
	var st unix.Statfs_t
	if err := unix.Statfs(existingParent(dataDir), &st); err != nil {
		return si, fmt.Errorf("statfs %s: %w", dataDir, err)
	}
	si.DiskBytes = int64(st.Blocks) * st.Bsize
	return si, nil
}

// ReadStats reads free memory, free disk space under dataDir and the process count.
func ReadStats(dataDir string) (Stats, error) {
	var s Stats
	mem, err := meminfo()
	if err != nil {
		return s, err
	}
	s.MemAvailableBytes = mem["MemAvailable"]
	var st unix.Statfs_t
	if err := unix.Statfs(existingParent(dataDir), &st); err != nil {
		return s, fmt.Errorf("statfs %s: %w", dataDir, err)
	}
	s.DiskAvailBytes = int64(st.Bavail) * st.Bsize
	s.DiskTotalBytes = int64(st.Blocks) * st.Bsize
	// /proc/loadavg's fourth field is "running/total" scheduling entities (threads), which is
	// what pid_max limits.
	if f := strings.Fields(readTrim("/proc/loadavg")); len(f) >= 4 {
		if _, total, ok := strings.Cut(f[3], "/"); ok {
			s.PIDs, _ = strconv.ParseInt(total, 10, 64)
		}
	}
	s.PIDMax, _ = strconv.ParseInt(readTrim("/proc/sys/kernel/pid_max"), 10, 64)
	return s, nil
}

func meminfo() (map[string]int64, error) {
	data, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return nil, fmt.Errorf("reading memory info: %w", err)
	}
	out := map[string]int64{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			continue
		}
		if len(f) > 1 && f[1] == "kB" {
			n *= 1024
		}
		out[k] = n
	}
	return out, nil
}

func osImage(path string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return "Linux"
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "PRETTY_NAME="); ok {
			if uq, err := strconv.Unquote(v); err == nil {
				return uq
			}
			return strings.Trim(v, `"'`)
		}
	}
	return "Linux"
}

func readTrim(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// existingParent is dir or its closest existing ancestor (the data dir may not exist yet).
func existingParent(dir string) string {
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(d); err == nil || d == filepath.Dir(d) {
			return d
		}
	}
}
