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

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
)

// countRules counts the "-A <chain>" lines per Bosun chain, plus the jump rules into Bosun's
// chains from builtin chains (keyed "table/CHAIN->TARGET"), in iptables-save output of tables.
func countRules(t *testing.T, ex Executor, backend string, input []byte) map[string]int {
	t.Helper()
	got := map[string]int{}
	for _, table := range []string{tableFilter, tableNAT} {
		out, err := ex.Run(context.Background(), nil, "iptables-"+backend+"-save", "-t", table)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(out), "\n") {
			f := strings.Fields(line)
			if len(f) < 2 || f[0] != "-A" {
				continue
			}
			if strings.HasPrefix(f[1], chainPrefix) {
				got[table+"/"+f[1]]++
			} else if m := jumpRE.FindStringSubmatch(line); m != nil && strings.HasPrefix(m[1], chainPrefix) {
				got[table+"/"+f[1]+"->"+m[1]]++
			}
		}
	}
	return got
}

// wantRules counts the same from a restore input and the jump rules.
func wantRules(input []byte) map[string]int {
	want := map[string]int{}
	table := ""
	for _, line := range strings.Split(string(input), "\n") {
		if strings.HasPrefix(line, "*") {
			table = line[1:]
		}
		if f := strings.Fields(line); len(f) > 1 && f[0] == "-A" && strings.HasPrefix(f[1], chainPrefix) {
			want[table+"/"+f[1]]++
		}
	}
	for _, r := range jumpRules {
		want[r.table+"/"+r.chain+"->"+r.args[len(r.args)-1]]++
	}
	return want
}

func TestKernelApplyAndRestore(t *testing.T) {
	for _, backend := range []string{BackendNFT, BackendLegacy} {
		t.Run(backend, func(t *testing.T) {
			ns := newNetns(t)
			if !backendAvailable(t, ns, backend) {
				t.Skipf("no %s iptables here", backend)
			}
			ex := nsExec{ns}
			ctx := context.Background()
			// Someone else's rules, which Bosun must leave alone.
			foreign := [][]string{
				{"-t", "nat", "-N", "KUBE-FOREIGN"},
				{"-t", "nat", "-A", "KUBE-FOREIGN", "-s", "10.99.0.0/16", "-j", "MASQUERADE"},
				{"-t", "nat", "-A", "POSTROUTING", "-j", "KUBE-FOREIGN"},
				{"-t", "filter", "-A", "INPUT", "-s", "10.98.0.0/16", "-j", "ACCEPT"},
			}
			for _, args := range foreign {
				if _, err := ex.Run(ctx, nil, "iptables-"+backend, args...); err != nil {
					t.Fatal(err)
				}
			}

			c := newCluster()
			c.set(t, representative()...)
			p, err := New(Config{Services: c.serviceLister(), Endpoints: c.endpointsLister(),
				ClusterCIDR: "10.244.0.0/16", Backend: backend, Exec: ex, NetNS: "/run/netns/" + ns})
			if err != nil {
				t.Fatal(err)
			}
			if err := p.init(ctx); err != nil {
				t.Fatal(err)
			}
			st, err := p.sync(ctx)
			if err != nil {
				t.Fatal(err)
			}
			full := st.input
			if d := cmp.Diff(wantRules(full), countRules(t, ex, backend, full)); d != "" {
				t.Errorf("iptables-save after the first sync (-want +got):\n%s", d)
			}

			// A second full sync is idempotent: no duplicate jump rules; nor do the -C/-I
			// checks of the --noflush path add any.
			p.invalidate()
			if st, err = p.sync(ctx); err != nil {
				t.Fatal(err)
			}
			for _, r := range jumpRules {
				if inserted, err := p.ipt.ensureJump(ctx, r); err != nil || inserted {
					t.Errorf("ensureJump(%v) after a full sync = %v, %v; want the rule found", r, inserted, err)
				}
			}
			if d := cmp.Diff(wantRules(full), countRules(t, ex, backend, full)); d != "" {
				t.Errorf("iptables-save after a second full sync (-want +got):\n%s", d)
			}

			// An endpoint change: a partial restore, then the kernel matches a full ruleset.
			c.set(t, endpoints("default", "web", []string{"10.244.1.5"}, nil, webPorts...))
			if st, err = p.sync(ctx); err != nil {
				t.Fatal(err)
			}
			if st.full || strings.Contains(string(st.input), ":"+chainServices) {
				t.Errorf("endpoint change was not a partial sync:\n%s", st.input)
			}
			want := wantRules(restoreInput(diff(nil, p.last, nil)))
			if d := cmp.Diff(want, countRules(t, ex, backend, nil)); d != "" {
				t.Errorf("iptables-save after an endpoint change (-want +got):\n%s", d)
			}

			// Foreign rules survived.
			save, err := ex.Run(ctx, nil, "iptables-"+backend+"-save")
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range []string{"-A KUBE-FOREIGN -s 10.99.0.0/16 -j MASQUERADE", "-A POSTROUTING -j KUBE-FOREIGN", "-A INPUT -s 10.98.0.0/16 -j ACCEPT"} {
				if !strings.Contains(string(save), s) {
					t.Errorf("foreign rule %q is gone:\n%s", s, save)
				}
			}

			// Deleting every service removes every Bosun chain but the static ones.
			for _, o := range representative() {
				switch o := o.(type) {
				case *corev1.Service:
					_ = c.svcs.Delete(o)
				}
			}
			if _, err = p.sync(ctx); err != nil {
				t.Fatal(err)
			}
			for k := range countRules(t, ex, backend, nil) {
				if strings.Contains(k, "-SVC-") || strings.Contains(k, "-SEP-") {
					t.Errorf("chain %s left after its service was deleted", k)
				}
			}
		})
	}
}

