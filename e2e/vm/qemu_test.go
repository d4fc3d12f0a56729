//go:build e2evm

package vm_test

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bosun-gitops/bosun/bootstrap"
	"github.com/bosun-gitops/bosun/e2e/e2eutil"
	"github.com/bosun-gitops/bosun/internal/childproc"
)

// guestAPIAddr is where the guest reaches the operator: qemu's user-mode network forwards
// connections to it (guestfwd) to the operator on the host's loopback. The operator advertises
// it (--advertise-address), so it is in the API certificate and in the agent's config.
const guestAPIAddr = "10.0.2.100"

// relayEnv makes the test binary a relay instead of running tests: qemu runs it for each guest
// connection to guestAPIAddr (guestfwd=...-cmd:), with the connection on stdin and stdout.
const relayEnv = "BOSUN_VM_RELAY"

func TestMain(m *testing.M) {
	if addr := os.Getenv(relayEnv); addr != "" {
		os.Exit(relay(addr))
	}
	os.Exit(m.Run())
}

// relay copies stdin to a TCP connection to addr and the connection to stdout until both
// directions end.
func relay(addr string) int {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		fmt.Fprintf(os.Stderr, "vm relay: %v\n", err)
		return 1
	}
	go func() {
		_, _ = io.Copy(conn, os.Stdin)
		_ = conn.(*net.TCPConn).CloseWrite()
	}()
	_, _ = io.Copy(os.Stdout, conn)
	return 0
}

// vm is a qemu process booting the image, in its own process group.
type vm struct {
	cmd     *exec.Cmd
	sshPort int
	serial  string
	done    chan struct{}
	hostKey string
}

// vmConfig is how one VM is started.
type vmConfig struct {
	// AuthorizedKey goes into root's authorized_keys at boot.
	AuthorizedKey string
	// APIPort is the operator's port on 127.0.0.1, reached from the guest at guestAPIAddr:APIPort.
	APIPort int
	// MemoryMB and CPUs size the guest.
	MemoryMB, CPUs int
}

// bootVM starts qemu (-accel tcg) on a throw-away snapshot of the image. The test's cleanup
// kills qemu and its relays, and on failure prints the tail of the serial console.
func bootVM(t *testing.T, img vmImage, cfg vmConfig) *vm {
	t.Helper()
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		t.Skip("qemu-system-x86_64 is missing: apt-get install qemu-system-x86 (make e2e-vm does)")
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	v := &vm{sshPort: e2eutil.FreePort(t, "127.0.0.1"), serial: filepath.Join(dir, "serial.log"), done: make(chan struct{}), hostKey: img.hostKey}
	keys := base64.StdEncoding.EncodeToString([]byte(cfg.AuthorizedKey + "\n"))
	// restrict=on: the guest reaches nothing but the forwards below.
	relayCmd := fmt.Sprintf("env %s=127.0.0.1:%d %s", relayEnv, cfg.APIPort, self)
	netdev := fmt.Sprintf("user,id=net0,restrict=on,hostfwd=tcp:127.0.0.1:%d-:22,guestfwd=tcp:%s:%d-cmd:%s",
		v.sshPort, guestAPIAddr, cfg.APIPort, strings.ReplaceAll(relayCmd, ",", ",,"))
	args := []string{
		"-accel", "tcg", "-cpu", "max", "-smp", fmt.Sprint(cfg.CPUs), "-m", fmt.Sprint(cfg.MemoryMB),
		"-display", "none", "-vga", "none", "-monitor", "none", "-serial", "file:" + v.serial,
		"-kernel", img.kernel(), "-initrd", img.initrd(),
		"-append", "root=/dev/vda rw console=ttyS0 panic=-1 bosun.authorized_keys=" + keys,
		"-drive", "file=" + img.disk() + ",format=raw,if=virtio,snapshot=on",
		"-netdev", netdev, "-device", "virtio-net-pci,netdev=net0,romfile=",
	}
	cmd := exec.Command("qemu-system-x86_64", args...)
	cmd.Env = append(os.Environ(), "TMPDIR="+dir) // the snapshot's overlay
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := os.Create(filepath.Join(dir, "qemu.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = out, out
	if err := childproc.Start(cmd); err != nil {
		t.Fatalf("starting qemu: %v", err)
	}
	v.cmd = cmd
	go func() { _ = cmd.Wait(); out.Close(); close(v.done) }()
	t.Cleanup(func() {
		v.kill()
		if t.Failed() {
			b, _ := os.ReadFile(v.serial)
			t.Logf("VM serial console %s (tail):\n%s", v.serial, e2eutil.Tail(string(b), 60))
			if b, _ := os.ReadFile(out.Name()); len(b) > 0 {
				t.Logf("qemu output:\n%s", e2eutil.Tail(string(b), 20))
			}
		}
	})
	return v
}

// kill ends qemu and the relays it forked (its process group) and waits for qemu.
func (v *vm) kill() {
	select {
	case <-v.done:
		return
	default:
	}
	_ = syscall.Kill(-v.cmd.Process.Pid, syscall.SIGKILL)
	<-v.done
}

// target is how the operator and the test reach the guest's sshd.
func (v *vm) target() bootstrap.Target {
	return bootstrap.Target{Address: "127.0.0.1", Port: v.sshPort, User: "root",
		HostKey: bootstrap.HostKeyPolicy{Pinned: v.hostKey}}
}

// waitSSH dials until the guest's sshd answers with the pinned host key and runs a command.
func (v *vm) waitSSH(t *testing.T, ctx context.Context, d *bootstrap.Dialer) *bootstrap.Client {
	t.Helper()
	var last error
	for {
		select {
		case <-v.done:
			t.Fatalf("qemu exited while booting: %v", v.cmd.ProcessState)
		default:
		}
		c, err := d.Dial(ctx, v.target())
		var mismatch *bootstrap.HostKeyMismatchError
		if errors.As(err, &mismatch) {
			t.Fatalf("the VM's sshd: %v (the image's host_key.pub does not match its disk: remove the image to rebuild it)", err)
		}
		if err == nil {
			if _, err = c.Run(ctx, "true", nil); err == nil {
				return c
			}
			c.Close()
		}
		last = err
		select {
		case <-ctx.Done():
			t.Fatalf("waiting for the VM's sshd on 127.0.0.1:%d: %v; last error: %v", v.sshPort, ctx.Err(), last)
		case <-time.After(time.Second):
		}
	}
}

// waitReboot waits until the guest's sshd answers from a boot other than oldBootID.
func (v *vm) waitReboot(t *testing.T, ctx context.Context, d *bootstrap.Dialer, oldBootID string) *bootstrap.Client {
	t.Helper()
	for {
		c := v.waitSSH(t, ctx, d)
		out, err := c.Run(ctx, "cat /proc/sys/kernel/random/boot_id", nil)
		if err == nil && strings.TrimSpace(string(out)) != oldBootID {
			return c
		}
		c.Close()
		select {
		case <-ctx.Done():
			t.Fatalf("waiting for the VM to reboot: %v", ctx.Err())
		case <-time.After(time.Second):
		}
	}
}
