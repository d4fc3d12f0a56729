package machines

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/containerd"
	"github.com/containerd/containerd/cio"
	"github.com/containerd/containerd/namespaces"
	"github.com/containerd/containerd/oci"
	"github.com/containerd/containerd/remotes/docker"
	"github.com/google/go-cmp/cmp"
	"golang.org/x/crypto/ssh"
)

const sudoUser = "deploy"

// hostState is what a lab must leave unchanged on the host.
type hostState struct {
	netns    string
	links    string
	mounts   []string
	iptables string
}

func snapshotHost(t *testing.T, labMarker string) hostState {
	t.Helper()
	out := func(name string, args ...string) string {
		b, err := exec.Command(name, args...).Output()
		if err != nil {
			t.Fatalf("%s %v: %v", name, args, err)
		}
		return string(b)
	}
	var mounts []string
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(mi), "\n") {
		if labMarker != "" && strings.Contains(line, labMarker) {
			mounts = append(mounts, line)
		}
	}
	var labLinks, labNS []string
	for _, l := range strings.Split(out("ip", "-o", "link", "show"), "\n") {
		if labMarker != "" && strings.Contains(l, labMarker) {
			labLinks = append(labLinks, l)
		}
	}
	for _, l := range strings.Split(out("ip", "netns", "list"), "\n") {
		if labMarker != "" && strings.Contains(l, labMarker) {
			labNS = append(labNS, l)
		}
	}
	return hostState{
		netns:    strings.Join(labNS, "\n"),
		links:    strings.Join(labLinks, "\n"),
		mounts:   mounts,
		iptables: dropComments(out("iptables-save") + out("ip6tables-save")),
	}
}

func dropComments(s string) string {
	var keep []string
	for _, l := range strings.Split(s, "\n") {
		if !strings.HasPrefix(l, "#") {
			// Chain policies carry packet counters, which other processes move.
			if i := strings.LastIndex(l, " ["); strings.HasPrefix(l, ":") && i > 0 {
				l = l[:i]
			}
			keep = append(keep, l)
		}
	}
	return strings.Join(keep, "\n")
}

func testKey(t *testing.T) (ssh.Signer, string) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return signer, strings.TrimSpace(string(ssh.MarshalAuthorizedKey(signer.PublicKey())))
}

