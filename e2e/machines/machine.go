package machines

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/bosun-gitops/bosun/internal/childproc"
)

// Machine is one namespace machine.
type Machine struct {
	lab   *Lab
	index int
	name  string
	netns string
	addr  netip.Addr
	dir   string

	anchor  *exec.Cmd // the unshare process outside the machine's namespaces
	exited  chan struct{}
	pid1    int // the machine's PID 1, as seen from the host
	hostKey string

	mu    sync.Mutex
	procs []*Process
	seq   int
}

// overlays are the host directories a machine sees through a copy-on-write overlay: the host's
// software and configuration, with the machine's changes kept in its own upper directory.
var overlays = []string{"etc", "usr", "var", "opt"}

// privateDirs are mounted from per-machine directories, empty at start. /var/lib/containerd is
// not on the overlay because containerd's overlayfs snapshotter cannot use an overlay upper.
var privateDirs = []string{"var/lib/containerd", "var/lib/bosun", "run", "root", "home", "tmp"}

// anchorScript sets up the machine's mounts and becomes its PID 1. $1 is the machine's
// directory, $2 its hostname.
const anchorScript = `set -eu
D="$1"
for p in ` + "etc usr var opt" + `; do
  mount -t overlay overlay -o "lowerdir=/$p,upperdir=$D/ov/$p/upper,workdir=$D/ov/$p/work" "/$p"
done
# A sysfs of this network namespace (/sys/class/net), keeping the host's cgroup mounts.
mount --rbind /sys/fs/cgroup "$D/cgroup"
mount -t sysfs sysfs /sys
mount --move "$D/cgroup" /sys/fs/cgroup
for p in var/lib/containerd var/lib/bosun run root home; do
  mkdir -p "/$p"
  mount --bind "$D/fs/$p" "/$p"
done
mkdir -p /run/sshd /run/containerd
hostname "$2"
printf '127.0.1.1\t%s\n' "$2" >> /etc/hosts
touch /run/.anchor-ready
mount --bind "$D/fs/tmp" /tmp
exec sleep infinity
`

// startMachine creates machine i and starts its services.
func (l *Lab) startMachine(ctx context.Context, i int) (*Machine, error) {
	m := &Machine{
		lab:   l,
		index: i,
		name:  fmt.Sprintf("m%d", i),
		netns: l.machineNS(i),
		addr:  l.plan.machine(i),
	}
	m.dir = filepath.Join(l.dir, m.name)
	if err := l.plugMachine(ctx, i); err != nil {
		return nil, err
	}
	dirs := []string{"logs", "cgroup"}
	for _, p := range overlays {
		dirs = append(dirs, filepath.Join("ov", p, "upper"), filepath.Join("ov", p, "work"))
	}
	for _, p := range privateDirs {
		dirs = append(dirs, filepath.Join("fs", p))
	}
	for _, d := range dirs {
		if err := os.MkdirAll(filepath.Join(m.dir, d), 0o755); err != nil {
			return nil, fmt.Errorf("creating machine dir: %w", err)
		}
	}
	if err := os.Chmod(filepath.Join(m.dir, "fs", "tmp"), 0o1777); err != nil {
		return nil, fmt.Errorf("machine tmp: %w", err)
	}
	if err := m.startAnchor(ctx); err != nil {
		return m, err
	}
	if l.cfg.SudoUser != "" {
		if err := m.addSudoUser(ctx, l.cfg.SudoUser); err != nil {
			return m, err
		}
	}
	if !l.cfg.NoSSHD {
		if err := m.startSSHD(ctx); err != nil {
			return m, err
		}
	}
	if !l.cfg.NoContainerd {
		if err := m.startContainerd(ctx); err != nil {
			return m, err
		}
	}
	return m, nil
}

