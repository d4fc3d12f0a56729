package dns

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	corelisters "k8s.io/client-go/listers/core/v1"
)

// TTL of every answer in the cluster domain, CoreDNS kubernetes plugin's default.
const TTL = 5

// ServiceLister is the subset of client-go's ServiceLister the server reads.
type ServiceLister interface {
	Services(namespace string) corelisters.ServiceNamespaceLister
}

// EndpointsLister is the subset of client-go's EndpointsLister the server reads.
type EndpointsLister interface {
	Endpoints(namespace string) corelisters.EndpointsNamespaceLister
}

// Config configures a Server.
type Config struct {
	// Listen is the UDP and TCP address to serve on, e.g. "10.244.3.1:53" (port 0 picks one).
	Listen string
	// Domain is the cluster domain, e.g. "cluster.local".
	Domain    string
	Services  ServiceLister
	Endpoints EndpointsLister
	// Upstreams are "host:port" resolvers for names outside Domain (see UpstreamsFromResolvConf).
	// Empty: such names get SERVFAIL.
	Upstreams []string
	// ForwardTimeout bounds one upstream exchange (2s).
	ForwardTimeout time.Duration
	Logger         *slog.Logger
}

// Validate names the first invalid field.
func (c *Config) Validate() error {
	if c.Listen == "" {
		return errors.New("dns config: Listen: an address is required")
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		return fmt.Errorf("dns config: Listen: %w", err)
	}
	if c.Domain == "" {
		return errors.New("dns config: Domain: the cluster domain is required")
	}
	if _, ok := dns.IsDomainName(c.Domain); !ok {
		return fmt.Errorf("dns config: Domain: %q is not a domain name", c.Domain)
	}
	if c.Services == nil || c.Endpoints == nil {
		return errors.New("dns config: Services and Endpoints: listers are required")
	}
	for _, u := range c.Upstreams {
		if _, _, err := net.SplitHostPort(u); err != nil {
			return fmt.Errorf("dns config: Upstreams: %w", err)
		}
	}
	return nil
}

// UpstreamsFromResolvConf reads the nameservers of a resolv.conf (the node's /etc/resolv.conf)
// as host:port addresses.
func UpstreamsFromResolvConf(path string) ([]string, error) {
	cc, err := dns.ClientConfigFromFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading resolvers: %w", err)
	}
	out := make([]string, 0, len(cc.Servers))
	for _, s := range cc.Servers {
		out = append(out, net.JoinHostPort(s, cc.Port))
	}
	return out, nil
}

// Server is the cluster DNS server.
type Server struct {
	cfg    Config
	log    *slog.Logger
	zone   string // "cluster.local."
	ready  chan struct{}
	mu     sync.Mutex
	addr   net.Addr // the UDP address actually bound
	client map[string]*dns.Client
}

// New validates cfg and returns a Server; Run serves.
func New(cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.ForwardTimeout == 0 {
		cfg.ForwardTimeout = 2 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Server{
		cfg:   cfg,
		log:   cfg.Logger.With("component", "dns"),
		zone:  dns.Fqdn(strings.ToLower(cfg.Domain)),
		ready: make(chan struct{}),
		client: map[string]*dns.Client{
			"udp": {Net: "udp", Timeout: cfg.ForwardTimeout},
			"tcp": {Net: "tcp", Timeout: cfg.ForwardTimeout},
		},
	}, nil
}

// Ready is closed once both listeners are bound.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// Addr is the bound address (the same port on UDP and TCP); valid after Ready.
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr.String()
}

// Run serves until ctx ends.
func (s *Server) Run(ctx context.Context) error {
	pc, err := net.ListenPacket("udp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("dns: listening on udp %s: %w", s.cfg.Listen, err)
	}
	// TCP on the same port as UDP, which matters when Listen asked for port 0.
	_, port, _ := net.SplitHostPort(pc.LocalAddr().String())
	host, _, _ := net.SplitHostPort(s.cfg.Listen)
	l, err := net.Listen("tcp", net.JoinHostPort(host, port))
	if err != nil {
		pc.Close()
		return fmt.Errorf("dns: listening on tcp %s: %w", net.JoinHostPort(host, port), err)
	}
	s.mu.Lock()
	s.addr = pc.LocalAddr()
	s.mu.Unlock()
	handler := dns.HandlerFunc(s.serveDNS)
	servers := []*dns.Server{
		{PacketConn: pc, Handler: handler},
		{Listener: l, Handler: handler},
	}
	errs := make(chan error, len(servers))
	var started sync.WaitGroup
	for _, srv := range servers {
		started.Add(1)
		srv.NotifyStartedFunc = started.Done
		go func() { errs <- srv.ActivateAndServe() }()
	}
	started.Wait()
	close(s.ready)
	s.log.Info("cluster DNS serving", "addr", s.addr.String(), "domain", s.cfg.Domain, "upstreams", s.cfg.Upstreams)
	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errs:
		runErr = fmt.Errorf("dns: serving: %w", runErr)
	}
	for _, srv := range servers {
		_ = srv.Shutdown()
	}
	return runErr
}