func TestLab(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("namespace machines need root")
	}
	if testing.Short() {
		t.Skip("starts three machines with sshd, containerd and a registry")
	}
	signer, authorized := testKey(t)
	start := time.Now()
	lab := NewLab(t, Config{N: 3, Subnet: "192.168.77.0/24", AuthorizedKeys: []string{authorized}, SudoUser: sudoUser})
	t.Logf("3 machines with sshd, containerd and the registry ready in %v", time.Since(start))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	ms := lab.Machines()

	t.Run("machines ping each other", func(t *testing.T) {
		for _, a := range ms {
			for _, b := range ms {
				if _, err := a.Exec(ctx, "/bin/busybox", "ping", "-c", "1", "-W", "2", b.Addr().String()); err != nil {
					t.Errorf("%s -> %s: %v", a.Name(), b.Name(), err)
				}
			}
		}
	})

	t.Run("no way out", func(t *testing.T) {
		hostAddrs := hostAddresses(t)
		if len(hostAddrs) == 0 {
			t.Fatal("found no host address to probe")
		}
		for _, m := range ms {
			out, err := m.Exec(ctx, "ip", "route", "show", "default")
			if err != nil {
				t.Fatal(err)
			}
			if s := strings.TrimSpace(string(out)); s != "" {
				t.Errorf("%s has a default route: %s", m.Name(), s)
			}
			for _, a := range hostAddrs {
				if _, err := m.Exec(ctx, "/bin/busybox", "ping", "-c", "1", "-W", "1", a); err == nil {
					t.Errorf("%s reaches the host's address %s", m.Name(), a)
				}
			}
		}
	})

	t.Run("sshd", func(t *testing.T) {
		for _, m := range ms {
			for _, tc := range []struct {
				user, cmd string
			}{
				{"root", "id -u"},
				{sudoUser, "sudo -n id -u"},
			} {
				got, err := sshRun(ctx, lab, m, tc.user, signer, m.HostKey(), tc.cmd)
				if err != nil {
					t.Errorf("%s@%s: %v", tc.user, m.Name(), err)
					continue
				}
				if diff := cmp.Diff("0", strings.TrimSpace(got)); diff != "" {
					t.Errorf("%s@%s %q (-want +got):\n%s", tc.user, m.Name(), tc.cmd, diff)
				}
			}
			// Another machine's host key must be refused: the key is really this machine's own.
			other := ms[(m.index)%len(ms)]
			if _, err := sshRun(ctx, lab, m, "root", signer, other.HostKey(), "true"); err == nil {
				t.Errorf("%s accepted with %s's host key", m.Name(), other.Name())
			}
		}
		if ms[0].HostKey() == ms[1].HostKey() {
			t.Error("two machines share a host key")
		}
	})

	t.Run("private etc", func(t *testing.T) {
		if _, err := ms[0].Exec(ctx, "sh", "-c", "mkdir -p /etc/bosun && echo m1 > /etc/bosun/marker"); err != nil {
			t.Fatal(err)
		}
		if out, err := ms[1].Exec(ctx, "ls", "/etc/bosun/marker"); err == nil {
			t.Errorf("m2 sees m1's /etc/bosun/marker: %s", out)
		}
		if _, err := os.Stat("/etc/bosun/marker"); err == nil {
			t.Error("the host sees m1's /etc/bosun/marker")
		}
		if _, err := os.Stat("/etc/sudoers.d/bosun-" + sudoUser); err == nil {
			t.Error("the host sees the machines' sudoers file")
		}
	})

	t.Run("containerd runs busybox from the registry", func(t *testing.T) {
		for _, m := range ms {
			runBusybox(ctx, t, lab, m)
		}
	})

	// Close now and check that nothing is left; the t.Cleanup close is then a no-op.
	var pids []int
	for _, m := range ms {
		pids = append(pids, m.PID1())
		pids = append(pids, pidsInNetNS(netnsInode(t, m.NetNS()))...)
	}
	pids = append(pids, pidsInNetNS(netnsInode(t, lab.SwitchNetNS()))...)
	if len(pids) < 3*3 {
		t.Fatalf("expected anchors, sshd and containerd in the machines, found pids %v", pids)
	}
	closeStart := time.Now()
	if err := lab.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	t.Logf("closed in %v", time.Since(closeStart))
	after := snapshotHost(t, lab.ID())
	if diff := cmp.Diff(hostState{}, hostState{netns: after.netns, links: after.links, mounts: after.mounts}, cmp.AllowUnexported(hostState{})); diff != "" {
		t.Errorf("host after Close (-want +got):\n%s", diff)
	}
	// Other tests may change the host's rules meanwhile; none may mention the lab.
	for _, l := range strings.Split(after.iptables, "\n") {
		if strings.Contains(l, "192.168.77.") || strings.Contains(l, lab.ID()) {
			t.Errorf("iptables rule of the lab left: %s", l)
		}
	}
	for _, pid := range pids {
		if running(pid) {
			t.Errorf("process %d survived Close", pid)
		}
	}
	if _, err := os.Stat(lab.Dir()); !os.IsNotExist(err) {
		t.Errorf("lab dir %s survived Close: %v", lab.Dir(), err)
	}
}

func netnsInode(t *testing.T, path string) string {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("net:[%d]", st.Ino)
}

// hostAddresses are the host's non-loopback IPv4 addresses.
func hostAddresses(t *testing.T) []string {
	t.Helper()
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && !n.IP.IsLoopback() {
			out = append(out, n.IP.String())
		}
	}
	return out
}

func sshRun(ctx context.Context, lab *Lab, m *Machine, user string, signer ssh.Signer, hostKey, cmd string) (string, error) {
	pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(hostKey))
	if err != nil {
		return "", fmt.Errorf("parsing host key: %w", err)
	}
	conn, err := lab.DialContext(ctx, "tcp", m.SSHAddr())
	if err != nil {
		return "", err
	}
	cfg := &ssh.ClientConfig{
		User:            user,
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback: ssh.FixedHostKey(pub),
		Timeout:         10 * time.Second,
	}
	c, chans, reqs, err := ssh.NewClientConn(conn, m.SSHAddr(), cfg)
	if err != nil {
		conn.Close()
		return "", err
	}
	client := ssh.NewClient(c, chans, reqs)
	defer client.Close()
	s, err := client.NewSession()
	if err != nil {
		return "", err
	}
	defer s.Close()
	out, err := s.CombinedOutput(cmd)
	if err != nil {
		return string(out), fmt.Errorf("%s: %w: %s", cmd, err, out)
	}
	return string(out), nil
}