// TestKernelFunctional runs the proxier in a "node" namespace linked by a veth pair to a
// "backend" namespace with a TCP server, connects to the ClusterIP, then flushes the nat table
// and waits for Run to restore it.
func TestKernelFunctional(t *testing.T) {
	node, backend := newNetns(t), newNetns(t)
	run(t, "ip", "link", "add", "bp-node", "netns", node, "type", "veth", "peer", "name", "bp-backend", "netns", backend)
	run(t, "ip", "-n", node, "addr", "add", "10.250.0.1/24", "dev", "bp-node")
	run(t, "ip", "-n", backend, "addr", "add", "10.250.0.2/24", "dev", "bp-backend")
	run(t, "ip", "-n", node, "link", "set", "bp-node", "up")
	run(t, "ip", "-n", backend, "link", "set", "bp-backend", "up")
	// The service CIDR must be routable for connect() to reach the OUTPUT hook (a real node
	// has a default route; these namespaces have none).
	run(t, "ip", "-n", node, "route", "add", "10.96.0.0/16", "dev", "bp-node")

	var l net.Listener
	inNetns(t, backend, func() {
		var err error
		l, err = net.Listen("tcp", "10.250.0.2:8080")
		if err != nil {
			t.Fatal(err)
		}
	})
	defer l.Close()
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			_, _ = conn.Write([]byte("hello from " + conn.LocalAddr().String() + "\n"))
			conn.Close()
		}
	}()

	ports := []portSpec{{"http", corev1.ProtocolTCP, 80, 8080, 0}}
	c := newCluster()
	c.set(t,
		service("default", "web", "10.96.100.1", ports...),
		endpoints("default", "web", []string{"10.250.0.2"}, nil, ports...),
		service("default", "empty", "10.96.100.2", ports...),
	)
	p, err := New(Config{Services: c.serviceLister(), Endpoints: c.endpointsLister(), ClusterCIDR: "10.244.0.0/16",
		Exec: nsExec{node}, NetNS: "/run/netns/" + node, MinSyncPeriod: 10 * time.Millisecond, CheckPeriod: 100 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		t.Fatal(err)
	}
	defer runProxier(t, p)()

	dial := func(addr string) (string, error) {
		var line string
		var err error
		inNetns(t, node, func() {
			var conn net.Conn
			conn, err = net.DialTimeout("tcp", addr, 2*time.Second)
			if err != nil {
				return
			}
			defer conn.Close()
			_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
			line, err = bufio.NewReader(conn).ReadString('\n')
		})
		return line, err
	}
	if got, err := dial("10.96.100.1:80"); err != nil || got != "hello from 10.250.0.2:8080\n" {
		t.Fatalf("through the ClusterIP: %q, %v", got, err)
	}
	if _, err := dial("10.96.100.2:80"); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("a service without endpoints: %v, want connection refused (REJECT)", err)
	}

	// Someone flushes the nat table; the check notices and restores it.
	run(t, "ip", "netns", "exec", node, "iptables", "-t", "nat", "-F")
	if _, err := dial("10.96.100.1:80"); err == nil {
		t.Fatal("the ClusterIP still answers after flushing nat: the test proves nothing")
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		got, err := dial("10.96.100.1:80")
		if err == nil && got == "hello from 10.250.0.2:8080\n" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("nat rules not restored within 30s: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}

	// An endpoint going away turns the service into a REJECT (through Notify).
	c.set(t, endpoints("default", "web", nil, nil, ports...))
	p.Notify()
	deadline = time.Now().Add(30 * time.Second)
	for {
		_, err := dial("10.96.100.1:80")
		if errors.Is(err, syscall.ECONNREFUSED) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("service still not rejecting after its endpoints went away: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
