package pods

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// The resolver limits the kubelet enforces (pkg/kubelet/network/dns).
const (
	maxNameservers = 3
	maxDNSSearch   = 32
	clusterNdots   = "5"
)

// podHostname is the pod's hostname: spec.hostname or the pod's name (at most 63 characters), or
// the FQDN when setHostnameAsFQDN asks for it.
func podHostname(pod *corev1.Pod) string {
	h := pod.Spec.Hostname
	if h == "" {
		h = pod.Name
	}
	if len(h) > 63 {
		h = strings.TrimRight(h[:63], "-.")
	}
	return h
}

// containerHostname is the hostname the runtime sets in the container's UTS namespace: none for
// a hostNetwork pod, which shares the node's.
func containerHostname(pod *corev1.Pod) string {
	if pod.Spec.HostNetwork {
		return ""
	}
	return podHostname(pod)
}

// podFQDN is hostname.subdomain.namespace.svc.domain when the pod has a subdomain.
func podFQDN(pod *corev1.Pod, clusterDomain string) string {
	if pod.Spec.Subdomain == "" {
		return ""
	}
	return fmt.Sprintf("%s.%s.%s.svc.%s", podHostname(pod), pod.Spec.Subdomain, pod.Namespace, clusterDomain)
}

// hostsFile renders the pod's /etc/hosts as the kubelet does for pods on the pod network.
func hostsFile(pod *corev1.Pod, podIP, clusterDomain string) []byte {
	var b bytes.Buffer
	b.WriteString("# Kubernetes-managed hosts file.\n")
	b.WriteString("127.0.0.1\tlocalhost\n")
	b.WriteString("::1\tlocalhost ip6-localhost ip6-loopback\n")
	b.WriteString("fe00::0\tip6-localnet\n")
	b.WriteString("fe00::0\tip6-mcastprefix\n")
	b.WriteString("fe00::1\tip6-allnodes\n")
	b.WriteString("fe00::2\tip6-allrouters\n")
	if podIP != "" {
		if fqdn := podFQDN(pod, clusterDomain); fqdn != "" {
			fmt.Fprintf(&b, "%s\t%s\t%s\n", podIP, fqdn, podHostname(pod))
		} else {
			fmt.Fprintf(&b, "%s\t%s\n", podIP, podHostname(pod))
		}
	}
	if len(pod.Spec.HostAliases) > 0 {
		b.WriteString("\n# Entries added by HostAliases.\n")
		for _, a := range pod.Spec.HostAliases {
			fmt.Fprintf(&b, "%s\t%s\n", a.IP, strings.Join(a.Hostnames, "\t"))
		}
	}
	return b.Bytes()
}

// hostnameFile is the pod's /etc/hostname: the node's for a hostNetwork pod.
func hostnameFile(pod *corev1.Pod, clusterDomain string) []byte {
	if pod.Spec.HostNetwork {
		if h, err := os.Hostname(); err == nil {
			return []byte(h + "\n")
		}
	}
	h := podHostname(pod)
	if pod.Spec.SetHostnameAsFQDN != nil && *pod.Spec.SetHostnameAsFQDN {
		if fqdn := podFQDN(pod, clusterDomain); fqdn != "" {
			h = fqdn
		}
	}
	return []byte(h + "\n")
}

// resolvConf is a parsed resolv.conf.
type resolvConf struct {
	nameservers []string
	searches    []string
	options     []string
}

func parseResolvConf(data []byte) resolvConf {
	var rc resolvConf
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := sc.Text()
		if i := strings.IndexAny(line, "#;"); i >= 0 {
			line = line[:i]
		}
		fields := strings.Fields(line)
		if len(fields) < 2 {
			continue
		}
		switch fields[0] {
		case "nameserver":
			rc.nameservers = append(rc.nameservers, fields[1])
		case "search", "domain":
			rc.searches = fields[1:]
		case "options":
			rc.options = append(rc.options, fields[1:]...)
		}
	}
	return rc
}