func runBusybox(ctx context.Context, t *testing.T, lab *Lab, m *Machine) {
	t.Helper()
	client, err := containerd.New(m.ContainerdSocket())
	if err != nil {
		t.Fatalf("%s: connecting to containerd: %v", m.Name(), err)
	}
	defer client.Close()
	ctx = namespaces.WithNamespace(ctx, "bosun-test")
	v, err := client.Version(ctx)
	if err != nil || v.Version == "" {
		t.Fatalf("%s: containerd version: %q, %v", m.Name(), v.Version, err)
	}
	resolver := docker.NewResolver(docker.ResolverOptions{Hosts: docker.ConfigureDefaultRegistries(
		docker.WithPlainHTTP(docker.MatchAllHosts),
		docker.WithClient(&http.Client{Transport: &http.Transport{DialContext: m.DialContext}}),
	)})
	img, err := client.Pull(ctx, lab.BusyboxRef(), containerd.WithPullUnpack, containerd.WithResolver(resolver))
	if err != nil {
		t.Fatalf("%s: pulling %s: %v", m.Name(), lab.BusyboxRef(), err)
	}
	// cgroups v1 paths are /<namespace>/<id> on the shared host hierarchy: ids differ per machine.
	id := "hello-" + m.Name()
	c, err := client.NewContainer(ctx, id, containerd.WithNewSnapshot(id, img),
		// Not oci.WithImageConfig: it mounts the rootfs on the client side to read /etc/group, and
		// the snapshots live in the machine's mount namespace, not the test's.
		containerd.WithNewSpec(oci.WithDefaultPathEnv, oci.WithProcessArgs("/bin/busybox", "sh", "-c", "echo hello from $(hostname)")))
	if err != nil {
		t.Fatalf("%s: creating container: %v", m.Name(), err)
	}
	defer c.Delete(ctx, containerd.WithSnapshotCleanup)
	if err := os.MkdirAll(filepath.Join(m.RunDir(), "test"), 0o755); err != nil {
		t.Fatal(err)
	}
	task, err := c.NewTask(ctx, cio.LogFile("/run/test/"+id+".log"))
	if err != nil {
		t.Fatalf("%s: creating task: %v", m.Name(), err)
	}
	defer task.Delete(ctx)
	exit, err := task.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := task.Start(ctx); err != nil {
		t.Fatalf("%s: starting task: %v", m.Name(), err)
	}
	st := <-exit
	if code, _, err := st.Result(); err != nil || code != 0 {
		t.Fatalf("%s: task exit %d, %v", m.Name(), code, err)
	}
	out, err := os.ReadFile(filepath.Join(m.RunDir(), "test", id+".log"))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(bytes.TrimSpace(out)), "hello from "+m.Name(); got != want {
		t.Errorf("%s: container said %q, want %q", m.Name(), got, want)
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"ok", Config{N: 3}, ""},
		{"zero machines", Config{}, "N: 0 machines, want 1..200"},
		{"ipv6", Config{N: 1, Subnet: "fd00::/64"}, "Subnet: fd00::/64 must be an IPv4 prefix of length 24 or shorter"},
		{"root sudo user", Config{N: 1, SudoUser: "root"}, `SudoUser: "root" is not a valid non-root user name`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := ""
			if err := tc.cfg.Validate(); err != nil {
				got = err.Error()
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestAddressPlan(t *testing.T) {
	p := newAddressPlan("192.168.77.0/24")
	got := []string{p.machine(1).String(), p.machine(3).String(), p.switchAddr().String(), p.host().String(), p.cidr(p.machine(1))}
	want := []string{"192.168.77.1", "192.168.77.3", "192.168.77.253", "192.168.77.254", "192.168.77.1/24"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestLabID(t *testing.T) {
	tests := []struct {
		in, want string
		ok       bool
	}{
		{"bosun-lab0a1b2c-sw", "0a1b2c", true},
		{"bosun-lab0a1b2c-12", "0a1b2c", true},
		{"bosun-lab0a1b2c", "0a1b2c", true},
		{"bosun-labzzzzzz-1", "", false},
		{"bosun-lab0a1b2cd", "", false},
		{"other", "", false},
	}
	for _, tc := range tests {
		got, ok := labID(tc.in)
		if got != tc.want || ok != tc.ok {
			t.Errorf("labID(%q) = %q, %v; want %q, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

// TestHostLink checks the operator's side: with HostLink the host reaches a machine's sshd and
// the machine reaches the host's lab address; without it the host does not reach the machines.
func TestHostLink(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("namespace machines need root")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	linked := NewLab(t, Config{N: 1, Subnet: "192.168.81.0/24", HostLink: true, NoContainerd: true, NoRegistry: true})
	m := linked.Machine(1)
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", m.SSHAddr())
	if err != nil {
		t.Fatalf("host -> %s: %v", m.SSHAddr(), err)
	}
	banner := make([]byte, 8)
	_, err = conn.Read(banner)
	conn.Close()
	if err != nil || !strings.HasPrefix(string(banner), "SSH-2.0") {
		t.Errorf("sshd banner %q, %v", banner, err)
	}
	if _, err := m.Exec(ctx, "/bin/busybox", "ping", "-c", "1", "-W", "2", linked.HostAddr().String()); err != nil {
		t.Errorf("machine -> host lab address: %v", err)
	}

	// Without a host link the host has no address or route on the lab network. (Do not probe by
	// dialing: without a lab route the host's default route would send the packet off-host.)
	isolated := NewLab(t, Config{N: 1, Subnet: "192.168.82.0/24", NoContainerd: true, NoRegistry: true})
	out, err := exec.Command("ip", "-4", "-o", "route", "get", isolated.Machine(1).Addr().String()).CombinedOutput()
	if err != nil {
		t.Fatalf("ip route get: %v: %s", err, out)
	}
	if strings.Contains(string(out), "dev bl") {
		t.Errorf("host routes to the isolated lab through a lab link: %s", out)
	}
	out, err = exec.Command("ip", "-4", "-o", "addr", "show").CombinedOutput()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), "192.168.82.") {
		t.Errorf("host has an address on the isolated lab network:\n%s", out)
	}
	out, _ = exec.Command("ip", "-4", "-o", "route", "get", m.Addr().String()).CombinedOutput()
	if !strings.Contains(string(out), "dev "+hostLinkName(linked.ID())) {
		t.Errorf("host route to the linked lab is not through its host link: %s", out)
	}
}

// TestCleanupStale simulates a crashed run: a lab whose owner is gone is removed by
// CleanupStale, while a live lab is left alone.
func TestCleanupStale(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("namespace machines need root")
	}
	live := NewLab(t, Config{N: 1, Subnet: "192.168.79.0/24", NoSSHD: true, NoContainerd: true, NoRegistry: true})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	crashed, err := Start(ctx, Config{N: 2, Subnet: "192.168.80.0/24", HostLink: true, NoSSHD: true, NoContainerd: true, NoRegistry: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = crashed.Close() })
	if _, err := crashed.Machine(1).Start(context.Background(), "sleep", "1000"); err != nil {
		t.Fatal(err)
	}
	pid1 := crashed.Machine(1).PID1()
	// Pretend the owner died: a PID that cannot be alive.
	if err := os.WriteFile(filepath.Join(crashed.Dir(), ownerFile), []byte("999999999 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cleaned, err := CleanupStale()
	if err != nil {
		t.Fatalf("CleanupStale: %v", err)
	}
	if !slicesContains(cleaned, crashed.ID()) || slicesContains(cleaned, live.ID()) {
		t.Errorf("cleaned %v; want %s and not %s", cleaned, crashed.ID(), live.ID())
	}
	after := snapshotHost(t, crashed.ID())
	if after.netns != "" || after.links != "" || len(after.mounts) != 0 {
		t.Errorf("left behind: netns %q links %q mounts %q", after.netns, after.links, after.mounts)
	}
	if running(pid1) {
		t.Errorf("the crashed lab's PID 1 %d survived", pid1)
	}
	if _, err := os.Stat(crashed.Dir()); !os.IsNotExist(err) {
		t.Errorf("lab dir survived: %v", err)
	}
	if _, err := live.Machine(1).Exec(ctx, "true"); err != nil {
		t.Errorf("the live lab was harmed: %v", err)
	}
}

func slicesContains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}
