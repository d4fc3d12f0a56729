package nodeagent_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bosun-gitops/bosun/internal/testutil/images"
	"github.com/bosun-gitops/bosun/nodeagent"
	"github.com/bosun-gitops/bosun/nodeagent/pods"
	"github.com/bosun-gitops/bosun/nodeagent/runtime"
	"github.com/bosun-gitops/bosun/nodeagent/runtime/runtimetest"
)

// TestShutdownStopsPods runs the graceful node shutdown against real containerd: outside a
// system shutdown it leaves the pods alone (an agent restart must not stop them); when asked, it
// stops a container that exits on SIGTERM and one that ignores it (SIGKILL after the grace
// period), and reports both.
func TestShutdownStopsPods(t *testing.T) {
	socket := runtimetest.StartContainerd(t)
	imgDir := t.TempDir()
	_, ref := images.Busybox(t, imgDir, "busybox")
	ctx := context.Background()
	rt, err := runtime.New(ctx, runtime.Config{Address: socket, ImportDir: imgDir})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	logDir := t.TempDir()
	specs := map[string]string{
		"polite":   "trap 'exit 0' TERM; sleep 3600 & wait",
		"stubborn": "trap '' TERM; while true; do sleep 1; done",
	}
	for name, script := range specs {
		s := pods.ContainerSpec{
			ID: "shutdown-" + name, Image: ref, Args: []string{"sh", "-c", script},
			Labels:  map[string]string{pods.LabelPodUID: "uid-" + name, pods.LabelPodNamespace: "t", pods.LabelPodName: name, pods.LabelContainerName: "c"},
			LogPath: pods.LogPath(logDir, "uid-"+name, "c", 0),
		}
		if err := rt.CreateContainer(ctx, s); err != nil {
			t.Fatal(err)
		}
		if _, err := rt.StartContainer(ctx, s.ID); err != nil {
			t.Fatal(err)
		}
	}
	running := func() int {
		t.Helper()
		list, err := rt.ListContainers(ctx)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, c := range list {
			if c.State == pods.StateRunning {
				n++
			}
		}
		return n
	}
	cfg := nodeagent.Config{ContainerdSocket: socket, DataDir: t.TempDir()}
	report := filepath.Join(cfg.DataDir, nodeagent.ShutdownReportFile)

	// This machine is not shutting down (no systemd here): nothing happens.
	if err := nodeagent.Shutdown(ctx, cfg, nodeagent.ShutdownOptions{GracePeriod: time.Second}); err != nil {
		t.Fatal(err)
	}
	if n := running(); n != 2 {
		t.Fatalf("%d containers running after a stop that was not a shutdown, want 2", n)
	}
	if _, err := os.Stat(report); !os.IsNotExist(err) {
		t.Errorf("a shutdown report was written although nothing was stopped: %v", err)
	}

	if err := nodeagent.Shutdown(ctx, cfg, nodeagent.ShutdownOptions{Always: true, GracePeriod: 2 * time.Second}); err != nil {
		t.Fatal(err)
	}
	if n := running(); n != 0 {
		t.Errorf("%d containers still running after the shutdown", n)
	}
	b, err := os.ReadFile(report)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"stopped 2 containers", "t/polite/c", "t/stubborn/c"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("shutdown report %q lacks %q", b, want)
		}
	}
	st, _ := rt.ContainerStatus(ctx, "shutdown-polite")
	if st.ExitCode != 0 {
		t.Errorf("the container that handles SIGTERM exited with %d (%s), want 0", st.ExitCode, st.Reason)
	}
	st, _ = rt.ContainerStatus(ctx, "shutdown-stubborn")
	if st.ExitCode != 137 {
		t.Errorf("the container that ignores SIGTERM exited with %d (%s), want 137 (SIGKILL after the grace period)", st.ExitCode, st.Reason)
	}
}