func (s *Server) serveDNS(w dns.ResponseWriter, req *dns.Msg) {
	if len(req.Question) != 1 {
		m := new(dns.Msg)
		m.SetRcode(req, dns.RcodeFormatError)
		_ = w.WriteMsg(m)
		return
	}
	q := req.Question[0]
	name := strings.ToLower(q.Name)
	if q.Qclass == dns.ClassINET && (name == s.zone || strings.HasSuffix(name, "."+s.zone)) {
		m := s.answer(req, name, q.Qtype)
		_ = w.WriteMsg(m)
		return
	}
	s.forward(w, req)
}

// answer resolves a name in the cluster domain.
func (s *Server) answer(req *dns.Msg, name string, qtype uint16) *dns.Msg {
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	m.RecursionAvailable = true
	rrs, exists := s.lookup(name, qtype)
	switch {
	case !exists:
		m.Rcode = dns.RcodeNameError
		m.Ns = []dns.RR{s.soa()}
	case len(rrs) == 0:
		m.Ns = []dns.RR{s.soa()} // NODATA
	default:
		for _, rr := range rrs {
			if rr.Header().Rrtype == dns.TypeA && qtype == dns.TypeSRV {
				m.Extra = append(m.Extra, rr)
			} else {
				m.Answer = append(m.Answer, rr)
			}
		}
	}
	return m
}

func (s *Server) soa() dns.RR {
	return &dns.SOA{
		Hdr:     dns.RR_Header{Name: s.zone, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: TTL},
		Ns:      "ns.dns." + s.zone,
		Mbox:    "hostmaster." + s.zone,
		Serial:  1,
		Refresh: 7200, Retry: 1800, Expire: 86400, Minttl: TTL,
	}
}

// lookup returns the records of name for qtype, and whether name exists at all (NXDOMAIN
// otherwise). For SRV queries the A records of the targets come along (the caller puts them in
// the additional section).
func (s *Server) lookup(name string, qtype uint16) ([]dns.RR, bool) {
	if name == s.zone {
		return nil, true
	}
	labels := dns.SplitDomainName(strings.TrimSuffix(name, "."+s.zone))
	n := len(labels)
	switch {
	case n >= 3 && labels[n-1] == "pod" && n == 3:
		return s.lookupPod(name, labels[0], qtype)
	case n >= 1 && labels[n-1] == "svc":
		return s.lookupService(name, labels[:n-1], qtype)
	}
	return nil, false
}

func (s *Server) lookupPod(name, dashed string, qtype uint16) ([]dns.RR, bool) {
	ip := net.ParseIP(strings.ReplaceAll(dashed, "-", "."))
	if ip == nil || ip.To4() == nil {
		return nil, false
	}
	if qtype != dns.TypeA && qtype != dns.TypeANY {
		return nil, true
	}
	return []dns.RR{aRecord(name, ip)}, true
}

func aRecord(name string, ip net.IP) dns.RR {
	return &dns.A{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: TTL}, A: ip.To4()}
}

// lookupService handles the labels before "svc": [ns], [svc ns], [endpoint svc ns],
// [_port _proto svc ns].
func (s *Server) lookupService(name string, labels []string, qtype uint16) ([]dns.RR, bool) {
	switch len(labels) {
	case 1: // <ns>.svc.<domain>: exists as an empty non-terminal when it has services; keep simple
		return nil, false
	case 2:
		svc, ok := s.service(labels[1], labels[0])
		if !ok {
			return nil, false
		}
		return s.serviceRecords(name, svc, qtype), true
	case 3:
		svc, ok := s.service(labels[2], labels[1])
		if !ok || !headless(svc) {
			return nil, false
		}
		for _, a := range s.readyAddresses(svc) {
			if endpointName(a) == labels[0] {
				if qtype != dns.TypeA && qtype != dns.TypeANY {
					return nil, true
				}
				return []dns.RR{aRecord(name, net.ParseIP(a.IP))}, true
			}
		}
		return nil, false
	case 4:
		if !strings.HasPrefix(labels[0], "_") || !strings.HasPrefix(labels[1], "_") {
			return nil, false
		}
		svc, ok := s.service(labels[3], labels[2])
		if !ok {
			return nil, false
		}
		portName, proto := labels[0][1:], strings.ToUpper(labels[1][1:])
		for _, p := range svc.Spec.Ports {
			if p.Name == "" || strings.ToLower(p.Name) != portName || string(p.Protocol) != proto {
				continue
			}
			if qtype != dns.TypeSRV && qtype != dns.TypeANY {
				return nil, true
			}
			return s.srvRecords(name, svc, p), true
		}
		return nil, false
	}
	return nil, false
}

