package framework

import corev1 "k8s.io/api/core/v1"

// wildcardIP is the host IP that a port without hostIP binds to.
const wildcardIP = "0.0.0.0"

// HostPort is one (hostIP, protocol, hostPort) claim.
type HostPort struct {
	IP       string
	Protocol corev1.Protocol
	Port     int32
}

type protoPort struct {
	protocol corev1.Protocol
	port     int32
}

// HostPortSet is the host ports used on a node, counted (two pods may claim the same port while
// one of them is assumed and the other not yet forgotten).
type HostPortSet map[protoPort]map[string]int

// PodHostPorts returns the host ports a pod's containers claim, defaulting the IP to 0.0.0.0
// and the protocol to TCP as Kubernetes does.
func PodHostPorts(pod *corev1.Pod) []HostPort {
	var out []HostPort
	add := func(cs []corev1.Container) {
		for i := range cs {
			for _, p := range cs[i].Ports {
				if p.HostPort <= 0 {
					continue
				}
				hp := HostPort{IP: p.HostIP, Protocol: p.Protocol, Port: p.HostPort}
				if hp.IP == "" {
					hp.IP = wildcardIP
				}
				if hp.Protocol == "" {
					hp.Protocol = corev1.ProtocolTCP
				}
				out = append(out, hp)
			}
		}
	}
	add(pod.Spec.InitContainers) // restartable init containers may declare ports too
	add(pod.Spec.Containers)
	return out
}

// Add records ports.
func (s HostPortSet) Add(ports []HostPort) {
	for _, p := range ports {
		k := protoPort{p.Protocol, p.Port}
		if s[k] == nil {
			s[k] = map[string]int{}
		}
		s[k][p.IP]++
	}
}

// Remove forgets ports.
func (s HostPortSet) Remove(ports []HostPort) {
	for _, p := range ports {
		k := protoPort{p.Protocol, p.Port}
		if s[k][p.IP]--; s[k][p.IP] <= 0 {
			delete(s[k], p.IP)
		}
		if len(s[k]) == 0 {
			delete(s, k)
		}
	}
}

// Conflicts reports whether p collides with a used port: same protocol and port, and the same IP
// or either side bound to 0.0.0.0.
func (s HostPortSet) Conflicts(p HostPort) bool {
	ips := s[protoPort{p.Protocol, p.Port}]
	if len(ips) == 0 {
		return false
	}
	if p.IP == wildcardIP {
		return true
	}
	return ips[p.IP] > 0 || ips[wildcardIP] > 0
}
