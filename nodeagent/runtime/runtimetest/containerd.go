// Package runtimetest starts the real components the runtime's integration tests need — a private
// containerd 1.6 and Debian's docker-registry — each with its own temp root, state dir and socket,
// killed with its process group at cleanup. It also measures raw containerd start latency, the
// ceiling the agent's pod-start benchmark compares against.
package runtimetest

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/containerd"
	"github.com/containerd/containerd/namespaces"
	"golang.org/x/sys/unix"

	"github.com/bosun-gitops/bosun/internal/childproc"
	"github.com/bosun-gitops/bosun/nodeagent/runtime"
)

// SkipUnlessRoot skips t when the test cannot manage containers, naming the reason.
func SkipUnlessRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipping: needs root (containerd, network namespaces, iptables)")
	}
}

// StartContainerd starts a containerd with its own root, state dir and socket and a minimal
// config (CRI disabled) and returns its socket. At cleanup it deletes every task and container
// in every namespace, kills containerd's process group and unmounts what is left under its dirs.
// It skips the test when not root or when containerd or runc is missing.
func StartContainerd(t testing.TB) (socket string) {
	t.Helper()
	SkipUnlessRoot(t)
	bin, err := exec.LookPath("containerd")
	if err != nil {
		t.Skip("skipping: containerd not installed (apt-get install containerd)")
	}
	if _, err := exec.LookPath("runc"); err != nil {
		t.Skip("skipping: runc not installed (apt-get install runc)")
	}
	// Unix socket paths are limited to 108 bytes: keep the dir short instead of t.TempDir().
	dir, err := os.MkdirTemp("/tmp", "ctrd-")
	if err != nil {
		t.Fatalf("creating containerd dir: %v", err)
	}
	socket = filepath.Join(dir, "containerd.sock")
	config := runtime.PrivateContainerdConfig(filepath.Join(dir, "root"), filepath.Join(dir, "state"), socket)
	configPath := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(configPath, []byte(config), 0o644); err != nil {
		t.Fatalf("writing containerd config: %v", err)
	}
	logPath := filepath.Join(dir, "containerd.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatalf("creating containerd log: %v", err)
	}
	cmd := exec.Command(bin, "--config", configPath)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := childproc.Start(cmd); err != nil {
		t.Fatalf("starting containerd: %v", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()

	t.Cleanup(func() {
		cleanupContainers(t, socket)
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-exited
		killShims(t, socket)
		logFile.Close()
		if t.Failed() {
			printTail(t, "containerd", logPath, 60)
		}
		unmountUnder(t, dir)
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("removing containerd dir: %v", err)
		}
	})

	deadline := time.Now().Add(20 * time.Second)
	for {
		select {
		case <-exited:
			printTail(t, "containerd", logPath, 60)
			t.Fatalf("containerd exited at start")
		default:
		}
		if _, err := os.Stat(socket); err == nil {
			c, err := containerd.New(socket, containerd.WithTimeout(2*time.Second))
			if err == nil {
				ok, _ := c.IsServing(context.Background())
				c.Close()
				if ok {
					return socket
				}
			}
		}
		if time.Now().After(deadline) {
			printTail(t, "containerd", logPath, 60)
			t.Fatalf("containerd did not serve on %s within 20s", socket)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// cleanupContainers kills and deletes every task and container so that no shim outlives the test
// (shims run in their own process groups).
func cleanupContainers(t testing.TB, socket string) {
	t.Helper()
	c, err := containerd.New(socket, containerd.WithTimeout(5*time.Second))
	if err != nil {
		t.Logf("cleanup: connecting to containerd: %v", err)
		return
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	nss, err := c.NamespaceService().List(ctx)
	if err != nil {
		t.Logf("cleanup: listing namespaces: %v", err)
		return
	}
	for _, ns := range nss {
		nctx := namespaces.WithNamespace(ctx, ns)
		containers, err := c.Containers(nctx)
		if err != nil {
			t.Logf("cleanup: listing containers in %s: %v", ns, err)
			continue
		}
		for _, ctr := range containers {
			if task, err := ctr.Task(nctx, nil); err == nil {
				if _, err := task.Delete(nctx, containerd.WithProcessKill); err != nil {
					t.Logf("cleanup: deleting task %s: %v", ctr.ID(), err)
				}
			}
			if err := ctr.Delete(nctx, containerd.WithSnapshotCleanup); err != nil {
				t.Logf("cleanup: deleting container %s: %v", ctr.ID(), err)
			}
		}
	}
}

// unmountUnder lazily unmounts every mount point below dir, deepest first.
func unmountUnder(t testing.TB, dir string) {
	t.Helper()
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return
	}
	defer f.Close()
	var points []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 && strings.HasPrefix(fields[4], dir+"/") {
			points = append(points, fields[4])
		}
	}
	for i := len(points) - 1; i >= 0; i-- {
		if err := unix.Unmount(points[i], unix.MNT_DETACH); err != nil {
			t.Logf("cleanup: unmounting %s: %v", points[i], err)
		}
	}
}

// printTail logs the last n lines of a component's log file.
func printTail(t testing.TB, name, path string, n int) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		return
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	t.Logf("%s log (last %d lines):\n%s", name, len(lines), strings.Join(lines, "\n"))
}

// killShims SIGKILLs the shims of the containerd at socket that outlived it, and their
// containers' processes (a container the agent restarted while the cleanup removed the
// others): shims run in sessions of their own, outside containerd's process group.
func killShims(t testing.TB, socket string) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return
	}
	parents := map[int]int{} // pid -> ppid
	shims := map[int]bool{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat")); err == nil {
			// pid (comm) state ppid ...: comm may hold spaces, the last ')' ends it.
			if f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:])); len(f) > 1 {
				parents[pid], _ = strconv.Atoi(f[1])
			}
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && bytes.Contains(cmdline, []byte("containerd-shim")) && bytes.Contains(cmdline, []byte("\x00"+socket+"\x00")) {
			shims[pid] = true
		}
	}
	for pid, ppid := range parents {
		if shims[ppid] {
			_ = syscall.Kill(pid, syscall.SIGKILL) // a container's init: its PID namespace goes with it
		}
	}
	for pid := range shims {
		t.Logf("killed shim %d (and its containers) left by the containerd at %s", pid, socket)
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}
