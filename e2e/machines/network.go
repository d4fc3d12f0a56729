package machines

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"runtime"
	"strings"

	"github.com/vishvananda/netns"
)

// startNetwork creates the switch namespace with its bridge and, with HostLink, the veth into
// the host's namespace.
func (l *Lab) startNetwork(ctx context.Context) error {
	if l.cfg.HostLink {
		if err := l.checkHostSubnetFree(); err != nil {
			return err
		}
	}
	sw := l.switchNS()
	steps := [][]string{
		{"netns", "add", sw},
		{"-n", sw, "link", "set", "lo", "up"},
		{"-n", sw, "link", "add", "br0", "type", "bridge"},
		{"-n", sw, "addr", "add", l.plan.cidr(l.plan.switchAddr()), "dev", "br0"},
		{"-n", sw, "link", "set", "br0", "up"},
	}
	if l.cfg.HostLink {
		steps = append(steps,
			[]string{"link", "add", l.hostLink(), "type", "veth", "peer", "name", "host", "netns", sw},
			[]string{"-n", sw, "link", "set", "host", "master", "br0", "up"},
			[]string{"addr", "add", l.plan.cidr(l.plan.host()), "dev", l.hostLink()},
			[]string{"link", "set", l.hostLink(), "up"},
		)
	}
	for _, s := range steps {
		if err := ip(ctx, s...); err != nil {
			return fmt.Errorf("switch: %w", err)
		}
	}
	return nil
}

// checkHostSubnetFree refuses a host link into a subnet the host already has an address in (a
// concurrent lab's host link, or a real network).
func (l *Lab) checkHostSubnetFree() error {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return fmt.Errorf("listing host addresses: %w", err)
	}
	for _, a := range addrs {
		n, ok := a.(*net.IPNet)
		if !ok {
			continue
		}
		if ip, ok := netip.AddrFromSlice(n.IP.To4()); ok && l.plan.prefix.Contains(ip) {
			return fmt.Errorf("Subnet: the host already has %s in %s (another lab with a host link?); pick another subnet", ip, l.plan.prefix)
		}
	}
	return nil
}

// plugMachine creates machine i's network namespace and wires its eth0 to the switch.
func (l *Lab) plugMachine(ctx context.Context, i int) error {
	ns, sw, port := l.machineNS(i), l.switchNS(), fmt.Sprintf("m%d", i)
	steps := [][]string{
		{"netns", "add", ns},
		{"-n", sw, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns},
		{"-n", sw, "link", "set", port, "master", "br0", "up"},
		{"-n", ns, "link", "set", "lo", "up"},
		{"-n", ns, "addr", "add", l.plan.cidr(l.plan.machine(i)), "dev", "eth0"},
		{"-n", ns, "link", "set", "eth0", "up"},
	}
	for _, s := range steps {
		if err := ip(ctx, s...); err != nil {
			return err
		}
	}
	return nil
}

// ip runs the ip command.
func ip(ctx context.Context, args ...string) error {
	out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// dialInNetNS dials from the network namespace at nsPath. The socket is created on an OS
// thread that has switched namespaces; a thread whose namespace cannot be restored is not
// reused (it stays locked and dies with its goroutine).
func dialInNetNS(ctx context.Context, nsPath, network, addr string) (net.Conn, error) {
	type result struct {
		conn net.Conn
		err  error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		conn, restored, err := func() (net.Conn, bool, error) {
			orig, err := netns.Get()
			if err != nil {
				return nil, true, fmt.Errorf("current netns: %w", err)
			}
			defer orig.Close()
			target, err := netns.GetFromPath(nsPath)
			if err != nil {
				return nil, true, fmt.Errorf("opening netns %s: %w", nsPath, err)
			}
			defer target.Close()
			if err := netns.Set(target); err != nil {
				return nil, true, fmt.Errorf("entering netns %s: %w", nsPath, err)
			}
			var d net.Dialer
			conn, err := d.DialContext(ctx, network, addr)
			return conn, netns.Set(orig) == nil, err
		}()
		if restored {
			runtime.UnlockOSThread()
		}
		ch <- result{conn, err}
	}()
	r := <-ch
	return r.conn, r.err
}