func (s *Server) service(ns, name string) (*corev1.Service, bool) {
	svc, err := s.cfg.Services.Services(ns).Get(name)
	if err != nil {
		if !apierrors.IsNotFound(err) {
			s.log.Warn("looking up service", "namespace", ns, "name", name, "err", err)
		}
		return nil, false
	}
	if svc.Spec.Type != corev1.ServiceTypeExternalName && !headless(svc) && net.ParseIP(svc.Spec.ClusterIP) == nil {
		return nil, false // no ClusterIP allocated (yet)
	}
	return svc, true
}

func headless(svc *corev1.Service) bool {
	return svc.Spec.Type != corev1.ServiceTypeExternalName && svc.Spec.ClusterIP == corev1.ClusterIPNone
}

// readyAddresses returns the ready endpoint addresses of svc, deduplicated by IP.
func (s *Server) readyAddresses(svc *corev1.Service) []corev1.EndpointAddress {
	ep, err := s.cfg.Endpoints.Endpoints(svc.Namespace).Get(svc.Name)
	if err != nil {
		return nil
	}
	seen := map[string]bool{}
	var out []corev1.EndpointAddress
	for _, ss := range ep.Subsets {
		for _, a := range ss.Addresses {
			if ip := net.ParseIP(a.IP); ip == nil || ip.To4() == nil || seen[a.IP] {
				continue
			}
			seen[a.IP] = true
			out = append(out, a)
		}
	}
	return out
}

// endpointName is the first label of an endpoint's own name: its hostname, else its IP dashed.
func endpointName(a corev1.EndpointAddress) string {
	if a.Hostname != "" {
		return strings.ToLower(a.Hostname)
	}
	return strings.ReplaceAll(a.IP, ".", "-")
}

func (s *Server) serviceRecords(name string, svc *corev1.Service, qtype uint16) []dns.RR {
	if svc.Spec.Type == corev1.ServiceTypeExternalName {
		return []dns.RR{&dns.CNAME{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeCNAME, Class: dns.ClassINET, Ttl: TTL},
			Target: dns.Fqdn(svc.Spec.ExternalName)}}
	}
	if qtype != dns.TypeA && qtype != dns.TypeANY {
		return nil
	}
	if !headless(svc) {
		return []dns.RR{aRecord(name, net.ParseIP(svc.Spec.ClusterIP))}
	}
	var out []dns.RR
	for _, a := range s.readyAddresses(svc) {
		out = append(out, aRecord(name, net.ParseIP(a.IP)))
	}
	return out
}

// srvRecords answers _port._proto.svc.ns.svc.domain: one SRV to the service name for a
// ClusterIP service, one per ready endpoint (to <endpoint>.<svc>...) for a headless one, each
// target with its A record.
func (s *Server) srvRecords(name string, svc *corev1.Service, port corev1.ServicePort) []dns.RR {
	svcName := svc.Name + "." + svc.Namespace + ".svc." + s.zone
	srv := func(target string, p int32) *dns.SRV {
		return &dns.SRV{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeSRV, Class: dns.ClassINET, Ttl: TTL},
			Priority: 0, Weight: 100, Port: uint16(p), Target: target}
	}
	if !headless(svc) {
		return []dns.RR{srv(svcName, port.Port), aRecord(svcName, net.ParseIP(svc.Spec.ClusterIP))}
	}
	ep, err := s.cfg.Endpoints.Endpoints(svc.Namespace).Get(svc.Name)
	if err != nil {
		return nil
	}
	var out, extra []dns.RR
	seen := map[string]bool{}
	for _, ss := range ep.Subsets {
		for _, p := range ss.Ports {
			if p.Name != port.Name || p.Protocol != port.Protocol {
				continue
			}
			for _, a := range ss.Addresses {
				target := endpointName(a) + "." + svcName
				key := target + strconv.Itoa(int(p.Port))
				if net.ParseIP(a.IP) == nil || seen[key] {
					continue
				}
				seen[key] = true
				out = append(out, srv(target, p.Port))
				extra = append(extra, aRecord(target, net.ParseIP(a.IP)))
			}
		}
	}
	return append(out, extra...)
}

// forward relays req to the upstreams in order over the transport it came on; SERVFAIL when
// none answers.
func (s *Server) forward(w dns.ResponseWriter, req *dns.Msg) {
	network := "udp"
	if _, ok := w.RemoteAddr().(*net.TCPAddr); ok {
		network = "tcp"
	}
	for _, up := range s.cfg.Upstreams {
		resp, _, err := s.client[network].Exchange(req, up)
		if err != nil {
			s.log.Debug("forwarding", "upstream", up, "name", req.Question[0].Name, "err", err)
			continue
		}
		resp.Id = req.Id
		_ = w.WriteMsg(resp)
		return
	}
	m := new(dns.Msg)
	m.SetRcode(req, dns.RcodeServerFailure)
	_ = w.WriteMsg(m)
}
