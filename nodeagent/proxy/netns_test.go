package proxy

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"

	"golang.org/x/sys/unix"
)

// nsExec runs commands inside a named network namespace with `ip netns exec`.
type nsExec struct{ ns string }

func (e nsExec) Run(ctx context.Context, stdin io.Reader, name string, args ...string) ([]byte, error) {
	return HostExec{}.Run(ctx, stdin, "ip", append([]string{"netns", "exec", e.ns, name}, args...)...)
}

var nsCounter atomic.Int64

// newNetns creates a network namespace with only loopback up (no route out) and deletes it at
// cleanup. It skips the test when namespaces cannot be made here.
func newNetns(t testing.TB) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root for network namespaces")
	}
	name := fmt.Sprintf("bosun-proxy-%d-%d", os.Getpid(), nsCounter.Add(1))
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Skipf("cannot create a network namespace: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("deleting netns %s: %v: %s", name, err, out)
		}
	})
	run(t, "ip", "-n", name, "link", "set", "lo", "up")
	return name
}

func run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// inNetns runs f on an OS thread switched into the namespace; sockets f creates stay there.
func inNetns(t testing.TB, ns string, f func()) {
	t.Helper()
	runtime.LockOSThread()
	orig, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatal(err)
	}
	defer orig.Close()
	target, err := os.Open("/run/netns/" + ns)
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatal(err)
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		t.Fatal(err)
	}
	f()
	if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
		// Leave the thread locked: it dies with this goroutine instead of serving others.
		t.Fatalf("returning to the original netns: %v", err)
	}
	runtime.UnlockOSThread()
}

// backendAvailable reports whether this backend's iptables works in ns.
func backendAvailable(t testing.TB, ns, backend string) bool {
	t.Helper()
	_, err := nsExec{ns}.Run(context.Background(), nil, "iptables-"+backend+"-save", "-t", "nat")
	if err != nil {
		t.Logf("iptables %s backend unavailable: %v", backend, err)
		return false
	}
	return true
}
