package proxy

import (
	"bufio"
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// nftLab is three namespaces: a node running the nftables proxier, a backend with two
// addresses serving TCP on :8080, and a client that reaches the node's NodePorts.
//
//	client 192.168.75.2 ── 192.168.75.1 node 192.168.74.1 ── 192.168.74.2, .3 backend
type nftLab struct {
	node, backend, client string
}

func newNFTLab(t *testing.T) *nftLab {
	l := &nftLab{node: newNetns(t), backend: newNetns(t), client: newNetns(t)}
	run(t, "ip", "link", "add", "np-node", "netns", l.node, "type", "veth", "peer", "name", "np-backend", "netns", l.backend)
	run(t, "ip", "link", "add", "np-front", "netns", l.node, "type", "veth", "peer", "name", "np-client", "netns", l.client)
	run(t, "ip", "-n", l.node, "addr", "add", "192.168.74.1/24", "dev", "np-node")
	run(t, "ip", "-n", l.node, "addr", "add", "192.168.75.1/24", "dev", "np-front")
	run(t, "ip", "-n", l.backend, "addr", "add", "192.168.74.2/24", "dev", "np-backend")
	run(t, "ip", "-n", l.backend, "addr", "add", "192.168.74.3/24", "dev", "np-backend")
	run(t, "ip", "-n", l.client, "addr", "add", "192.168.75.2/24", "dev", "np-client")
	for _, dev := range []struct{ ns, dev string }{{l.node, "np-node"}, {l.node, "np-front"}, {l.backend, "np-backend"}, {l.client, "np-client"}} {
		run(t, "ip", "-n", dev.ns, "link", "set", dev.dev, "up")
	}
	run(t, "ip", "netns", "exec", l.node, "sysctl", "-qw", "net.ipv4.ip_forward=1")
	// The service CIDR must be routable for connect() to reach the OUTPUT hook (a real node
	// has a default route; these namespaces have none).
	run(t, "ip", "-n", l.node, "route", "add", "10.96.0.0/16", "dev", "np-node")
	for _, addr := range []string{"192.168.74.2:8080", "192.168.74.3:8080"} {
		var ln net.Listener
		inNetns(t, l.backend, func() {
			var err error
			if ln, err = net.Listen("tcp", addr); err != nil {
				t.Fatal(err)
			}
		})
		t.Cleanup(func() { ln.Close() })
		go func() {
			for {
				conn, err := ln.Accept()
				if err != nil {
					return
				}
				_, _ = conn.Write([]byte(conn.LocalAddr().String() + "\n"))
				conn.Close()
			}
		}()
	}
	return l
}

// runProxier runs p until the returned stop is called, once its first sync succeeded.
func runProxier(t *testing.T, p *Proxier) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	stop = func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
	select {
	case <-p.Ready():
	case err := <-done:
		cancel()
		t.Fatal(err)
	case <-time.After(30 * time.Second):
		stop()
		t.Fatal("proxier not ready after 30s")
	}
	return stop
}

// dial connects from namespace ns and returns the backend address that answered.
func dialFrom(t *testing.T, ns, addr string) (string, error) {
	var line string
	var err error
	inNetns(t, ns, func() {
		var conn net.Conn
		conn, err = net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
		line, err = bufio.NewReader(conn).ReadString('\n')
	})
	return strings.TrimSpace(line), err
}

