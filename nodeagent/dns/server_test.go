package dns

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/miekg/dns"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
)

func indexer() cache.Indexer {
	return cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
}

// fakeUpstream answers every A query with 192.0.2.1 (and counts them) on loopback UDP and TCP.
func fakeUpstream(t testing.TB) (string, *atomic.Int64) {
	t.Helper()
	var n atomic.Int64
	h := dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		n.Add(1)
		m := new(dns.Msg)
		m.SetReply(r)
		m.Answer = []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: r.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60}, A: net.IPv4(192, 0, 2, 1)}}
		_ = w.WriteMsg(m)
	})
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", pc.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	for _, srv := range []*dns.Server{{PacketConn: pc, Handler: h}, {Listener: l, Handler: h}} {
		go func() { _ = srv.ActivateAndServe() }()
		t.Cleanup(func() { _ = srv.Shutdown() })
	}
	return pc.LocalAddr().String(), &n
}

func startServer(t testing.TB, upstreams []string) *Server {
	t.Helper()
	svcs, eps := indexer(), indexer()
	add := func(idx cache.Indexer, o any) {
		if err := idx.Add(o); err != nil {
			t.Fatal(err)
		}
	}
	meta := func(ns, name string) metav1.ObjectMeta { return metav1.ObjectMeta{Namespace: ns, Name: name} }
	add(svcs, &corev1.Service{ObjectMeta: meta("default", "web"), Spec: corev1.ServiceSpec{ClusterIP: "10.96.0.10",
		Ports: []corev1.ServicePort{{Name: "http", Protocol: corev1.ProtocolTCP, Port: 80}, {Protocol: corev1.ProtocolTCP, Port: 81}}}})
	add(svcs, &corev1.Service{ObjectMeta: meta("default", "db"), Spec: corev1.ServiceSpec{ClusterIP: corev1.ClusterIPNone,
		Ports: []corev1.ServicePort{{Name: "pg", Protocol: corev1.ProtocolTCP, Port: 5432}}}})
	add(eps, &corev1.Endpoints{ObjectMeta: meta("default", "db"), Subsets: []corev1.EndpointSubset{{
		Addresses:         []corev1.EndpointAddress{{IP: "10.244.1.5", Hostname: "db-0"}, {IP: "10.244.2.6"}},
		NotReadyAddresses: []corev1.EndpointAddress{{IP: "10.244.3.7"}},
		Ports:             []corev1.EndpointPort{{Name: "pg", Protocol: corev1.ProtocolTCP, Port: 5432}},
	}}})
	add(svcs, &corev1.Service{ObjectMeta: meta("kube-system", "kube-dns"), Spec: corev1.ServiceSpec{ClusterIP: "10.96.0.3",
		Ports: []corev1.ServicePort{{Name: "dns", Protocol: corev1.ProtocolUDP, Port: 53}}}})
	add(svcs, &corev1.Service{ObjectMeta: meta("default", "ext"), Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName, ExternalName: "example.org"}})
	add(svcs, &corev1.Service{ObjectMeta: meta("default", "pending"), Spec: corev1.ServiceSpec{}})

	s, err := New(Config{Listen: "127.0.0.1:0", Domain: "cluster.local", Upstreams: upstreams,
		Services: corelisters.NewServiceLister(svcs), Endpoints: corelisters.NewEndpointsLister(eps)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	select {
	case <-s.Ready():
	case err := <-done:
		t.Fatal(err)
	}
	return s
}

// answer is a response flattened for comparison.
type answer struct {
	Rcode  string
	Answer []string
	Extra  []string
}

func flatten(m *dns.Msg) answer {
	a := answer{Rcode: dns.RcodeToString[m.Rcode]}
	for _, rr := range m.Answer {
		a.Answer = append(a.Answer, rr.String())
	}
	for _, rr := range m.Extra {
		a.Extra = append(a.Extra, rr.String())
	}
	sort.Strings(a.Answer)
	sort.Strings(a.Extra)
	return a
}

func TestServer(t *testing.T) {
	upstream, forwarded := fakeUpstream(t)
	s := startServer(t, []string{upstream})
	tests := []struct {
		name  string
		qname string
		qtype uint16
		want  answer
	}{
		{"clusterIP", "web.default.svc.cluster.local.", dns.TypeA, answer{Rcode: "NOERROR",
			Answer: []string{"web.default.svc.cluster.local.\t5\tIN\tA\t10.96.0.10"}}},
		{"case insensitive", "WEB.Default.svc.cluster.local.", dns.TypeA, answer{Rcode: "NOERROR",
			Answer: []string{"web.default.svc.cluster.local.\t5\tIN\tA\t10.96.0.10"}}},
		{"headless: ready pod IPs", "db.default.svc.cluster.local.", dns.TypeA, answer{Rcode: "NOERROR", Answer: []string{
			"db.default.svc.cluster.local.\t5\tIN\tA\t10.244.1.5", "db.default.svc.cluster.local.\t5\tIN\tA\t10.244.2.6"}}},
		{"headless endpoint by hostname", "db-0.db.default.svc.cluster.local.", dns.TypeA, answer{Rcode: "NOERROR",
			Answer: []string{"db-0.db.default.svc.cluster.local.\t5\tIN\tA\t10.244.1.5"}}},
		{"not-ready endpoint", "10-244-3-7.db.default.svc.cluster.local.", dns.TypeA, answer{Rcode: "NXDOMAIN"}},
		{"AAAA of a service: NODATA", "web.default.svc.cluster.local.", dns.TypeAAAA, answer{Rcode: "NOERROR"}},
		{"SRV named port", "_http._tcp.web.default.svc.cluster.local.", dns.TypeSRV, answer{Rcode: "NOERROR",
			Answer: []string{"_http._tcp.web.default.svc.cluster.local.\t5\tIN\tSRV\t0 100 80 web.default.svc.cluster.local."},
			Extra:  []string{"web.default.svc.cluster.local.\t5\tIN\tA\t10.96.0.10"}}},
		{"SRV UDP", "_dns._udp.kube-dns.kube-system.svc.cluster.local.", dns.TypeSRV, answer{Rcode: "NOERROR",
			Answer: []string{"_dns._udp.kube-dns.kube-system.svc.cluster.local.\t5\tIN\tSRV\t0 100 53 kube-dns.kube-system.svc.cluster.local."},
			Extra:  []string{"kube-dns.kube-system.svc.cluster.local.\t5\tIN\tA\t10.96.0.3"}}},
		{"SRV headless", "_pg._tcp.db.default.svc.cluster.local.", dns.TypeSRV, answer{Rcode: "NOERROR",
			Answer: []string{
				"_pg._tcp.db.default.svc.cluster.local.\t5\tIN\tSRV\t0 100 5432 10-244-2-6.db.default.svc.cluster.local.",
				"_pg._tcp.db.default.svc.cluster.local.\t5\tIN\tSRV\t0 100 5432 db-0.db.default.svc.cluster.local.",
			},
			Extra: []string{"10-244-2-6.db.default.svc.cluster.local.\t5\tIN\tA\t10.244.2.6", "db-0.db.default.svc.cluster.local.\t5\tIN\tA\t10.244.1.5"}}},
		{"SRV wrong protocol", "_http._udp.web.default.svc.cluster.local.", dns.TypeSRV, answer{Rcode: "NXDOMAIN"}},
		{"pod", "10-244-1-5.default.pod.cluster.local.", dns.TypeA, answer{Rcode: "NOERROR",
			Answer: []string{"10-244-1-5.default.pod.cluster.local.\t5\tIN\tA\t10.244.1.5"}}},
		{"ExternalName", "ext.default.svc.cluster.local.", dns.TypeA, answer{Rcode: "NOERROR",
			Answer: []string{"ext.default.svc.cluster.local.\t5\tIN\tCNAME\texample.org."}}},
		{"unknown service", "nope.default.svc.cluster.local.", dns.TypeA, answer{Rcode: "NXDOMAIN"}},
		{"unallocated service", "pending.default.svc.cluster.local.", dns.TypeA, answer{Rcode: "NXDOMAIN"}},
		{"search path expansion", "example.com.default.svc.cluster.local.", dns.TypeA, answer{Rcode: "NXDOMAIN"}},
		{"search path expansion 2", "web.default.svc.cluster.local.default.svc.cluster.local.", dns.TypeA, answer{Rcode: "NXDOMAIN"}},
		{"forwarded", "example.com.", dns.TypeA, answer{Rcode: "NOERROR",
			Answer: []string{"example.com.\t60\tIN\tA\t192.0.2.1"}}},
	}
	for _, network := range []string{"udp", "tcp"} {
		c := &dns.Client{Net: network, Timeout: 5 * time.Second}
		for _, tt := range tests {
			t.Run(network+"/"+tt.name, func(t *testing.T) {
				m := new(dns.Msg)
				m.SetQuestion(tt.qname, tt.qtype)
				resp, _, err := c.Exchange(m, s.Addr())
				if err != nil {
					t.Fatal(err)
				}
				if d := cmp.Diff(tt.want, flatten(resp)); d != "" {
					t.Errorf("%s %s (-want +got):\n%s", tt.qname, dns.TypeToString[tt.qtype], d)
				}
				if resp.Rcode == dns.RcodeNameError && (len(resp.Ns) != 1 || resp.Ns[0].Header().Rrtype != dns.TypeSOA) {
					t.Errorf("NXDOMAIN without the SOA: %v", resp.Ns)
				}
			})
		}
	}
	if got := forwarded.Load(); got != 2 {
		t.Errorf("upstream got %d queries, want 2 (one per transport, none for cluster names)", got)
	}
}

func TestForwardFailureIsServfail(t *testing.T) {
	// A loopback port nobody listens on.
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := pc.LocalAddr().String()
	pc.Close()
	s := startServer(t, []string{dead})
	s.cfg.ForwardTimeout = 200 * time.Millisecond
	m := new(dns.Msg)
	m.SetQuestion("example.com.", dns.TypeA)
	resp, err := dns.Exchange(m, s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	if resp.Rcode != dns.RcodeServerFailure {
		t.Errorf("rcode %s, want SERVFAIL", dns.RcodeToString[resp.Rcode])
	}
}

func TestUpstreamsFromResolvConf(t *testing.T) {
	path := filepath.Join(t.TempDir(), "resolv.conf")
	if err := os.WriteFile(path, []byte("search example.com\nnameserver 192.0.2.53\nnameserver 192.0.2.54\noptions ndots:2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := UpstreamsFromResolvConf(path)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]string{"192.0.2.53:53", "192.0.2.54:53"}, got); d != "" {
		t.Error(d)
	}
}

func TestConfigValidate(t *testing.T) {
	l := corelisters.NewServiceLister(indexer())
	e := corelisters.NewEndpointsLister(indexer())
	tests := []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"ok", Config{Listen: "127.0.0.1:53", Domain: "cluster.local", Services: l, Endpoints: e}, true},
		{"no listen", Config{Domain: "cluster.local", Services: l, Endpoints: e}, false},
		{"no domain", Config{Listen: "127.0.0.1:53", Services: l, Endpoints: e}, false},
		{"bad upstream", Config{Listen: "127.0.0.1:53", Domain: "cluster.local", Services: l, Endpoints: e, Upstreams: []string{"10.0.0.1"}}, false},
		{"no listers", Config{Listen: "127.0.0.1:53", Domain: "cluster.local"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.cfg.Validate(); (err == nil) != tt.ok {
				t.Errorf("Validate() = %v, want ok=%v", err, tt.ok)
			}
		})
	}
}

// BenchmarkQPS measures cluster-name queries per second over UDP from 16 concurrent clients.
func BenchmarkQPS(b *testing.B) {
	s := startServer(b, nil)
	const clients, perClient = 16, 2000
	names := []string{"web.default.svc.cluster.local.", "db.default.svc.cluster.local.", "nope.default.svc.cluster.local."}
	b.ResetTimer()
	var total time.Duration
	var answered atomic.Int64
	for range b.N {
		start := time.Now()
		var wg sync.WaitGroup
		for i := range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				conn, err := net.Dial("udp", s.Addr())
				if err != nil {
					b.Error(err)
					return
				}
				defer conn.Close()
				co := &dns.Conn{Conn: conn}
				for j := range perClient {
					m := new(dns.Msg)
					m.SetQuestion(names[(i+j)%len(names)], dns.TypeA)
					_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
					if err := co.WriteMsg(m); err != nil {
						b.Error(err)
						return
					}
					if _, err := co.ReadMsg(); err != nil {
						continue // a lost datagram
					}
					answered.Add(1)
				}
			}()
		}
		wg.Wait()
		total += time.Since(start)
	}
	qps := float64(answered.Load()) / total.Seconds()
	b.ReportMetric(qps, "q/s")
	fmt.Printf("bench: dns-qps %.0f q/s\n", qps)
}
