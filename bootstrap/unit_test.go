package bootstrap

import (
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if diff := cmp.Diff(string(want), got); diff != "" {
		t.Errorf("%s (-want +got):\n%s", name, diff)
	}
}

func TestRenderUnit(t *testing.T) {
	unit := RenderUnit(DefaultLayout())
	golden(t, "bosun-agent.service", unit)
	for _, want := range []string{
		"ExecStart=/usr/local/bin/bosun agent --config /var/lib/bosun/agent/agent.yaml\n",
		"Restart=always\n",
		"KillMode=process\n", // a restart must not take the containers with it
		"WantedBy=multi-user.target\n",
	} {
		if !strings.Contains(unit, want) {
			t.Errorf("unit lacks %q", want)
		}
	}
}

func TestRenderSupervisor(t *testing.T) {
	golden(t, "supervise.sh", RenderSupervisor(DefaultLayout()))
	if out, err := exec.Command("sh", "-n", "-c", RenderSupervisor(DefaultLayout())).CombinedOutput(); err != nil {
		t.Fatalf("supervisor script does not parse: %v: %s", err, out)
	}
}

// TestSupervisorRestartsAndStops runs the real supervisor script with a fake agent: it starts
// the agent, restarts it when it dies, and on SIGTERM stops it and removes its pid files.
func TestSupervisorRestartsAndStops(t *testing.T) {
	if _, err := exec.LookPath("setsid"); err != nil {
		t.Skip("setsid not installed")
	}
	dir := t.TempDir()
	l := Layout{
		Binary:  filepath.Join(dir, "bin", "bosun"),
		DataDir: filepath.Join(dir, "data"),
		RunDir:  filepath.Join(dir, "run"),
		LogFile: filepath.Join(dir, "agent.log"),
	}
	for _, d := range []string{filepath.Dir(l.Binary), l.DataDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	starts := filepath.Join(dir, "starts")
	fake := "#!/bin/sh\necho \"$@\" >> " + starts + "\nexec sleep 300\n"
	if err := os.WriteFile(l.Binary, []byte(fake), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(l.SupervisorScript(), []byte(RenderSupervisor(l)), 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("setsid", "sh", l.SupervisorScript())
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		if pid, err := readPID(l.AgentPID()); err == nil {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		_ = cmd.Process.Kill()
	})

	first := waitPID(t, l.AgentPID(), 0)
	// The pid file is written when the agent is forked, maybe before it ran its first line.
	if data := waitLines(t, starts, 1); !strings.Contains(data, "agent --config "+l.ConfigFile()) {
		t.Fatalf("agent started with %q, want \"agent --config %s\"", data, l.ConfigFile())
	}
	sup := waitPID(t, l.SupervisorPID(), 0)
	if sup != cmd.Process.Pid {
		t.Errorf("supervisor pid file = %d, want %d", sup, cmd.Process.Pid)
	}

	// The agent dies: the supervisor starts a new one.
	if err := syscall.Kill(first, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	second := waitPID(t, l.AgentPID(), first)
	if n := strings.Count(waitLines(t, starts, 2), "\n"); n != 2 {
		t.Errorf("agent started %d times, want 2", n)
	}
	if log := readFile(t, l.LogFile); !strings.Contains(log, "agent exited with status 137, restarting in 1s") {
		t.Errorf("supervisor log = %q, want the restart reported", log)
	}

	// SIGTERM to the supervisor stops the agent and removes the pid files.
	if err := syscall.Kill(sup, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
	case <-time.After(20 * time.Second):
		t.Fatal("supervisor did not exit on SIGTERM")
	}
	deadline := time.Now().Add(10 * time.Second)
	for syscall.Kill(second, 0) == nil && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if syscall.Kill(second, 0) == nil {
		t.Errorf("agent %d still running after the supervisor stopped", second)
	}
	for _, f := range []string{l.AgentPID(), l.SupervisorPID()} {
		if _, err := os.Stat(f); !os.IsNotExist(err) {
			t.Errorf("%s still exists (err %v)", f, err)
		}
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func readPID(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}

// waitLines waits until the file at path has at least n lines and returns it.
func waitLines(t *testing.T, path string, n int) string {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		b, _ := os.ReadFile(path)
		if strings.Count(string(b), "\n") >= n || time.Now().After(deadline) {
			return string(b)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitPID waits until path holds a live pid other than old.
func waitPID(t *testing.T, path string, old int) int {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if pid, err := readPID(path); err == nil && pid != old && syscall.Kill(pid, 0) == nil {
			return pid
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no new pid in %s", path)
	return 0
}
