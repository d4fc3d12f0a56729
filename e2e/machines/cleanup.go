package machines

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// ownerFile records which process owns a lab, so that CleanupStale leaves running labs alone.
const ownerFile = "owner"

func writeOwner(dir string) error {
	st, err := processStart(os.Getpid())
	if err != nil {
		return err
	}
	data := fmt.Sprintf("%d %s\n", os.Getpid(), st)
	if err := os.WriteFile(filepath.Join(dir, ownerFile), []byte(data), 0o644); err != nil {
		return fmt.Errorf("writing lab owner: %w", err)
	}
	return nil
}

// processStart is the process's start time in clock ticks since boot (field 22 of stat), which
// tells a live owner from a recycled PID.
func processStart(pid int) (string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "", err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return "", fmt.Errorf("parsing /proc/%d/stat", pid)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 {
		return "", fmt.Errorf("parsing /proc/%d/stat", pid)
	}
	return f[19], nil
}

// ownerAlive reports whether the process that created the lab in dir still runs.
func ownerAlive(dir string) bool {
	b, err := os.ReadFile(filepath.Join(dir, ownerFile))
	if err != nil {
		return false
	}
	var pid int
	var start string
	if _, err := fmt.Sscan(string(b), &pid, &start); err != nil {
		return false
	}
	st, err := processStart(pid)
	return err == nil && st == start
}

// CleanupStale removes what labs of processes that no longer run left behind (a crashed or
// killed test): their processes, namespaces, host links and directories. Labs whose owner is
// alive are left alone, so it is safe while other tests run. It returns the IDs it cleaned.
func CleanupStale() ([]string, error) {
	ids := map[string]bool{}
	if ents, err := os.ReadDir("/run/netns"); err == nil {
		for _, e := range ents {
			if id, ok := labID(e.Name()); ok {
				ids[id] = true
			}
		}
	}
	if dirs, err := filepath.Glob(filepath.Join(os.TempDir(), namePrefix+"*")); err == nil {
		for _, d := range dirs {
			if id, ok := labID(filepath.Base(d)); ok {
				ids[id] = true
			}
		}
	}
	if out, err := exec.Command("ip", "-o", "link", "show").Output(); err == nil {
		for _, line := range strings.Split(string(out), "\n") {
			f := strings.Fields(line)
			if len(f) < 2 {
				continue
			}
			name, _, _ := strings.Cut(strings.TrimSuffix(f[1], ":"), "@")
			if strings.HasPrefix(name, "bl") && strings.HasSuffix(name, "h") && len(name) == 9 {
				ids[name[2:8]] = true
			}
		}
	}
	var cleaned []string
	var errs []error
	for id := range ids {
		dir := filepath.Join(os.TempDir(), namePrefix+id)
		if ownerAlive(dir) {
			continue
		}
		if err := removeLab(id, dir); err != nil {
			errs = append(errs, fmt.Errorf("lab %s: %w", id, err))
		}
		cleaned = append(cleaned, id)
	}
	return cleaned, errors.Join(errs...)
}

// labID extracts the lab ID from a namespace or directory name.
func labID(name string) (string, bool) {
	rest, ok := strings.CutPrefix(name, namePrefix)
	if !ok || len(rest) < 6 {
		return "", false
	}
	id := rest[:6]
	for _, c := range id {
		if !strings.ContainsRune("0123456789abcdef", c) {
			return "", false
		}
	}
	if len(rest) > 6 && rest[6] != '-' {
		return "", false
	}
	return id, true
}

