package runtime_test

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/bosun-gitops/bosun/internal/testutil/images"
	"github.com/bosun-gitops/bosun/nodeagent/pods"
	"github.com/bosun-gitops/bosun/nodeagent/runtime"
	"github.com/bosun-gitops/bosun/nodeagent/runtime/runtimetest"
)

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func newRuntime(t testing.TB, socket string, cfg runtime.Config) *runtime.Runtime {
	t.Helper()
	cfg.Address = socket
	cfg.Logger = testLogger(t)
	r, err := runtime.New(context.Background(), cfg)
	if err != nil {
		t.Fatalf("runtime.New: %v", err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// withImage starts containerd, imports the busybox image and returns a runtime and the image ref.
func withImage(t *testing.T) (r *runtime.Runtime, socket, ref string) {
	t.Helper()
	socket = runtimetest.StartContainerd(t)
	dir := t.TempDir()
	_, ref = images.Busybox(t, dir, "busybox")
	r = newRuntime(t, socket, runtime.Config{ImportDir: dir})
	return r, socket, ref
}

func TestPullFromRegistry(t *testing.T) {
	socket := runtimetest.StartContainerd(t)
	host := runtimetest.StartRegistry(t)
	img, err := images.BuildBusybox("unused")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := runtimetest.Push(ctx, host, "bosun/busybox", "v1", img, nil); err != nil {
		t.Fatalf("push: %v", err)
	}
	r := newRuntime(t, socket, runtime.Config{Registry: runtime.RegistryConfig{
		PlainHTTP: []string{host},
		Mirrors:   map[string][]string{"mirror.invalid": {"http://" + host}},
	}})

	var lines []string
	info, err := r.EnsureImage(ctx, host+"/bosun/busybox:v1", pods.PullIfNotPresent, nil, func(l string) { lines = append(lines, l) })
	if err != nil {
		t.Fatalf("EnsureImage: %v", err)
	}
	t.Logf("progress:\n%s", strings.Join(lines, "\n"))
	if diff := cmp.Diff(images.DefaultCmd(), info.Cmd); diff != "" {
		t.Errorf("image Cmd (-want +got):\n%s", diff)
	}
	if info.Digest != img.Manifest.Digest {
		t.Errorf("digest = %s, want %s", info.Digest, img.Manifest.Digest)
	}
	wantLayer := "layer " + img.Layer.Digest[:len("sha256:")+12]
	if !containsLine(lines, wantLayer, "done") {
		t.Errorf("progress has no line with %q and byte counts", wantLayer)
	}

	t.Run("unknown tag carries the registry's message", func(t *testing.T) {
		_, err := r.EnsureImage(ctx, host+"/bosun/busybox:nope", pods.PullIfNotPresent, nil, nil)
		if err == nil || !strings.Contains(err.Error(), "MANIFEST_UNKNOWN") {
			t.Fatalf("err = %v, want the registry's MANIFEST_UNKNOWN", err)
		}
	})
	t.Run("never pulls", func(t *testing.T) {
		_, err := r.EnsureImage(ctx, host+"/bosun/other:v1", pods.PullNever, nil, nil)
		if !errors.Is(err, runtime.ErrImageNotPresent) {
			t.Fatalf("err = %v, want ErrImageNotPresent", err)
		}
	})
	t.Run("always pulls again", func(t *testing.T) {
		var lines []string
		if _, err := r.EnsureImage(ctx, host+"/bosun/busybox:v1", pods.PullAlways, nil, func(l string) { lines = append(lines, l) }); err != nil {
			t.Fatal(err)
		}
		if !containsLine(lines, "pulled ") {
			t.Errorf("PullAlways did not pull: %q", lines)
		}
	})
	t.Run("mirror", func(t *testing.T) {
		info, err := r.EnsureImage(ctx, "mirror.invalid/bosun/busybox:v1", pods.PullIfNotPresent, nil, nil)
		if err != nil {
			t.Fatalf("pull through mirror: %v", err)
		}
		if info.Digest != img.Manifest.Digest {
			t.Errorf("digest = %s, want %s", info.Digest, img.Manifest.Digest)
		}
	})
}

func TestPullWithCredentials(t *testing.T) {
	socket := runtimetest.StartContainerd(t)
	host := runtimetest.StartRegistry(t, runtimetest.WithBasicAuth("alice", "s3cret"))
	img, err := images.BuildBusybox("unused")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := runtimetest.Push(ctx, host, "private/busybox", "v1", img, &runtimetest.Credentials{Username: "alice", Password: "s3cret"}); err != nil {
		t.Fatalf("push: %v", err)
	}
	r := newRuntime(t, socket, runtime.Config{Registry: runtime.RegistryConfig{PlainHTTP: []string{host}}})
	ref := host + "/private/busybox:v1"
	_, err = r.EnsureImage(ctx, ref, pods.PullIfNotPresent, nil, nil)
	if err == nil || !strings.Contains(err.Error(), "UNAUTHORIZED") {
		t.Errorf("anonymous pull: err = %v, want the registry's UNAUTHORIZED", err)
	}
	_, err = r.EnsureImage(ctx, ref, pods.PullIfNotPresent, []pods.RegistryAuth{{Host: host, Username: "alice", Password: "s3cret"}}, nil)
	if err != nil {
		t.Errorf("pull with imagePullSecret credentials: %v", err)
	}
}

func TestImportDir(t *testing.T) {
	r, socket, ref := withImage(t)
	ctx := context.Background()
	info, err := r.EnsureImage(ctx, ref, pods.PullNever, nil, nil)
	if err != nil {
		t.Fatalf("imported image: %v", err)
	}
	if info.Ref != ref {
		t.Errorf("Ref = %q, want %q", info.Ref, ref)
	}
	// A second start imports the same archives again without harm.
	if err := r.ImportDir(ctx); err != nil {
		t.Fatalf("second import: %v", err)
	}
	_ = socket
}

func containsLine(lines []string, subs ...string) bool {
	for _, l := range lines {
		ok := true
		for _, s := range subs {
			ok = ok && strings.Contains(l, s)
		}
		if ok {
			return true
		}
	}
	return false
}

// podSpec is a container spec for the busybox image with its log under dir.
func podSpec(dir, ref, name string, args ...string) pods.ContainerSpec {
	return pods.ContainerSpec{
		ID:    "pod1-" + name + "-0",
		Image: ref,
		Labels: map[string]string{
			pods.LabelPodUID: "pod1", pods.LabelPodName: "web", pods.LabelPodNamespace: "default",
			pods.LabelContainerName: name, pods.LabelRestartCount: "0",
		},
		Args:    args,
		LogPath: pods.LogPath(dir, "pod1", name, 0),
	}
}

// run creates and starts spec and waits for its exit event.
func runToExit(t *testing.T, r *runtime.Runtime, spec pods.ContainerSpec) pods.ContainerStatus {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	events, err := r.Events(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.CreateContainer(ctx, spec); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.RemoveContainer(context.Background(), spec.ID) })
	if _, err := r.StartContainer(ctx, spec.ID); err != nil {
		t.Fatal(err)
	}
	for {
		select {
		case ev, ok := <-events:
			if !ok {
				t.Fatal("event channel closed")
			}
			if ev.ID != spec.ID {
				continue
			}
			st, err := r.ContainerStatus(ctx, spec.ID)
			if err != nil {
				t.Fatal(err)
			}
			if st.ExitCode != ev.ExitCode {
				t.Errorf("event exit code %d, status exit code %d", ev.ExitCode, st.ExitCode)
			}
			return st
		case <-ctx.Done():
			t.Fatalf("no exit event for %s", spec.ID)
		}
	}
}

func TestContainerRunsWithEnvMountsAndLogs(t *testing.T) {
	r, _, ref := withImage(t)
	dir := t.TempDir()
	hostDir := filepath.Join(dir, "data")
	if err := os.MkdirAll(hostDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(hostDir, "file"), []byte("from-the-host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	spec := podSpec(dir, ref, "app", "sh", "-c", `echo hello; echo "FOO=$FOO"; cat /data/file; hostname; pwd; echo out 2>/dev/null > /data/new || echo read-only; exit 3`)
	spec.Env = []string{"FOO=bar"}
	spec.Hostname = "web-pod"
	spec.WorkingDir = "/tmp"
	spec.Mounts = []pods.Mount{{HostPath: hostDir, ContainerPath: "/data", ReadOnly: true}}
	st := runToExit(t, r, spec)

	got := struct {
		State    pods.ContainerState
		ExitCode int32
		Reason   string
		OOM      bool
	}{st.State, st.ExitCode, st.Reason, st.OOMKilled}
	want := got
	want.State, want.ExitCode, want.Reason, want.OOM = pods.StateExited, 3, "Error", false
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("status (-want +got):\n%s", diff)
	}
	if st.FinishedAt.IsZero() || st.StartedAt.IsZero() {
		t.Errorf("times not set: started %v finished %v", st.StartedAt, st.FinishedAt)
	}
	if st.Labels[pods.LabelPodUID] != "pod1" || st.ImageID == "" {
		t.Errorf("labels %v image id %q", st.Labels, st.ImageID)
	}
	log, err := os.ReadFile(spec.LogPath)
	if err != nil {
		t.Fatal(err)
	}
	wantLog := "hello\nFOO=bar\nfrom-the-host\nweb-pod\n/tmp\nread-only\n"
	if diff := cmp.Diff(wantLog, string(log)); diff != "" {
		t.Errorf("log (-want +got):\n%s", diff)
	}
}

func TestOOMKillDetected(t *testing.T) {
	r, _, ref := withImage(t)
	spec := podSpec(t.TempDir(), ref, "hog", "dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1")
	spec.Resources.MemoryLimitBytes = 8 << 20
	st := runToExit(t, r, spec)
	if !st.OOMKilled || st.Reason != "OOMKilled" || st.ExitCode != 137 {
		t.Errorf("status = %+v, want OOMKilled with exit code 137", st)
	}
}

func TestCompletedContainer(t *testing.T) {
	r, _, ref := withImage(t)
	spec := podSpec(t.TempDir(), ref, "ok", "true")
	spec.Resources = pods.Resources{MemoryLimitBytes: 64 << 20, CPUShares: 512, CPUQuota: 50000, CPUPeriod: 100000}
	st := runToExit(t, r, spec)
	if st.ExitCode != 0 || st.Reason != "Completed" || st.OOMKilled {
		t.Errorf("status = %+v, want Completed", st)
	}
}

// startAndWaitForLog starts spec and waits until its log contains marker.
func startAndWaitForLog(t *testing.T, r *runtime.Runtime, spec pods.ContainerSpec, marker string) {
	t.Helper()
	ctx := context.Background()
	if err := r.CreateContainer(ctx, spec); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.RemoveContainer(context.Background(), spec.ID) })
	if _, err := r.StartContainer(ctx, spec.ID); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		data, _ := os.ReadFile(spec.LogPath)
		if strings.Contains(string(data), marker) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("container %s never logged %q; log: %q", spec.ID, marker, data)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestStop(t *testing.T) {
	r, _, ref := withImage(t)
	ctx := context.Background()
	tests := []struct {
		name     string
		script   string
		grace    time.Duration
		wantCode int32
	}{
		{"graceful on SIGTERM", `trap 'echo term; exit 0' TERM; echo ready; while true; do sleep 0.1; done`, 30 * time.Second, 0},
		{"SIGKILL after grace", `trap 'echo ignored' TERM; echo ready; while true; do sleep 0.1; done`, 500 * time.Millisecond, 137},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := podSpec(t.TempDir(), ref, "stop"+string(rune('a'+i)), "sh", "-c", tt.script)
			startAndWaitForLog(t, r, spec, "ready")
			if err := r.StopContainer(ctx, spec.ID, tt.grace); err != nil {
				t.Fatalf("StopContainer: %v", err)
			}
			st, err := r.ContainerStatus(ctx, spec.ID)
			if err != nil {
				t.Fatal(err)
			}
			if st.State != pods.StateExited || st.ExitCode != tt.wantCode {
				t.Errorf("after stop: state %s exit %d, want Exited %d", st.State, st.ExitCode, tt.wantCode)
			}
			// Stopping again, removing twice: all succeed.
			if err := r.StopContainer(ctx, spec.ID, tt.grace); err != nil {
				t.Errorf("second stop: %v", err)
			}
			for range 2 {
				if err := r.RemoveContainer(ctx, spec.ID); err != nil {
					t.Errorf("remove: %v", err)
				}
			}
			if _, err := r.ContainerStatus(ctx, spec.ID); err == nil {
				t.Errorf("status after remove: no error")
			}
		})
	}
}