// eventually retries f for 30 s until it returns nil.
func eventually(t *testing.T, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 30s: %v", what, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestNFTFunctional runs the nftables proxier with Run and sends real traffic: ClusterIPs from
// the node, NodePorts from the client (through services in different shard tables), services
// without endpoints, load balancing, ClientIP affinity, an endpoint change, and a shard table
// and the main table deleted by someone else.
func TestNFTFunctional(t *testing.T) {
	l := newNFTLab(t)
	port := []portSpec{{"http", corev1.ProtocolTCP, 80, 8080, 30080}}
	sticky := service("default", "sticky", "10.96.100.3", portSpec{"http", corev1.ProtocolTCP, 80, 8080, 0})
	sticky.Spec.SessionAffinity = corev1.ServiceAffinityClientIP
	both := []string{"192.168.74.2", "192.168.74.3"}
	c := newCluster()
	c.set(t,
		service("default", "web", "10.96.100.1", port...),
		endpoints("default", "web", both, nil, port...),
		service("default", "empty", "10.96.100.2", portSpec{"http", corev1.ProtocolTCP, 80, 8080, 30081}),
		sticky,
		endpoints("default", "sticky", both, nil, portSpec{"http", corev1.ProtocolTCP, 80, 8080, 0}),
		service("default", "api", "10.96.100.4", portSpec{"http", corev1.ProtocolTCP, 80, 8080, 30082}),
		endpoints("default", "api", []string{"192.168.74.2"}, nil, portSpec{"http", corev1.ProtocolTCP, 80, 8080, 30082}),
	)
	shards := map[string]bool{}
	for _, svc := range []string{"default/web", "default/empty", "default/sticky", "default/api"} {
		shards[nftShardOf(svc)] = true
	}
	if len(shards) != 4 {
		t.Fatalf("the test's services share shards (%v): rename them so that traffic crosses shards", shards)
	}
	p, err := New(Config{Mode: ModeNFTables, Services: c.serviceLister(), Endpoints: c.endpointsLister(),
		ClusterCIDR: "10.244.0.0/16", NetNS: "/run/netns/" + l.node, Exec: nsExec{l.node},
		MinSyncPeriod: 10 * time.Millisecond, CheckPeriod: 100 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		t.Fatal(err)
	}
	defer runProxier(t, p)()

	// Load balancing: 40 connections reach both endpoints (all on one: 2^-39).
	seen := map[string]int{}
	for range 40 {
		got, err := dialFrom(t, l.node, "10.96.100.1:80")
		if err != nil {
			t.Fatalf("through the ClusterIP: %v", err)
		}
		seen[got]++
	}
	if seen["192.168.74.2:8080"] == 0 || seen["192.168.74.3:8080"] == 0 || len(seen) != 2 {
		t.Errorf("ClusterIP connections went to %v, want both endpoints", seen)
	}
	if got, err := dialFrom(t, l.client, "192.168.75.1:30080"); err != nil || !strings.HasPrefix(got, "192.168.74.") {
		t.Errorf("through the NodePort from another machine: %q, %v", got, err)
	}
	if got, err := dialFrom(t, l.node, "10.96.100.4:80"); err != nil || got != "192.168.74.2:8080" {
		t.Errorf("through the ClusterIP of a service in shard %s: %q, %v", nftShardOf("default/api"), got, err)
	}
	if got, err := dialFrom(t, l.client, "192.168.75.1:30082"); err != nil || got != "192.168.74.2:8080" {
		t.Errorf("through the NodePort of a service in shard %s: %q, %v", nftShardOf("default/api"), got, err)
	}
	if _, err := dialFrom(t, l.node, "10.96.100.2:80"); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("a ClusterIP without endpoints: %v, want connection refused (reject)", err)
	}
	if _, err := dialFrom(t, l.client, "192.168.75.1:30081"); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("a NodePort without endpoints: %v, want connection refused (reject)", err)
	}

	// ClientIP affinity: every connection from the node goes where the first one went.
	first, err := dialFrom(t, l.node, "10.96.100.3:80")
	if err != nil {
		t.Fatal(err)
	}
	for range 20 {
		if got, err := dialFrom(t, l.node, "10.96.100.3:80"); err != nil || got != first {
			t.Fatalf("with ClientIP affinity a connection went to %q (%v), the first to %q", got, err, first)
		}
	}

	// An endpoint change (through Notify) moves all traffic to the remaining endpoint.
	c.set(t, endpoints("default", "web", []string{"192.168.74.3"}, nil, port...))
	p.Notify()
	eventually(t, "traffic to the removed endpoint stops", func() error {
		for range 10 {
			got, err := dialFrom(t, l.node, "10.96.100.1:80")
			if err != nil {
				return err
			}
			if got != "192.168.74.3:8080" {
				return errors.New("a connection reached " + got)
			}
		}
		return nil
	})

	// Someone deletes web's shard table, then the main table; the check notices and restores
	// each. (Only the proxier can make a table exist again, so the listing proves the restore
	// whatever the timing.)
	for _, table := range []string{nftShardOf("default/web"), nftTable} {
		run(t, "ip", "netns", "exec", l.node, "nft", "delete", "table", "ip", table)
		eventually(t, "table ip "+table+" is restored", func() error {
			if _, ok := nftList(t, l.node, table); !ok {
				return errors.New("no table ip " + table)
			}
			got, err := dialFrom(t, l.client, "192.168.75.1:30080")
			if err == nil && got != "192.168.74.3:8080" {
				err = errors.New("reached " + got)
			}
			return err
		})
	}
}
