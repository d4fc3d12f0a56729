package logs

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestTailOffset(t *testing.T) {
	for _, tc := range []struct {
		name, content string
		n             int64
		want          string
	}{
		{"last two", "a\nb\nc\n", 2, "b\nc\n"},
		{"more than there are", "a\nb\n", 5, "a\nb\n"},
		{"no final newline", "a\nb\nc", 1, "c"},
		{"zero", "a\nb\n", 0, ""},
		{"empty file", "", 3, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "0.log")
			if err := os.WriteFile(p, []byte(tc.content), 0o644); err != nil {
				t.Fatal(err)
			}
			f, err := os.Open(p)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			off, err := tailOffset(f, tc.n)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, tc.content[off:]); diff != "" {
				t.Errorf("tail (-want +got):\n%s", diff)
			}
		})
	}
}

// logFixture is a Handler over a temporary log directory with runs 0..n-1 of container "c" of
// pod t/p, whose status the test sets.
type logFixture struct {
	h   *Handler
	dir string
	mu  sync.Mutex
	pod *corev1.Pod
}

func newLogFixture(t *testing.T, runs int) *logFixture {
	t.Helper()
	f := &logFixture{dir: t.TempDir(), pod: &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "t", Name: "p", UID: "uid"}}}
	f.h = NewHandler(Config{
		LogDir:  func(uid, c string) string { return filepath.Join(f.dir, uid, c) },
		LogPath: func(uid, c string, n int32) string { return filepath.Join(f.dir, uid, c, fmt.Sprintf("%d.log", n)) },
		Pods: func(ns, name string) (*corev1.Pod, bool) {
			f.mu.Lock()
			defer f.mu.Unlock()
			return f.pod.DeepCopy(), ns == "t" && name == "p"
		},
		PollInterval: 10 * time.Millisecond,
	})
	if err := os.MkdirAll(filepath.Join(f.dir, "uid", "c"), 0o755); err != nil {
		t.Fatal(err)
	}
	for i := range runs {
		f.write(t, int32(i), fmt.Sprintf("run %d\n", i))
	}
	return f
}