func (m *Machine) startAnchor(ctx context.Context) error {
	log, err := os.Create(filepath.Join(m.dir, "logs", "anchor.log"))
	if err != nil {
		return fmt.Errorf("anchor log: %w", err)
	}
	defer log.Close()
	cmd := exec.Command("nsenter", "--net="+netnsPath(m.netns), "--",
		"unshare", "--pid", "--fork", "--kill-child", "--mount-proc", "--mount", "--uts", "--propagation", "private",
		"--", "sh", "-c", anchorScript, "anchor", m.dir, m.name)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := childproc.Start(cmd); err != nil {
		return fmt.Errorf("starting anchor: %w", err)
	}
	m.anchor = cmd
	exited := make(chan struct{})
	m.exited = exited
	go func() { _ = cmd.Wait(); close(exited) }()
	ready := filepath.Join(m.dir, "fs", "run", ".anchor-ready")
	for {
		if _, err := os.Stat(ready); err == nil {
			break
		}
		select {
		case <-exited:
			b, _ := os.ReadFile(log.Name())
			return fmt.Errorf("anchor exited during setup: %s", bytes.TrimSpace(b))
		case <-ctx.Done():
			return fmt.Errorf("waiting for anchor: %w", ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
	// The unshare process forked the machine's PID 1; find it.
	for {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", cmd.Process.Pid, cmd.Process.Pid))
		if err != nil {
			return fmt.Errorf("finding PID 1 of %s: %w", m.name, err)
		}
		if f := strings.Fields(string(b)); len(f) > 0 {
			m.pid1, _ = strconv.Atoi(f[0])
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("finding PID 1 of %s: %w", m.name, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// Name is the machine's name and hostname ("m1").
func (m *Machine) Name() string { return m.name }

// Addr is the machine's address on the lab network.
func (m *Machine) Addr() netip.Addr { return m.addr }

// NetNS is the path of the machine's network namespace (/run/netns/bosun-lab<id>-<i>).
func (m *Machine) NetNS() string { return netnsPath(m.netns) }

// PID1 is the host PID of the machine's init process; /proc/<PID1>/root is its file system.
func (m *Machine) PID1() int { return m.pid1 }

// HostPath is the host path of a file inside the machine, through /proc/<PID1>/root.
func (m *Machine) HostPath(p string) string {
	return filepath.Join(fmt.Sprintf("/proc/%d/root", m.pid1), p)
}

// RunDir is the host directory mounted at the machine's /run (its sockets live there).
func (m *Machine) RunDir() string { return filepath.Join(m.dir, "fs", "run") }

// LogDir is the host directory holding the machine's process logs.
func (m *Machine) LogDir() string { return filepath.Join(m.dir, "logs") }

// DialContext connects from the machine's network namespace.
func (m *Machine) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	return dialInNetNS(ctx, m.NetNS(), network, addr)
}

// Command returns a command that runs inside the machine (all of its namespaces), in its own
// process group, which is killed when ctx ends.
func (m *Machine) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	nsargs := []string{"--target", strconv.Itoa(m.pid1), "--mount", "--net", "--pid", "--uts", "--wd=/", "--", name}
	cmd := exec.CommandContext(ctx, "nsenter", append(nsargs, args...)...)
	cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root", "LANG=C.UTF-8"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// Exec runs a command in the machine and returns its combined output; a failure's error
// includes the output.
func (m *Machine) Exec(ctx context.Context, name string, args ...string) ([]byte, error) {
	out, err := m.Command(ctx, name, args...).CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("%s: %s %s: %w: %s", m.name, name, strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return out, nil
}

// Process is a long-running process in a machine.
type Process struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{}
	err     error
}

// Start starts a long-running command in the machine with its output in a log file under
// LogDir. It runs until Stop, until ctx ends, or until the lab closes; pass
// context.Background() for a process that lives as long as the lab.
func (m *Machine) Start(ctx context.Context, name string, args ...string) (*Process, error) {
	m.mu.Lock()
	m.seq++
	logPath := filepath.Join(m.dir, "logs", fmt.Sprintf("%s-%d.log", filepath.Base(name), m.seq))
	m.mu.Unlock()
	p, err := startProcess(m.Command(ctx, name, args...), logPath)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", m.name, err)
	}
	m.mu.Lock()
	m.procs = append(m.procs, p)
	m.mu.Unlock()
	return p, nil
}

func startProcess(cmd *exec.Cmd, logPath string) (*Process, error) {
	log, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("log file: %w", err)
	}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		log.Close()
		return nil, fmt.Errorf("starting %s: %w", cmd.Args, err)
	}
	p := &Process{name: filepath.Base(logPath), cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		log.Close()
		close(p.done)
	}()
	return p, nil
}

// LogPath is the file holding the process's stdout and stderr.
func (p *Process) LogPath() string { return p.logPath }

// Done is closed when the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Stop sends SIGTERM to the process group, SIGKILL after 3 s, and waits for the exit.
func (p *Process) Stop() error {
	select {
	case <-p.done:
		return nil
	default:
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-p.done:
		return nil
	case <-time.After(3 * time.Second):
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	select {
	case <-p.done:
		return nil
	case <-time.After(10 * time.Second):
		return fmt.Errorf("process %s (pid %d) does not exit", p.name, p.cmd.Process.Pid)
	}
}

// stop stops the machine's processes, then its PID 1, which takes everything left in its PID
// namespace (shims, containers, Exec'd commands) and its mount namespace with it.
func (m *Machine) stop() error {
	var errs []error
	m.mu.Lock()
	procs := m.procs
	m.mu.Unlock()
	for i := len(procs) - 1; i >= 0; i-- {
		if err := procs[i].Stop(); err != nil {
			errs = append(errs, err)
		}
	}
	if m.anchor != nil && m.anchor.Process != nil {
		// Kill PID 1 first and let unshare reap it; killing unshare first would leave PID 1 a
		// zombie of whatever reaps orphans on this host.
		if m.pid1 > 0 {
			_ = syscall.Kill(m.pid1, syscall.SIGKILL)
		}
		select {
		case <-m.exited:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-m.anchor.Process.Pid, syscall.SIGKILL)
			<-m.exited
		}
	}
	if err := killNetNSProcesses(m.NetNS()); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
