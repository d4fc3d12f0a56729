package childproc

import (
	"os/exec"
	"runtime"
	"syscall"
	"testing"
	"time"
)

// startFromDyingThread starts two sleeps from one goroutine whose OS thread Go discards when
// the goroutine returns, as the agent's namespace goroutines do: one with a plain exec.Cmd and a
// parent-death signal, one through Start.
func startFromDyingThread(t *testing.T) (plain, ours *exec.Cmd) {
	t.Helper()
	plain, ours = exec.Command("sleep", "60"), exec.Command("sleep", "60")
	plain.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread exits with this goroutine
		if err := plain.Start(); err != nil {
			errc <- err
			return
		}
		errc <- Start(ours)
	}()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, c := range []*exec.Cmd{plain, ours} {
			if c.Process != nil {
				_ = c.Process.Kill()
			}
		}
	})
	return plain, ours
}

func exited(cmd *exec.Cmd) <-chan struct{} {
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	return done
}

// TestChildOutlivesTheForkingThread shows the hazard with a plain exec.Cmd (its child dies with
// the thread that forked it) and that a child started through Start survives the same. Go does
// not end the main thread (it parks it instead), so a round whose goroutine ran there proves
// nothing and is repeated.
func TestChildOutlivesTheForkingThread(t *testing.T) {
	proved := 0
	for round := 0; round < 5; round++ {
		plain, ours := startFromDyingThread(t)
		oursDone := exited(ours)
		select {
		case <-exited(plain):
		case <-time.After(3 * time.Second):
			continue // the goroutine ran on a thread Go keeps
		}
		select {
		case <-oursDone:
			t.Fatalf("child started with Start died with the goroutine's thread: %v", ours.ProcessState)
		case <-time.After(100 * time.Millisecond):
		}
		if err := ours.Process.Signal(syscall.Signal(0)); err != nil {
			t.Fatalf("child started with Start is gone: %v", err)
		}
		proved++
	}
	if proved == 0 {
		t.Fatal("control: no child forked from an exited thread was killed; the test cannot tell anything")
	}
}

// TestRunReportsExitStatus checks Run waits and returns the child's exit error.
func TestRunReportsExitStatus(t *testing.T) {
	if err := Run(exec.Command("true")); err != nil {
		t.Fatalf("true: %v", err)
	}
	err := Run(exec.Command("sh", "-c", "exit 3"))
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 3 {
		t.Fatalf("exit 3: got %v", err)
	}
	if err := Start(exec.Command("/nonexistent/bosun-test")); err == nil {
		t.Fatal("starting a missing binary succeeded")
	}
}