func (f *logFixture) write(t *testing.T, run int32, text string) {
	t.Helper()
	fh, err := os.OpenFile(filepath.Join(f.dir, "uid", "c", fmt.Sprintf("%d.log", run)), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	if _, err := fh.WriteString(text); err != nil {
		t.Fatal(err)
	}
}

// setStatus sets container c's state and last termination (run numbers; -1 = none).
func (f *logFixture) setStatus(state string, run, lastRun int32) {
	id := func(run int32) string { return fmt.Sprintf("containerd://uid-c-%d", run) }
	cs := corev1.ContainerStatus{Name: "c"}
	switch state {
	case "running":
		cs.State.Running = &corev1.ContainerStateRunning{}
		cs.ContainerID = id(run)
	case "terminated":
		cs.State.Terminated = &corev1.ContainerStateTerminated{ContainerID: id(run)}
		cs.ContainerID = id(run)
	case "waiting":
		cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff"}
	}
	if lastRun >= 0 {
		cs.LastTerminationState.Terminated = &corev1.ContainerStateTerminated{ContainerID: id(lastRun)}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pod.Status.ContainerStatuses = []corev1.ContainerStatus{cs}
}

func (f *logFixture) get(ctx context.Context, query string) (int, string) {
	req := httptest.NewRequestWithContext(ctx, http.MethodGet, "/containerLogs/t/p/c?"+query, nil)
	rec := httptest.NewRecorder()
	f.h.mux.ServeHTTP(rec, req)
	return rec.Code, rec.Body.String()
}

// TestPreviousIsTheLastTermination checks that --previous serves the run the container's status
// shows as its last termination, as the kubelet does: during a crash loop's back-off that is the
// latest run, while the container runs again the one before, and a container that never
// restarted has none.
func TestPreviousIsTheLastTermination(t *testing.T) {
	for _, tc := range []struct {
		name          string
		state         string
		run, lastRun  int32
		runs          int
		wantCode      int
		want, current string
	}{
		{"waiting after a crash", "waiting", 0, 2, 3, http.StatusOK, "run 2\n", "run 2\n"},
		{"running again", "running", 2, 1, 3, http.StatusOK, "run 1\n", "run 2\n"},
		{"never restarted", "terminated", 0, -1, 1, http.StatusBadRequest, "", "run 0\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newLogFixture(t, tc.runs)
			f.setStatus(tc.state, tc.run, tc.lastRun)
			code, body := f.get(context.Background(), "previous=true")
			if code != tc.wantCode || (code == http.StatusOK && body != tc.want) {
				t.Errorf("previous: %d %q, want %d %q", code, body, tc.wantCode, tc.want)
			}
			if code, body := f.get(context.Background(), ""); code != http.StatusOK || body != tc.current {
				t.Errorf("current: %d %q, want %q", code, body, tc.current)
			}
		})
	}
}

// TestFollowEndsWhenTheContainerExits checks that a followed log ends, with every line, once the
// container's status says it terminated (kubectl logs -f), and not before.
func TestFollowEndsWhenTheContainerExits(t *testing.T) {
	f := newLogFixture(t, 1)
	f.setStatus("running", 0, -1)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute) // a guard against a hang
	defer cancel()
	type result struct {
		code int
		body string
	}
	done := make(chan result, 1)
	go func() {
		code, body := f.get(ctx, "follow=true")
		done <- result{code, body}
	}()
	time.Sleep(100 * time.Millisecond) // several polls while the container runs
	select {
	case r := <-done:
		t.Fatalf("the follow ended while the container runs: %d %q", r.code, r.body)
	default:
	}
	f.write(t, 0, "last words\n")
	f.setStatus("terminated", 0, -1)
	select {
	case r := <-done:
		if r.code != http.StatusOK || r.body != "run 0\nlast words\n" {
			t.Errorf("followed log: %d %q, want every line", r.code, r.body)
		}
	case <-ctx.Done():
		t.Fatal("the follow did not end after the container terminated")
	}

	// A container that has already exited: the log, then the end.
	code, body := f.get(ctx, "follow=true")
	if code != http.StatusOK || body != "run 0\nlast words\n" {
		t.Errorf("following an exited container: %d %q", code, body)
	}
}

// TestFollowGoesOnAfterRotation checks that a followed log goes on across a rotation (a copy to
// <file>.1, then the file emptied in place, the writer appending at its new end): the lines not
// read yet from the copy, then the file from its new start.
func TestFollowGoesOnAfterRotation(t *testing.T) {
	f := newLogFixture(t, 1)
	f.setStatus("running", 0, -1)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute) // a guard against a hang
	defer cancel()
	done := make(chan string, 1)
	go func() {
		_, body := f.get(ctx, "follow=true")
		done <- body
	}()
	f.write(t, 0, "before the rotation, a longer line\n")
	time.Sleep(100 * time.Millisecond) // several polls: the follower has read it
	// Lines the follower has not read yet (it polls every 10 ms), then the rotation as the
	// agent does it: a copy to 0.log.1, then the file emptied in place.
	path := filepath.Join(f.dir, "uid", "c", "0.log")
	f.write(t, 0, "unread 1\nunread 2\n")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path+".1", data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	f.write(t, 0, "after\n")
	time.Sleep(100 * time.Millisecond)
	f.setStatus("terminated", 0, -1)
	select {
	case body := <-done:
		if want := "run 0\nbefore the rotation, a longer line\nunread 1\nunread 2\nafter\n"; body != want {
			t.Errorf("followed log across a rotation: %q, want %q", body, want)
		}
	case <-ctx.Done():
		t.Fatal("the follow did not end after the container terminated")
	}
}
