package proxy

import (
	"bytes"
	"crypto/sha256"
	"encoding/base32"
	"fmt"
	"maps"
	"net"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Chain and table names. Every chain the proxy writes starts with chainPrefix and is one of its
// own (ownedChain); nothing else is ever flushed or deleted. Other parts of the agent own other
// BOSUN-* chains (nodeagent/routes' BOSUN-POD-MASQ), which the proxy leaves alone.
const (
	chainPrefix      = "BOSUN-"
	chainSvcPrefix   = "BOSUN-SVC-"
	chainSepPrefix   = "BOSUN-SEP-"
	chainServices    = "BOSUN-SERVICES"
	chainNodePorts   = "BOSUN-NODEPORTS"
	chainMarkMasq    = "BOSUN-MARK-MASQ"
	chainPostrouting = "BOSUN-POSTROUTING"
	chainForward     = "BOSUN-FORWARD"
	chainCanary      = "BOSUN-PROXY-CANARY"

	tableNAT    = "nat"
	tableFilter = "filter"

	// masqMark is the packet mark BOSUN-MARK-MASQ sets and BOSUN-POSTROUTING masquerades
	// (kube-proxy's 0x4000).
	masqMark = "0x4000"

	// defaultAffinitySeconds is Kubernetes' default ClientIP affinity timeout (3 hours).
	defaultAffinitySeconds = 10800

	// conditionAllocated is the Service condition the operator's service controller sets to
	// False when it could not allocate the ClusterIP or NodePorts.
	conditionAllocated = "Allocated"
)

// ownedChain reports whether chain is one the proxy writes: its static and dispatch chains and
// the per-service BOSUN-SVC-* and BOSUN-SEP-* chains.
func ownedChain(chain string) bool {
	switch chain {
	case chainServices, chainNodePorts, chainMarkMasq, chainPostrouting, chainForward, chainCanary:
		return true
	}
	return strings.HasPrefix(chain, chainSvcPrefix) || strings.HasPrefix(chain, chainSepPrefix)
}

// builtinTargets are the -j targets that are not chains.
var builtinTargets = map[string]bool{
	"ACCEPT": true, "DROP": true, "RETURN": true, "REJECT": true,
	"DNAT": true, "SNAT": true, "MASQUERADE": true, "MARK": true,
}

// jumpRule is a rule in a builtin chain that sends traffic into Bosun's chains. They are the only
// rules Bosun writes outside its own chains, installed with -C then -I.
type jumpRule struct {
	table, chain string
	args         []string
}

var jumpRules = []jumpRule{
	{tableNAT, "PREROUTING", []string{"-m", "comment", "--comment", "bosun service portals", "-j", chainServices}},
	{tableNAT, "OUTPUT", []string{"-m", "comment", "--comment", "bosun service portals", "-j", chainServices}},
	{tableNAT, "POSTROUTING", []string{"-m", "comment", "--comment", "bosun postrouting rules", "-j", chainPostrouting}},
	{tableFilter, "INPUT", []string{"-m", "conntrack", "--ctstate", "NEW", "-m", "comment", "--comment", "bosun service portals", "-j", chainServices}},
	{tableFilter, "FORWARD", []string{"-m", "conntrack", "--ctstate", "NEW", "-m", "comment", "--comment", "bosun service portals", "-j", chainServices}},
	{tableFilter, "FORWARD", []string{"-m", "comment", "--comment", "bosun forwarding rules", "-j", chainForward}},
	{tableFilter, "OUTPUT", []string{"-m", "conntrack", "--ctstate", "NEW", "-m", "comment", "--comment", "bosun service portals", "-j", chainServices}},
}

// staticChains are the chains whose content does not depend on services.
func staticChains() map[string]map[string]string {
	return map[string]map[string]string{
		tableNAT: {
			chainMarkMasq: "-A BOSUN-MARK-MASQ -j MARK --or-mark " + masqMark + "\n",
			chainPostrouting: "-A BOSUN-POSTROUTING -m mark ! --mark " + masqMark + "/" + masqMark + " -j RETURN\n" +
				"-A BOSUN-POSTROUTING -j MARK --xor-mark " + masqMark + "\n" +
				`-A BOSUN-POSTROUTING -m comment --comment "bosun service traffic requiring SNAT" -j MASQUERADE` + "\n",
			chainCanary: "",
		},
		tableFilter: {
			chainForward: `-A BOSUN-FORWARD -m comment --comment "bosun forwarding rules" -m mark --mark ` + masqMark + "/" + masqMark + " -j ACCEPT\n" +
				`-A BOSUN-FORWARD -m comment --comment "bosun forwarding conntrack rule" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT` + "\n",
			chainCanary: "",
		},
	}
}

// serviceRules is everything one Service contributes to the ruleset. The proxier caches it per
// Service and regenerates it only when the Service or its Endpoints object changed.
type serviceRules struct {
	svc *corev1.Service   // identity of the inputs, for the cache
	ep  *corev1.Endpoints // may be nil

	dispatch  string            // nat BOSUN-SERVICES lines
	nodePorts string            // nat BOSUN-NODEPORTS lines
	rejects   string            // filter BOSUN-SERVICES lines (ports without endpoints)
	chains    map[string]string // nat BOSUN-SVC-* and BOSUN-SEP-* chain -> lines
	udp       []udpPort         // for clearing stale conntrack entries
}

// udpPort is a UDP service port and its endpoint IPs, to find conntrack entries to clear.
type udpPort struct {
	name      string // ns/svc:port
	clusterIP string
	nodePort  int32
	endpoints []string // IPs
}

// servicePortName is kube-proxy's ServicePortName.String(): "ns/name" or "ns/name:port".
func servicePortName(svc *corev1.Service, port string) string {
	s := svc.Namespace + "/" + svc.Name
	if port != "" {
		s += ":" + port
	}
	return s
}

// hashSuffix is kube-proxy's portProtoHash: 16 base32 characters of a sha256.
func hashSuffix(parts ...string) string {
	h := sha256.Sum256([]byte(strings.Join(parts, "")))
	return base32.StdEncoding.EncodeToString(h[:])[:16]
}

func svcChainName(spn, proto string) string { return chainSvcPrefix + hashSuffix(spn, proto) }
func sepChainName(spn, proto, endpoint string) string {
	return chainSepPrefix + hashSuffix(spn, proto, endpoint)
}

// proxied reports whether a Service gets rules: it has an allocated ClusterIP (headless and
// ExternalName services get none, nor services whose allocation failed).
func proxied(svc *corev1.Service) bool {
	if svc.Spec.Type == corev1.ServiceTypeExternalName {
		return false
	}
	ip := svc.Spec.ClusterIP
	if ip == "" || ip == corev1.ClusterIPNone || net.ParseIP(ip) == nil || net.ParseIP(ip).To4() == nil {
		return false
	}
	return !conditionFalse(svc.Status.Conditions, conditionAllocated)
}

func conditionFalse(conds []metav1.Condition, typ string) bool {
	for _, c := range conds {
		if c.Type == typ {
			return c.Status == metav1.ConditionFalse
		}
	}
	return false
}

// readyEndpoints returns the sorted, deduplicated "ip:port" of the ready addresses serving the
// service port named portName with protocol proto.
func readyEndpoints(ep *corev1.Endpoints, portName string, proto corev1.Protocol) []string {
	if ep == nil {
		return nil
	}
	var out []string
	for _, ss := range ep.Subsets {
		for _, p := range ss.Ports {
			if p.Name != portName || p.Protocol != proto {
				continue
			}
			for _, a := range ss.Addresses {
				if ip := net.ParseIP(a.IP); ip != nil && ip.To4() != nil {
					out = append(out, net.JoinHostPort(a.IP, strconv.Itoa(int(p.Port))))
				}
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func comment(s string) string {
	if strings.ContainsAny(s, " \t") {
		return `-m comment --comment "` + s + `"`
	}
	return "-m comment --comment " + s
}

// servicePort is one proxied port of a Service with its ready endpoints: the model that both
// modes render, as iptables chains (generateService) or as nftables objects (nftService).
type servicePort struct {
	name      string // servicePortName, ns/svc:port
	proto     string // "tcp" or "udp"
	clusterIP string
	port      int32
	nodePort  int32
	endpoints []string // sorted "ip:port" of the ready endpoints
	affinity  int      // ClientIP affinity timeout in seconds; 0 = none
}

// servicePorts lists the proxied ports of a Service (none unless proxied); ep may be nil.
func servicePorts(svc *corev1.Service, ep *corev1.Endpoints) []servicePort {
	if !proxied(svc) {
		return nil
	}
	affinity := 0
	if svc.Spec.SessionAffinity == corev1.ServiceAffinityClientIP {
		affinity = defaultAffinitySeconds
		if c := svc.Spec.SessionAffinityConfig; c != nil && c.ClientIP != nil && c.ClientIP.TimeoutSeconds != nil {
			affinity = int(*c.ClientIP.TimeoutSeconds)
		}
	}
	var out []servicePort
	for _, port := range svc.Spec.Ports {
		if port.Protocol != corev1.ProtocolTCP && port.Protocol != corev1.ProtocolUDP {
			continue // SCTP is not proxied
		}
		out = append(out, servicePort{
			name:      servicePortName(svc, port.Name),
			proto:     strings.ToLower(string(port.Protocol)),
			clusterIP: svc.Spec.ClusterIP,
			port:      port.Port,
			nodePort:  port.NodePort,
			endpoints: readyEndpoints(ep, port.Name, port.Protocol),
			affinity:  affinity,
		})
	}
	return out
}

// udpPorts returns what clearing stale UDP conntrack entries needs to know about ports.
func udpPorts(ports []servicePort) []udpPort {
	var out []udpPort
	for _, sp := range ports {
		if sp.proto != "udp" {
			continue
		}
		u := udpPort{name: sp.name, clusterIP: sp.clusterIP, nodePort: sp.nodePort}
		for _, e := range sp.endpoints {
			host, _, _ := net.SplitHostPort(e)
			u.endpoints = append(u.endpoints, host)
		}
		out = append(out, u)
	}
	return out
}

// generateService computes the rules of one Service. clusterCIDR may be empty.
func generateService(svc *corev1.Service, ep *corev1.Endpoints, clusterCIDR string) *serviceRules {
	r := &serviceRules{svc: svc, ep: ep, chains: map[string]string{}}
	ports := servicePorts(svc, ep)
	r.udp = udpPorts(ports)
	var dispatch, nodePorts, rejects strings.Builder
	for _, sp := range ports {
		proto, spn, eps, affinity := sp.proto, sp.name, sp.endpoints, sp.affinity
		svcChain := svcChainName(spn, proto)
		dst := fmt.Sprintf("-m %s -p %s -d %s/32 --dport %d", proto, proto, sp.clusterIP, sp.port)

		fmt.Fprintf(&dispatch, "-A %s %s %s -j %s\n", chainServices, comment(spn+" cluster IP"), dst, svcChain)
		if sp.nodePort != 0 {
			np := fmt.Sprintf("-m %s -p %s --dport %d", proto, proto, sp.nodePort)
			fmt.Fprintf(&nodePorts, "-A %s %s %s -j %s\n", chainNodePorts, comment(spn), np, chainMarkMasq)
			fmt.Fprintf(&nodePorts, "-A %s %s %s -j %s\n", chainNodePorts, comment(spn), np, svcChain)
		}
		if len(eps) == 0 {
			fmt.Fprintf(&rejects, "-A %s %s %s -j REJECT\n", chainServices, comment(spn+" has no endpoints"), dst)
			if sp.nodePort != 0 {
				fmt.Fprintf(&rejects, "-A %s %s -m addrtype --dst-type LOCAL -m %s -p %s --dport %d -j REJECT\n",
					chainServices, comment(spn+" has no endpoints"), proto, proto, sp.nodePort)
			}
		}
		// The SVC chain always exists (empty without endpoints, so that BOSUN-SERVICES does
		// not change when endpoints come and go).
		var sc strings.Builder
		if len(eps) > 0 {
			if clusterCIDR != "" {
				fmt.Fprintf(&sc, "-A %s %s %s ! -s %s -j %s\n", svcChain, comment(spn+" cluster IP"), dst, clusterCIDR, chainMarkMasq)
			} else {
				fmt.Fprintf(&sc, "-A %s %s %s -j %s\n", svcChain, comment(spn+" cluster IP"), dst, chainMarkMasq)
			}
		}
		seps := make([]string, len(eps))
		for i, e := range eps {
			seps[i] = sepChainName(spn, proto, e)
		}
		if affinity > 0 {
			for i, e := range eps {
				fmt.Fprintf(&sc, "-A %s %s -m recent --name %s --rcheck --seconds %d --reap -j %s\n",
					svcChain, comment(spn+" -> "+e), seps[i], affinity, seps[i])
			}
		}
		n := len(eps)
		for i, e := range eps {
			if i < n-1 {
				fmt.Fprintf(&sc, "-A %s %s -m statistic --mode random --probability %0.10f -j %s\n",
					svcChain, comment(spn+" -> "+e), 1.0/float64(n-i), seps[i])
			} else {
				fmt.Fprintf(&sc, "-A %s %s -j %s\n", svcChain, comment(spn+" -> "+e), seps[i])
			}
		}
		r.chains[svcChain] = sc.String()

		for i, e := range eps {
			host, _, _ := net.SplitHostPort(e)
			recent := ""
			if affinity > 0 {
				recent = " -m recent --name " + seps[i] + " --set"
			}
			r.chains[seps[i]] = fmt.Sprintf("-A %s %s -s %s/32 -j %s\n-A %s %s%s -m %s -p %s -j DNAT --to-destination %s\n",
				seps[i], comment(spn), host, chainMarkMasq,
				seps[i], comment(spn), recent, proto, proto, e)
		}
	}
	r.dispatch, r.nodePorts, r.rejects = dispatch.String(), nodePorts.String(), rejects.String()
	return r
}

// ruleset maps table -> chain -> rule lines ("-A CHAIN ...\n"...).
type ruleset map[string]map[string]string

// state is a complete ruleset: the chains shared by all services plus each service's own.
type state struct {
	global   ruleset                  // static chains and the aggregated dispatch chains
	services map[string]*serviceRules // by namespace/name
}

// newState aggregates the per-service rules (in key order) into the shared chains.
func newState(keys []string, services map[string]*serviceRules) *state {
	rs := staticChains()
	var dispatch, nodePorts, rejects strings.Builder
	for _, k := range keys {
		r := services[k]
		dispatch.WriteString(r.dispatch)
		nodePorts.WriteString(r.nodePorts)
		rejects.WriteString(r.rejects)
	}
	fmt.Fprintf(&dispatch, "-A %s %s -m addrtype --dst-type LOCAL -j %s\n", chainServices,
		comment("bosun service nodeports; NOTE: this must be the last rule in this chain"), chainNodePorts)
	rs[tableNAT][chainServices] = dispatch.String()
	rs[tableNAT][chainNodePorts] = nodePorts.String()
	rs[tableFilter][chainServices] = rejects.String()
	return &state{global: rs, services: services}
}

// changes is what one iptables-restore writes: chains to declare (flush) and fill, and chains
// to flush and delete.
type changes struct {
	write  ruleset             // table -> chain -> rules
	remove map[string][]string // table -> chains
}

func (c *changes) add(table, chain, rules string) {
	if c.write == nil {
		c.write = ruleset{}
	}
	if c.write[table] == nil {
		c.write[table] = map[string]string{}
	}
	c.write[table][chain] = rules
}

func (c *changes) empty() bool { return len(c.write) == 0 && len(c.remove) == 0 }

// diff computes the changes from prev to next. With prev nil (first sync, full resync, or after
// a failure) every chain of next is written and every chain of kernel (the BOSUN-* chains that
// exist) that next does not have is removed. Otherwise only services whose rules were
// regenerated are compared, and the shared chains are rewritten only when their text changed.
func diff(prev, next *state, kernel map[string][]string) changes {
	var c changes
	if prev == nil {
		for table, chains := range next.global {
			for name, rules := range chains {
				c.add(table, name, rules)
			}
		}
		for _, r := range next.services {
			for name, rules := range r.chains {
				c.add(tableNAT, name, rules)
			}
		}
		for table, chains := range kernel {
			for _, name := range chains {
				if _, ok := c.write[table][name]; !ok {
					c.remove = appendRemove(c.remove, table, name)
				}
			}
		}
		return c
	}
	for table, chains := range next.global {
		for name, rules := range chains {
			if old, ok := prev.global[table][name]; !ok || old != rules {
				c.add(table, name, rules)
			}
		}
	}
	for key, n := range next.services {
		o := prev.services[key]
		if o == n {
			continue
		}
		for name, rules := range n.chains {
			if o == nil {
				c.add(tableNAT, name, rules)
			} else if old, ok := o.chains[name]; !ok || old != rules {
				c.add(tableNAT, name, rules)
			}
		}
		if o != nil {
			for name := range o.chains {
				if _, ok := n.chains[name]; !ok {
					c.remove = appendRemove(c.remove, tableNAT, name)
				}
			}
		}
	}
	for key, o := range prev.services {
		if _, ok := next.services[key]; ok {
			continue
		}
		for name := range o.chains {
			c.remove = appendRemove(c.remove, tableNAT, name)
		}
	}
	return c
}

func appendRemove(m map[string][]string, table, chain string) map[string][]string {
	if m == nil {
		m = map[string][]string{}
	}
	m[table] = append(m[table], chain)
	return m
}

// restoreInput renders c as iptables-restore input: it declares (and so flushes) the chains
// it writes and those it removes, fills the first and deletes the second. Tables and chains
// are sorted so that the text is deterministic.
func restoreInput(c changes) []byte {
	var b bytes.Buffer
	for _, table := range []string{tableFilter, tableNAT} {
		w := slices.Sorted(maps.Keys(c.write[table]))
		d := slices.Sorted(slices.Values(c.remove[table]))
		if len(w) == 0 && len(d) == 0 {
			continue
		}
		b.WriteString("*" + table + "\n")
		for _, name := range w {
			b.WriteString(":" + name + " - [0:0]\n")
		}
		for _, name := range d {
			b.WriteString(":" + name + " - [0:0]\n")
		}
		for _, name := range w {
			b.WriteString(c.write[table][name])
		}
		for _, name := range d {
			b.WriteString("-X " + name + "\n")
		}
		b.WriteString("COMMIT\n")
	}
	return b.Bytes()
}
