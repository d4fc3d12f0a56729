package routes

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/vishvananda/netns"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/bosun-gitops/bosun/e2e/machines"
)

// inNetNS runs f on an OS thread that has entered the network namespace at path (a fresh
// namespace when path is empty); the thread is discarded afterwards.
func inNetNS(t *testing.T, path string, f func() error) error {
	t.Helper()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
		// t.Fatal in f ends this goroutine; report it instead of blocking the test forever.
		defer func() {
			select {
			case errc <- errors.New("f stopped (t.Fatal or panic in the namespace goroutine)"):
			default:
			}
		}()
		var h netns.NsHandle
		var err error
		if path == "" {
			h, err = netns.New()
		} else {
			h, err = netns.GetFromPath(path)
			if err == nil {
				err = netns.Set(h)
			}
		}
		if err != nil {
			errc <- err
			return
		}
		defer h.Close()
		errc <- f()
	}()
	return <-errc
}

func sh(args ...string) (string, error) {
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (network namespaces, routes, iptables)")
	}
}

func TestSyncKernel(t *testing.T) {
	needRoot(t)
	err := inNetNS(t, "", func() error {
		for _, c := range [][]string{
			// No dummy module here: one end of a veth pair with both ends up is on-link too.
			{"ip", "link", "add", "eth0", "type", "veth", "peer", "name", "eth1"},
			{"ip", "link", "set", "eth1", "up"},
			{"ip", "addr", "add", "192.0.2.1/24", "dev", "eth0"},
			{"ip", "link", "set", "eth0", "up"},
			// A route Bosun does not own, inside the pod network.
			{"ip", "route", "add", "10.244.99.0/24", "via", "192.0.2.99", "proto", "static"},
		} {
			if out, err := sh(c...); err != nil {
				t.Fatalf("%v: %v: %s", c, err, out)
			}
		}
		r, err := New(Config{NodeName: "a", ClusterPodCIDR: "10.244.0.0/16"})
		if err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		route := func(dst, gw string) Route {
			return Route{Dst: netip.MustParsePrefix(dst), Gw: netip.MustParseAddr(gw)}
		}
		steps := []struct {
			name  string
			nodes []*corev1.Node
			want  []Route
		}{
			{"added", []*corev1.Node{node("a", "192.0.2.1", "10.244.1.0/24"), node("b", "192.0.2.2", "10.244.2.0/24"), node("c", "192.0.2.3", "10.244.3.0/24")},
				[]Route{route("10.244.2.0/24", "192.0.2.2"), route("10.244.3.0/24", "192.0.2.3")}},
			{"updated", []*corev1.Node{node("a", "192.0.2.1", "10.244.1.0/24"), node("b", "192.0.2.2", "10.244.2.0/24"), node("c", "192.0.2.33", "10.244.3.0/24")},
				[]Route{route("10.244.2.0/24", "192.0.2.2"), route("10.244.3.0/24", "192.0.2.33")}},
			{"removed", []*corev1.Node{node("a", "192.0.2.1", "10.244.1.0/24"), node("c", "192.0.2.33", "10.244.3.0/24")},
				[]Route{route("10.244.3.0/24", "192.0.2.33")}},
			{"resynced after a manual delete", []*corev1.Node{node("a", "192.0.2.1", "10.244.1.0/24"), node("c", "192.0.2.33", "10.244.3.0/24")},
				[]Route{route("10.244.3.0/24", "192.0.2.33")}},
		}
		cmpOpts := []cmp.Option{cmp.Comparer(func(a, b netip.Prefix) bool { return a == b }), cmp.Comparer(func(a, b netip.Addr) bool { return a == b })}
		for _, s := range steps {
			if s.name == "resynced after a manual delete" {
				if out, err := sh("ip", "route", "del", "10.244.3.0/24"); err != nil {
					t.Fatalf("deleting route by hand: %v: %s", err, out)
				}
			}
			if err := r.Sync(ctx, s.nodes); err != nil {
				t.Fatalf("%s: Sync: %v", s.name, err)
			}
			got, err := Installed()
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(s.want, got, cmpOpts...); diff != "" {
				t.Errorf("%s: routes (-want +got):\n%s", s.name, diff)
			}
		}
		if out, _ := sh("ip", "route", "show", "10.244.99.0/24"); !strings.Contains(out, "via 192.0.2.99") {
			t.Errorf("foreign route touched: %q", out)
		}
		if out, _ := sh("ip", "route", "show", "proto", "98"); out != "10.244.3.0/24 via 192.0.2.33 dev eth0" {
			t.Errorf("ip route show proto 98 = %q", out)
		}
		fwd, err := os.ReadFile(ipForwardPath)
		if err != nil || strings.TrimSpace(string(fwd)) != "1" {
			t.Errorf("ip_forward = %q, %v", fwd, err)
		}
		// Once more with a rule added by hand to our chain: it is rewritten to exactly one rule.
		if out, err := sh("iptables", "-t", "nat", "-A", MasqChain, "-j", "RETURN"); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		if err := r.Sync(ctx, steps[len(steps)-1].nodes); err != nil {
			t.Fatal(err)
		}
		save, err := sh("iptables-save", "-t", "nat")
		if err != nil {
			t.Fatal(err)
		}
		var ours []string
		for _, l := range strings.Split(save, "\n") {
			if strings.HasPrefix(l, "-A") && strings.Contains(l, MasqChain) {
				ours = append(ours, l)
			}
		}
		want := []string{
			`-A POSTROUTING -m comment --comment "bosun: pod masquerade" -j BOSUN-POD-MASQ`,
			`-A BOSUN-POD-MASQ -s 10.244.0.0/16 ! -d 10.244.0.0/16 -m comment --comment "bosun: masquerade pod traffic leaving the pod network" -j MASQUERADE`,
		}
		if diff := cmp.Diff(want, ours); diff != "" {
			t.Errorf("nat rules (-want +got):\n%s", diff)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// fakeLister serves a node list that the test changes.
type fakeLister struct {
	mu    sync.Mutex
	nodes []*corev1.Node
}

func (f *fakeLister) set(nodes []*corev1.Node) { f.mu.Lock(); f.nodes = nodes; f.mu.Unlock() }

func (f *fakeLister) List(_ labels.Selector) ([]*corev1.Node, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.nodes, nil
}

var _ NodeLister = (*fakeLister)(nil)

// TestPodToPodAcrossMachines wires two namespace machines like the agent and its CNI bridge
// would, runs the reconciler in each, and checks that a pod on m1 reaches a pod on m2 by IP and
// that m2's pod sees m1's pod IP as the source.
func TestPodToPodAcrossMachines(t *testing.T) {
	needRoot(t)
	lab := machines.NewLab(t, machines.Config{N: 2, Subnet: "192.168.78.0/24", NoSSHD: true, NoContainerd: true, NoRegistry: true})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var nodes []*corev1.Node
	for i, m := range lab.Machines() {
		nodes = append(nodes, node(m.Name(), m.Addr().String(), podCIDR(i)))
	}
	for i, m := range lab.Machines() {
		setupPodNetwork(ctx, t, m, i)
		r, err := New(Config{NodeName: m.Name(), ClusterPodCIDR: "10.244.0.0/16"})
		if err != nil {
			t.Fatal(err)
		}
		if err := inNetNS(t, m.NetNS(), func() error { return r.Sync(ctx, nodes) }); err != nil {
			t.Fatalf("%s: Sync: %v", m.Name(), err)
		}
	}
	m1, m2 := lab.Machine(1), lab.Machine(2)
	// m2's pod answers HTTP with the client address it sees (busybox httpd sets REMOTE_ADDR).
	script := "mkdir -p /tmp/www/cgi-bin && printf '#!/bin/sh\\necho Content-Type: text/plain\\necho\\necho $REMOTE_ADDR\\n' > /tmp/www/cgi-bin/ip && chmod +x /tmp/www/cgi-bin/ip"
	if _, err := m2.Exec(ctx, "sh", "-c", script); err != nil {
		t.Fatal(err)
	}
	if _, err := m2.Start(ctx, "ip", "netns", "exec", "pod", "/bin/busybox", "httpd", "-f", "-p", "8080", "-h", "/tmp/www"); err != nil {
		t.Fatal(err)
	}
	// busybox wget segfaults here (static glibc build); a raw request through nc does the job.
	get := "printf 'GET /cgi-bin/ip HTTP/1.0\\r\\n\\r\\n' | /bin/busybox nc -w 2 " + podIP(1) + " 8080"
	var out []byte
	var err error
	for i := 0; i < 50; i++ {
		out, err = m1.Exec(ctx, "ip", "netns", "exec", "pod", "sh", "-c", get)
		if err == nil && strings.Contains(string(out), "200 OK") {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil || !strings.Contains(string(out), "200 OK") {
		t.Fatalf("pod on m1 cannot reach m2's pod %s:8080: %v: %s", podIP(1), err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	// httpd listens on a dual-stack socket and reports "[::ffff:10.244.1.2]".
	seen := strings.TrimSpace(lines[len(lines)-1])
	if a, err := netip.ParseAddr(strings.Trim(seen, "[]")); err == nil {
		seen = a.Unmap().String()
	}
	if diff := cmp.Diff(podIP(0), seen); diff != "" {
		t.Errorf("source address seen by m2's pod (-want +got):\n%s", diff)
	}
}

func podCIDR(i int) string { return "10.244." + string(rune('1'+i)) + ".0/24" }
func podIP(i int) string   { return "10.244." + string(rune('1'+i)) + ".2" }
func podGW(i int) string   { return "10.244." + string(rune('1'+i)) + ".1" }

// setupPodNetwork gives machine i a bridge serving its pod CIDR and one pod namespace "pod"
// attached to it, as the CNI bridge plugin (with ipMasq: false) would.
func setupPodNetwork(ctx context.Context, t *testing.T, m *machines.Machine, i int) {
	t.Helper()
	script := `set -e
ip link add cni0 type bridge
ip addr add "$1/24" dev cni0
ip link set cni0 up
ip netns add pod
ip link add vpod type veth peer name eth0 netns pod
ip link set vpod master cni0 up
ip -n pod link set lo up
ip -n pod addr add "$2/24" dev eth0
ip -n pod link set eth0 up
ip -n pod route add default via "$1"
`
	if _, err := m.Exec(ctx, "sh", "-c", script, "setup", podGW(i), podIP(i)); err != nil {
		t.Fatal(err)
	}
}

func TestRunSyncsOnNotify(t *testing.T) {
	needRoot(t)
	err := inNetNS(t, "", func() error {
		for _, c := range [][]string{
			{"ip", "link", "add", "eth0", "type", "veth", "peer", "name", "eth1"},
			{"ip", "link", "set", "eth1", "up"},
			{"ip", "addr", "add", "192.0.2.1/24", "dev", "eth0"},
			{"ip", "link", "set", "eth0", "up"},
		} {
			if out, err := sh(c...); err != nil {
				return fmt.Errorf("%v: %v: %s", c, err, out)
			}
		}
		r, err := New(Config{NodeName: "a", ClusterPodCIDR: "10.244.0.0/16", ResyncPeriod: time.Hour})
		if err != nil {
			return err
		}
		lister := &fakeLister{}
		notify := make(chan struct{})
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		done := make(chan error, 1)
		here, err := netns.Get()
		if err != nil {
			return err
		}
		defer here.Close()
		go func() {
			runtime.LockOSThread() // never unlocked: Run's thread must stay in this namespace
			if err := netns.Set(here); err != nil {
				done <- err
				return
			}
			done <- r.Run(ctx, lister, notify)
		}()
		lister.set([]*corev1.Node{node("b", "192.0.2.2", "10.244.2.0/24")})
		notify <- struct{}{}
		var got []Route
		for i := 0; i < 100; i++ {
			got, err = Installed()
			if err == nil && len(got) == 1 {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		cancel()
		if err := <-done; err != nil {
			return fmt.Errorf("Run: %w", err)
		}
		if len(got) != 1 || got[0].Dst.String() != "10.244.2.0/24" {
			return fmt.Errorf("after a notification: routes %v", got)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
