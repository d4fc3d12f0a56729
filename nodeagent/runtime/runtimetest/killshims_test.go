package runtimetest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestKillShims checks the cleanup's backstop: a process that names itself a shim of the test's
// containerd socket, and its child (a container's process), are killed; another is left alone.
func TestKillShims(t *testing.T) {
	socket := filepath.Join(t.TempDir(), "containerd.sock")
	// start runs a fake shim for sock with a child and returns both pids.
	start := func(sock string) (shim, child int) {
		cmd := exec.Command("/bin/sh", "-c", "sleep 300 & echo $!; wait", "containerd-shim-fake", "-address", sock)
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 32)
		n, _ := out.Read(buf)
		child, err = strconv.Atoi(strings.TrimSpace(string(buf[:n])))
		if err != nil {
			t.Fatalf("child pid %q: %v", buf[:n], err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = syscall.Kill(child, syscall.SIGKILL); _ = cmd.Wait() })
		return cmd.Process.Pid, child
	}
	ours, oursChild := start(socket)
	other, otherChild := start(socket + "-other")
	killShims(t, socket)
	alive := func(pid int) bool {
		stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		return err == nil && !strings.Contains(string(stat), ") Z ")
	}
	deadline := time.Now().Add(10 * time.Second)
	for alive(ours) || alive(oursChild) {
		if time.Now().After(deadline) {
			t.Fatalf("the shim of the test's socket (%d) or its child (%d) still runs", ours, oursChild)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !alive(other) || !alive(otherChild) {
		t.Errorf("the shim of another socket was killed")
	}
}