func (rc resolvConf) render() []byte {
	var b bytes.Buffer
	for _, ns := range rc.nameservers {
		fmt.Fprintf(&b, "nameserver %s\n", ns)
	}
	if len(rc.searches) > 0 {
		fmt.Fprintf(&b, "search %s\n", strings.Join(rc.searches, " "))
	}
	if len(rc.options) > 0 {
		fmt.Fprintf(&b, "options %s\n", strings.Join(rc.options, " "))
	}
	return b.Bytes()
}

// dnsInput is what resolv.conf generation needs.
type dnsInput struct {
	clusterDNS    []string
	clusterDomain string
	searchDomains []string // the node's, appended for ClusterFirst
	hostResolv    []byte   // the node's resolv.conf for Default
}

// podResolvConf renders the pod's /etc/resolv.conf from its dnsPolicy and dnsConfig.
func podResolvConf(pod *corev1.Pod, in dnsInput) []byte {
	policy := pod.Spec.DNSPolicy
	if policy == "" {
		policy = corev1.DNSClusterFirst
	}
	if policy == corev1.DNSClusterFirst && pod.Spec.HostNetwork {
		policy = corev1.DNSDefault
	}
	if policy == corev1.DNSClusterFirstWithHostNet {
		policy = corev1.DNSClusterFirst
	}
	if policy == corev1.DNSClusterFirst && len(in.clusterDNS) == 0 {
		policy = corev1.DNSDefault // the kubelet falls back with a warning
	}
	var rc resolvConf
	switch policy {
	case corev1.DNSClusterFirst:
		d := in.clusterDomain
		rc.nameservers = append([]string{}, in.clusterDNS...)
		rc.searches = append([]string{pod.Namespace + ".svc." + d, "svc." + d, d}, in.searchDomains...)
		rc.options = []string{"ndots:" + clusterNdots}
	case corev1.DNSDefault:
		rc = parseResolvConf(in.hostResolv)
	case corev1.DNSNone:
	}
	if dc := pod.Spec.DNSConfig; dc != nil {
		rc.nameservers = appendUnique(rc.nameservers, dc.Nameservers...)
		rc.searches = appendUnique(rc.searches, dc.Searches...)
		rc.options = mergeDNSOptions(rc.options, dc.Options)
	}
	if len(rc.nameservers) > maxNameservers {
		rc.nameservers = rc.nameservers[:maxNameservers]
	}
	if len(rc.searches) > maxDNSSearch {
		rc.searches = rc.searches[:maxDNSSearch]
	}
	return rc.render()
}

func appendUnique(list []string, more ...string) []string {
	seen := map[string]bool{}
	for _, s := range list {
		seen[s] = true
	}
	for _, s := range more {
		if !seen[s] {
			list = append(list, s)
			seen[s] = true
		}
	}
	return list
}

// mergeDNSOptions overrides options by name ("ndots:5" is named "ndots").
func mergeDNSOptions(existing []string, extra []corev1.PodDNSConfigOption) []string {
	var names []string
	values := map[string]string{}
	add := func(name, opt string) {
		if _, ok := values[name]; !ok {
			names = append(names, name)
		}
		values[name] = opt
	}
	for _, o := range existing {
		name, _, _ := strings.Cut(o, ":")
		add(name, o)
	}
	for _, o := range extra {
		opt := o.Name
		if o.Value != nil {
			opt += ":" + *o.Value
		}
		add(o.Name, opt)
	}
	out := make([]string, 0, len(names))
	for _, n := range names {
		out = append(out, values[n])
	}
	return out
}

// writeFileIfChanged writes data to path unless it holds it already (with mode). A changed file
// is replaced by a rename or, inPlace and existing, truncated and rewritten: the same inode, so
// that bind mounts of it see the new content.
func writeFileIfChanged(path string, data []byte, mode os.FileMode, inPlace bool) error {
	old, err := os.ReadFile(path)
	if err == nil && bytes.Equal(old, data) {
		if st, err := os.Stat(path); err == nil && st.Mode().Perm() == mode.Perm() {
			return nil
		}
	}
	if inPlace && err == nil {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
		if err == nil {
			_, err = f.Write(data)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
		}
		if err == nil {
			err = os.Chmod(path, mode)
		}
		if err != nil {
			return fmt.Errorf("writing %s: %w", path, err)
		}
		return nil
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, mode); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := os.Chmod(tmp, mode); err != nil { // not subject to the umask
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}