// removeLab kills every process in the lab's namespaces, deletes the namespaces and the host
// link, and removes the directory. "Already gone" is success.
func removeLab(id, dir string) error {
	var errs []error
	ents, _ := os.ReadDir("/run/netns")
	var nss []string
	for _, e := range ents {
		if got, ok := labID(e.Name()); ok && got == id {
			nss = append(nss, e.Name())
		}
	}
	for _, ns := range nss {
		if err := killNetNSProcesses(netnsPath(ns)); err != nil {
			errs = append(errs, err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, ns := range nss {
		if err := ip(ctx, "netns", "delete", ns); err != nil && !isGone(err) {
			errs = append(errs, err)
		}
	}
	if err := waitNetNSUnmounted(nss); err != nil {
		errs = append(errs, err)
	}
	if err := ip(ctx, "link", "delete", hostLinkName(id)); err != nil && !isGone(err) {
		errs = append(errs, err)
	}
	if err := removeDir(dir); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// waitNetNSUnmounted waits until the host's namespace mounts of the deleted namespaces are gone:
// a machine's mount namespace that is still being torn down holds copies of them for a moment.
// Whatever remains after that is detached.
func waitNetNSUnmounted(nss []string) error {
	deadline := time.Now().Add(5 * time.Second)
	for {
		var left []string
		b, err := os.ReadFile("/proc/self/mountinfo")
		if err != nil {
			return fmt.Errorf("reading mountinfo: %w", err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			f := strings.Fields(line)
			for _, ns := range nss {
				if len(f) > 4 && f[4] == netnsPath(ns) {
					left = append(left, f[4])
				}
			}
		}
		if len(left) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			var errs []error
			for _, p := range left {
				if err := syscall.Unmount(p, syscall.MNT_DETACH); err != nil {
					errs = append(errs, fmt.Errorf("detaching %s: %w", p, err))
				}
				_ = os.Remove(p)
			}
			return errors.Join(errs...)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func isGone(err error) bool {
	s := err.Error()
	return strings.Contains(s, "No such file") || strings.Contains(s, "Cannot find device") ||
		strings.Contains(s, "does not exist")
}

// removeDir removes a lab directory. Mounts in it (a machine's cgroup bind, made in the
// machine's own mount namespace) are gone with the machine; a leftover in the host's namespace
// would be a bug, so it is detached rather than followed.
func removeDir(dir string) error {
	if b, err := os.ReadFile("/proc/self/mountinfo"); err == nil {
		var mounts []string
		for _, line := range strings.Split(string(b), "\n") {
			f := strings.Fields(line)
			if len(f) > 4 && (f[4] == dir || strings.HasPrefix(f[4], dir+"/")) {
				mounts = append(mounts, f[4])
			}
		}
		for i := len(mounts) - 1; i >= 0; i-- {
			_ = syscall.Unmount(mounts[i], syscall.MNT_DETACH)
		}
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("removing %s: %w", dir, err)
	}
	return nil
}

// killNetNSProcesses SIGKILLs every process whose network namespace is the one at nsPath and
// waits until they are gone. Killing a machine's PID 1 takes its whole PID namespace down.
func killNetNSProcesses(nsPath string) error {
	var st syscall.Stat_t
	if err := syscall.Stat(nsPath, &st); err != nil {
		if os.IsNotExist(err) {
			return nil
		}
		return fmt.Errorf("stat %s: %w", nsPath, err)
	}
	want := fmt.Sprintf("net:[%d]", st.Ino)
	deadline := time.Now().Add(15 * time.Second)
	// A dying process leaves its namespaces before it is reaped (PID 1 of a PID namespace even
	// waits for all the others), so wait for every process seen to be gone, not just for the
	// namespace to look empty.
	seen := map[int]bool{}
	for {
		for _, pid := range pidsInNetNS(want) {
			seen[pid] = true
		}
		var left []int
		for pid := range seen {
			if running(pid) {
				left = append(left, pid)
			}
		}
		if len(left) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("processes %v in %s do not die", left, nsPath)
		}
		for _, pid := range left {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// running reports whether pid exists and is not a zombie.
func running(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	return !strings.HasPrefix(strings.TrimSpace(s[strings.LastIndexByte(s, ')')+1:]), "Z")
}

func pidsInNetNS(want string) []int {
	ents, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		link, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", pid))
		if err != nil || link != want {
			continue
		}
		pids = append(pids, pid)
	}
	return pids
}