// TestCreatedContainer checks a container created but not started: its process is set up (a
// task in containerd) and waits; stopping it does not wait for a grace period (runc's init
// ignores SIGTERM) and leaves it startable no more than before; a new Runtime adopts it as
// Created and starts it; the status StartContainer returns is the one read back.
func TestCreatedContainer(t *testing.T) {
	r, socket, ref := withImage(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	stopped := podSpec(t.TempDir(), ref, "created-stop", "sleep", "3600")
	if err := r.CreateContainer(ctx, stopped); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.RemoveContainer(context.Background(), stopped.ID) })
	if st, err := r.ContainerStatus(ctx, stopped.ID); err != nil || st.State != pods.StateCreated || st.Pid == 0 {
		t.Fatalf("created container: status %+v, %v; want Created with runc's init process", st, err)
	}
	// A grace period of an hour: waiting for it would end at the context's deadline instead.
	if err := r.StopContainer(ctx, stopped.ID, time.Hour); err != nil {
		t.Fatalf("stopping a created container: %v", err)
	}
	if st, err := r.ContainerStatus(ctx, stopped.ID); err != nil || st.State != pods.StateCreated || st.Pid != 0 {
		t.Errorf("after stop: status %+v, %v; want Created without a process", st, err)
	}
	if err := r.RemoveContainer(ctx, stopped.ID); err != nil {
		t.Fatal(err)
	}

	adopted := podSpec(t.TempDir(), ref, "created-adopt", "sh", "-c", "echo ready; exec sleep 3600")
	if err := r.CreateContainer(ctx, adopted); err != nil {
		t.Fatal(err)
	}
	r2 := newRuntime(t, socket, runtime.Config{})
	t.Cleanup(func() { _ = r2.RemoveContainer(context.Background(), adopted.ID) })
	list, err := r2.ListContainers(ctx)
	if err != nil || len(list) != 1 || list[0].State != pods.StateCreated {
		t.Fatalf("ListContainers = %+v, %v; want the created container", list, err)
	}
	got, err := r2.StartContainer(ctx, adopted.ID)
	if err != nil {
		t.Fatal(err)
	}
	want, err := r2.ContainerStatus(ctx, adopted.ID)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" || got.State != pods.StateRunning {
		t.Errorf("StartContainer's status (-read back +returned):\n%s", diff)
	}
	fresh := podSpec(t.TempDir(), ref, "created-fresh", "sh", "-c", "echo ready; exec sleep 3600")
	if err := r2.CreateContainer(ctx, fresh); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r2.RemoveContainer(context.Background(), fresh.ID) })
	got, err = r2.StartContainer(ctx, fresh.ID)
	if err != nil {
		t.Fatal(err)
	}
	if want, err = r2.ContainerStatus(ctx, fresh.ID); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" || got.State != pods.StateRunning || got.ImageID == "" {
		t.Errorf("StartContainer's status (-read back +returned):\n%s", diff)
	}
}

