package testutil

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// DialAs connects to addr as another user (uid, gid, no supplementary groups) and closes the
// connection at once: nil means that user can reach the listener. It needs root. Only one OS
// thread takes the other identity, and Go ends that thread with the goroutine that locked it,
// so the rest of the process keeps its credentials.
func DialAs(uid, gid int, network, addr string) error {
	errc := make(chan error, 1)
	go func() {
		// Never unlocked on purpose: the thread dies with this goroutine.
		runtime.LockOSThread()
		for _, c := range []struct {
			name string
			trap uintptr
			args [3]uintptr
		}{
			{"setgroups", syscall.SYS_SETGROUPS, [3]uintptr{0, 0, 0}},
			{"setresgid", syscall.SYS_SETRESGID, [3]uintptr{^uintptr(0), uintptr(gid), ^uintptr(0)}},
			{"setresuid", syscall.SYS_SETRESUID, [3]uintptr{^uintptr(0), uintptr(uid), ^uintptr(0)}},
		} {
			if _, _, errno := syscall.RawSyscall(c.trap, c.args[0], c.args[1], c.args[2]); errno != 0 {
				errc <- fmt.Errorf("%s for uid %d: %w (DialAs needs root)", c.name, uid, errno)
				return
			}
		}
		conn, err := net.DialTimeout(network, addr, 5*time.Second)
		if err == nil {
			conn.Close()
		}
		errc <- err
	}()
	return <-errc
}

// DialEndpointAs is DialAs for an etcd-style endpoint URL: unix:///path, http(s)://host:port.
func DialEndpointAs(uid, gid int, endpoint string) error {
	if p, ok := strings.CutPrefix(endpoint, "unix://"); ok {
		return DialAs(uid, gid, "unix", p)
	}
	for _, scheme := range []string{"http://", "https://"} {
		if hp, ok := strings.CutPrefix(endpoint, scheme); ok {
			return DialAs(uid, gid, "tcp", strings.TrimSuffix(hp, "/"))
		}
	}
	return fmt.Errorf("endpoint %q: want unix://, http:// or https://", endpoint)
}

// ListeningTCPPorts returns the TCP ports (IPv4 and IPv6) that process pid listens on, sorted:
// its socket file descriptors matched against the LISTEN entries of /proc/PID/net/tcp{,6}.
func ListeningTCPPorts(pid int) ([]int, error) {
	proc := filepath.Join("/proc", strconv.Itoa(pid))
	fds, err := os.ReadDir(filepath.Join(proc, "fd"))
	if err != nil {
		return nil, err
	}
	inodes := map[string]bool{}
	for _, fd := range fds {
		link, err := os.Readlink(filepath.Join(proc, "fd", fd.Name()))
		if err != nil {
			continue // closed since ReadDir
		}
		if in, ok := strings.CutPrefix(link, "socket:["); ok {
			inodes[strings.TrimSuffix(in, "]")] = true
		}
	}
	seen := map[int]bool{}
	for _, table := range []string{"tcp", "tcp6"} {
		f, err := os.Open(filepath.Join(proc, "net", table))
		if err != nil {
			return nil, err
		}
		sc := bufio.NewScanner(f)
		sc.Scan() // header
		for sc.Scan() {
			// sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode
			fields := strings.Fields(sc.Text())
			if len(fields) < 10 || fields[3] != "0A" || !inodes[fields[9]] {
				continue
			}
			_, portHex, ok := strings.Cut(fields[1], ":")
			if !ok {
				continue
			}
			port, err := strconv.ParseUint(portHex, 16, 16)
			if err != nil {
				continue
			}
			seen[int(port)] = true
		}
		err = sc.Err()
		f.Close()
		if err != nil {
			return nil, err
		}
	}
	ports := make([]int, 0, len(seen))
	for p := range seen {
		ports = append(ports, p)
	}
	sort.Ints(ports)
	return ports, nil
}
