package endpoints

import (
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// BuildSubsets returns the canonical subsets of svc's Endpoints for the pods its selector matches.
func BuildSubsets(svc *corev1.Service, pods []*corev1.Pod) []corev1.EndpointSubset {
	var subsets []corev1.EndpointSubset
	publishNotReady := svc.Spec.PublishNotReadyAddresses
	for _, pod := range pods {
		if !shouldPodBeInEndpoints(pod, publishNotReady) {
			continue
		}
		addr, ok := addressFor(svc, pod)
		if !ok {
			continue
		}
		ready := publishNotReady || podReady(pod)
		if len(svc.Spec.Ports) == 0 {
			// Only headless Services may have no ports; their addresses still count.
			if svc.Spec.ClusterIP == corev1.ClusterIPNone {
				subsets = append(subsets, subsetOf(addr, nil, ready))
			}
			continue
		}
		for i := range svc.Spec.Ports {
			sp := &svc.Spec.Ports[i]
			port, ok := findPort(pod, sp)
			if !ok {
				continue // this pod does not serve this port
			}
			ep := corev1.EndpointPort{Name: sp.Name, Port: port, Protocol: protocolOr(sp.Protocol), AppProtocol: sp.AppProtocol}
			subsets = append(subsets, subsetOf(addr, []corev1.EndpointPort{ep}, ready))
		}
	}
	return RepackSubsets(subsets)
}

func subsetOf(addr corev1.EndpointAddress, ports []corev1.EndpointPort, ready bool) corev1.EndpointSubset {
	if ready {
		return corev1.EndpointSubset{Addresses: []corev1.EndpointAddress{addr}, Ports: ports}
	}
	return corev1.EndpointSubset{NotReadyAddresses: []corev1.EndpointAddress{addr}, Ports: ports}
}

// shouldPodBeInEndpoints is Kubernetes' rule: no terminal pods, no pods without an IP, no
// terminating pods unless they are to be published anyway.
func shouldPodBeInEndpoints(pod *corev1.Pod, includeTerminating bool) bool {
	if pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
		return false
	}
	if pod.Status.PodIP == "" && len(pod.Status.PodIPs) == 0 {
		return false
	}
	return includeTerminating || pod.DeletionTimestamp == nil
}

func podReady(pod *corev1.Pod) bool {
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// addressFor returns the pod's address for svc: its IP of the Service's family, the pod as target
// and its node; the hostname when the pod names this Service as its subdomain.
func addressFor(svc *corev1.Service, pod *corev1.Pod) (corev1.EndpointAddress, bool) {
	ip := podIP(svc, pod)
	if ip == "" {
		return corev1.EndpointAddress{}, false
	}
	addr := corev1.EndpointAddress{
		IP: ip,
		TargetRef: &corev1.ObjectReference{
			Kind: "Pod", Namespace: pod.Namespace, Name: pod.Name, UID: pod.UID,
		},
	}
	if pod.Spec.NodeName != "" {
		node := pod.Spec.NodeName
		addr.NodeName = &node
	}
	if pod.Spec.Hostname != "" && pod.Spec.Subdomain == svc.Name && pod.Namespace == svc.Namespace {
		addr.Hostname = pod.Spec.Hostname
	}
	return addr, true
}

// podIP picks the pod IP of the Service's (first) IP family; without a known family, the primary
// pod IP.
func podIP(svc *corev1.Service, pod *corev1.Pod) string {
	var wantV6, known bool
	switch {
	case len(svc.Spec.IPFamilies) > 0:
		wantV6, known = svc.Spec.IPFamilies[0] == corev1.IPv6Protocol, true
	case svc.Spec.ClusterIP != "" && svc.Spec.ClusterIP != corev1.ClusterIPNone:
		wantV6, known = strings.Contains(svc.Spec.ClusterIP, ":"), true
	}
	if !known {
		if pod.Status.PodIP != "" {
			return pod.Status.PodIP
		}
		return pod.Status.PodIPs[0].IP
	}
	ips := []string{pod.Status.PodIP}
	for _, p := range pod.Status.PodIPs {
		ips = append(ips, p.IP)
	}
	for _, ip := range ips {
		if ip != "" && strings.Contains(ip, ":") == wantV6 {
			return ip
		}
	}
	return ""
}

func protocolOr(p corev1.Protocol) corev1.Protocol {
	if p == "" {
		return corev1.ProtocolTCP
	}
	return p
}

// findPort resolves a Service port's targetPort on pod: a number as is (0 means the Service
// port), a name through the pod's container ports of the same protocol (sidecar init containers
// included, as Kubernetes does).
func findPort(pod *corev1.Pod, sp *corev1.ServicePort) (int32, bool) {
	tp := sp.TargetPort
	if tp.Type == intstr.Int {
		if tp.IntVal == 0 {
			return sp.Port, true
		}
		return tp.IntVal, true
	}
	proto := protocolOr(sp.Protocol)
	containers := pod.Spec.Containers
	for _, c := range pod.Spec.InitContainers {
		if c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways {
			containers = append(containers[:len(containers):len(containers)], c)
		}
	}
	for _, c := range containers {
		for _, p := range c.Ports {
			if p.Name == tp.StrVal && protocolOr(p.Protocol) == proto {
				return p.ContainerPort, true
			}
		}
	}
	return 0, false
}