// TestLogFileTruncatedInPlace checks what the agent's log rotation (copy, then truncate in
// place) relies on: the shim appends to the container's log file, so after a truncation it
// writes from the file's new start, without a hole of NUL bytes where the old content was.
func TestLogFileTruncatedInPlace(t *testing.T) {
	r, _, ref := withImage(t)
	spec := podSpec(t.TempDir(), ref, "chatty", "sh", "-c", "echo ready; i=0; while true; do i=$((i+1)); echo line $i; sleep 0.02; done")
	startAndWaitForLog(t, r, spec, "line 20")
	if err := os.Truncate(spec.LogPath, 0); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		data, err := os.ReadFile(spec.LogPath)
		if err != nil {
			t.Fatal(err)
		}
		if len(data) > 0 && strings.Count(string(data), "\n") >= 5 {
			if data[0] == 0 || !strings.HasPrefix(string(data), "line ") || strings.Contains(string(data), "ready") {
				t.Fatalf("log after truncation starts %q: the shim does not append", data[:min(len(data), 40)])
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("nothing written after the truncation: %q", data)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestStartErrorFromRuncCreate checks that what runc's create refuses (here a file mounted
// over a directory) comes back from StartContainer, as the kubelet's start errors do (the
// restart policy applies), and not from CreateContainer.
func TestStartErrorFromRuncCreate(t *testing.T) {
	r, _, ref := withImage(t)
	ctx := context.Background()
	file := filepath.Join(t.TempDir(), "a-file")
	if err := os.WriteFile(file, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	spec := podSpec(t.TempDir(), ref, "badmount", "sleep", "3600")
	spec.Mounts = append(spec.Mounts, pods.Mount{HostPath: file, ContainerPath: "/etc", ReadOnly: true})
	if err := r.CreateContainer(ctx, spec); err != nil {
		t.Fatalf("CreateContainer: %v; want runc's refusal from StartContainer", err)
	}
	t.Cleanup(func() { _ = r.RemoveContainer(context.Background(), spec.ID) })
	if _, err := r.StartContainer(ctx, spec.ID); err == nil {
		t.Fatal("StartContainer with a file mounted over /etc: no error")
	}
	if st, err := r.ContainerStatus(ctx, spec.ID); err != nil || st.State == pods.StateRunning {
		t.Errorf("status after the failed start: %+v, %v", st, err)
	}
}

func TestExec(t *testing.T) {
	r, _, ref := withImage(t)
	spec := podSpec(t.TempDir(), ref, "exec", "sh", "-c", "echo ready; exec sleep 3600")
	startAndWaitForLog(t, r, spec, "ready")
	ctx := context.Background()
	code, out, err := r.Exec(ctx, spec.ID, []string{"sh", "-c", "echo hi; exit 4"}, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if code != 4 || string(out) != "hi\n" {
		t.Errorf("exec = %d %q, want 4 \"hi\\n\"", code, out)
	}
	_, _, err = r.Exec(ctx, spec.ID, []string{"sleep", "10"}, 300*time.Millisecond)
	if err == nil {
		t.Errorf("exec past its timeout: no error")
	}
	// An exec exit is not a container exit: the container still runs.
	st, err := r.ContainerStatus(ctx, spec.ID)
	if err != nil || st.State != pods.StateRunning {
		t.Errorf("status after exec = %+v, %v; want Running", st, err)
	}
}

func TestAdoptionByNewRuntime(t *testing.T) {
	r1, socket, ref := withImage(t)
	spec := podSpec(t.TempDir(), ref, "long", "sh", "-c", "echo ready; exec sleep 3600")
	startAndWaitForLog(t, r1, spec, "ready")
	ctx := context.Background()
	before, err := r1.ContainerStatus(ctx, spec.ID)
	if err != nil {
		t.Fatal(err)
	}
	if err := r1.Close(); err != nil {
		t.Fatal(err)
	}

	r2 := newRuntime(t, socket, runtime.Config{})
	list, err := r2.ListContainers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 {
		t.Fatalf("ListContainers = %+v, want the one container", list)
	}
	got := list[0]
	if got.ID != spec.ID || got.State != pods.StateRunning || got.Pid != before.Pid || !got.StartedAt.Equal(before.StartedAt) {
		t.Errorf("adopted %+v, want running %s pid %d started %v", got, spec.ID, before.Pid, before.StartedAt)
	}
	if err := r2.StopContainer(ctx, spec.ID, 5*time.Second); err != nil {
		t.Fatal(err)
	}
}

// TestNormalizeRef checks Docker's reference defaults and that an unparsable reference is an
// ErrInvalidImageName, which the pod reports as InvalidImageName.
func TestNormalizeRef(t *testing.T) {
	for ref, want := range map[string]string{
		"busybox":                   "docker.io/library/busybox:latest",
		"registry.test:5000/a/b:v1": "registry.test:5000/a/b:v1",
	} {
		if got, err := runtime.NormalizeRef(ref); err != nil || got != want {
			t.Errorf("NormalizeRef(%q) = %q, %v; want %q", ref, got, err, want)
		}
	}
	for _, ref := range []string{"registry.test/UPPER:1", "a b", ""} {
		if _, err := runtime.NormalizeRef(ref); !errors.Is(err, pods.ErrInvalidImageName) {
			t.Errorf("NormalizeRef(%q): %v, want ErrInvalidImageName", ref, err)
		}
	}
}
