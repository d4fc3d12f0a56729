package repolayout

import (
	"encoding/base64"
	"fmt"
	"net/netip"
	"regexp"
	"sort"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/validate/content"
	metavalidation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"

	bosunres "github.com/bosun-gitops/bosun/internal/resource"
	bosunv1 "github.com/bosun-gitops/bosun/repo-layout/v1alpha1"
)

// The range of Cluster.spec.nodeCIDRMaskSize: a node's pod CIDR is at most a /16 and at least a
// /28 (14 pod addresses).
const (
	MinNodeCIDRMaskSize = 16
	MaxNodeCIDRMaskSize = 28
)

// NodeLeaseRenewInterval is how often agents renew their node's Lease, as the kubelet does.
const NodeLeaseRenewInterval = 10 * time.Second

// MinNodeMonitorGracePeriod is the shortest nodeMonitorGracePeriod bosun.yaml may set: two lease
// renewals, so that one late renewal (a busy node, a slow API call) does not make a healthy node
// NotReady and evict its pods.
const MinNodeMonitorGracePeriod = 2 * NodeLeaseRenewInterval

// validateCluster checks bosun.yaml's Cluster after defaulting.
func validateCluster(c *bosunv1.Cluster) field.ErrorList {
	var errs field.ErrorList
	p := field.NewPath("spec")
	pod, podErrs := parseIPv4CIDR(c.Spec.PodCIDR, p.Child("podCIDR"))
	errs = append(errs, podErrs...)
	mask := int(c.Spec.NodeCIDRMaskSize)
	if mask < MinNodeCIDRMaskSize || mask > MaxNodeCIDRMaskSize {
		errs = append(errs, field.Invalid(p.Child("nodeCIDRMaskSize"), c.Spec.NodeCIDRMaskSize, fmt.Sprintf(
			"must be between %d and %d: each node gets one /%d of podCIDR (24, the default, leaves 254 pod addresses per node)",
			MinNodeCIDRMaskSize, MaxNodeCIDRMaskSize, mask)))
	} else if pod.IsValid() && pod.Bits() > mask {
		errs = append(errs, field.Invalid(p.Child("podCIDR"), c.Spec.PodCIDR, fmt.Sprintf(
			"must be /%d or larger: it is split into one /%d per node (spec.nodeCIDRMaskSize)", mask, mask)))
	}
	svc, svcErrs := parseIPv4CIDR(c.Spec.ServiceCIDR, p.Child("serviceCIDR"))
	errs = append(errs, svcErrs...)
	if svc.IsValid() && svc.Bits() > 28 {
		errs = append(errs, field.Invalid(p.Child("serviceCIDR"), c.Spec.ServiceCIDR, "must be /28 or larger"))
	}
	if pod.IsValid() && svc.IsValid() && pod.Overlaps(svc) {
		errs = append(errs, field.Invalid(p.Child("serviceCIDR"), c.Spec.ServiceCIDR, fmt.Sprintf("overlaps podCIDR %s", c.Spec.PodCIDR)))
	}
	for _, msg := range validation.IsDNS1123Subdomain(c.Spec.ClusterDomain) {
		errs = append(errs, field.Invalid(p.Child("clusterDomain"), c.Spec.ClusterDomain, msg))
	}
	if d := c.Spec.NodeMonitorGracePeriod; d != nil && d.Duration < MinNodeMonitorGracePeriod {
		errs = append(errs, field.Invalid(p.Child("nodeMonitorGracePeriod"), d.Duration.String(), fmt.Sprintf(
			"must be at least %s: agents renew their node lease every %s, so a shorter grace period marks healthy nodes NotReady; the default is %s",
			MinNodeMonitorGracePeriod, NodeLeaseRenewInterval, DefaultNodeMonitorGracePeriod)))
	}
	if d := c.Spec.PodEvictionTimeout; d != nil && d.Duration < 0 {
		errs = append(errs, field.Invalid(p.Child("podEvictionTimeout"), d.Duration.String(), "must not be negative"))
	}
	if m := c.Spec.Upgrade.MaxUnavailable; m < 1 {
		errs = append(errs, field.Invalid(p.Child("upgrade", "maxUnavailable"), m, "must be at least 1"))
	}
	switch c.Spec.ProxyMode {
	case "", bosunv1.ProxyModeIPTables, bosunv1.ProxyModeNFTables:
	default:
		errs = append(errs, field.NotSupported(p.Child("proxyMode"), c.Spec.ProxyMode, []string{bosunv1.ProxyModeIPTables, bosunv1.ProxyModeNFTables}))
	}
	if w := c.Spec.Webhook; w != nil && w.SecretRef != nil {
		errs = append(errs, validateSecretKeyRef(w.SecretRef, p.Child("webhook", "secretRef"))...)
	}
	return errs
}

func validateSecretKeyRef(r *bosunv1.SecretKeyRef, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	if r.Namespace == "" {
		errs = append(errs, field.Required(p.Child("namespace"), "the Secret's namespace"))
	}
	for _, msg := range validation.IsDNS1123Label(r.Namespace) {
		if r.Namespace != "" {
			errs = append(errs, field.Invalid(p.Child("namespace"), r.Namespace, msg))
		}
	}
	if r.Name == "" {
		errs = append(errs, field.Required(p.Child("name"), "the Secret's name"))
	}
	for _, msg := range validation.IsDNS1123Subdomain(r.Name) {
		if r.Name != "" {
			errs = append(errs, field.Invalid(p.Child("name"), r.Name, msg))
		}
	}
	if r.Key == "" {
		errs = append(errs, field.Required(p.Child("key"), "the key of the Secret's data that holds the value"))
	}
	for _, msg := range validation.IsConfigMapKey(r.Key) {
		if r.Key != "" {
			errs = append(errs, field.Invalid(p.Child("key"), r.Key, msg))
		}
	}
	return errs
}

// checkWebhookSecret checks that the Secret that bosun.yaml's spec.webhook.secretRef names is
// declared in the same commit, with the key: the operator reads the webhook secret from it.
func (l *loader) checkWebhookSecret() {
	if l.cluster == nil || l.cluster.invalid {
		return
	}
	c := l.cluster.Object.Object.(*bosunv1.Cluster)
	if c.Spec.Webhook == nil || c.Spec.Webhook.SecretRef == nil {
		return
	}
	ref := c.Spec.Webhook.SecretRef
	for _, o := range l.objects {
		if o.Resource != bosunres.Secrets || o.Object.Object.GetNamespace() != ref.Namespace || o.Object.Object.GetName() != ref.Name {
			continue
		}
		if o.invalid {
			return // its own errors say what to fix
		}
		data := o.Object.Object.(*corev1.Secret).Data
		if _, ok := data[ref.Key]; !ok {
			keys := make([]string, 0, len(data))
			for k := range data {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			l.errs = append(l.errs, l.cluster.doc.errorf("spec.webhook.secretRef.key", "Invalid value: %q: Secret %s/%s (%s:%d) has no such key (its keys: %s)",
				ref.Key, ref.Namespace, ref.Name, o.File, o.Line, strings.Join(keys, ", ")))
		}
		return
	}
	l.errs = append(l.errs, l.cluster.doc.errorf("spec.webhook.secretRef.name",
		"Not found: Secret %s/%s is not declared in the repository; add it (with the key %q) or fix the reference", ref.Namespace, ref.Name, ref.Key))
}

// parseIPv4CIDR parses a network address in CIDR form; Bosun's pod and service networks are
// IPv4 only for now.
func parseIPv4CIDR(s string, p *field.Path) (netip.Prefix, field.ErrorList) {
	pr, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, field.ErrorList{field.Invalid(p, s, "must be an IPv4 CIDR such as 10.244.0.0/16")}
	}
	if !pr.Addr().Is4() {
		return netip.Prefix{}, field.ErrorList{field.Invalid(p, s, "must be an IPv4 CIDR; IPv6 is not supported yet")}
	}
	if pr.Masked() != pr {
		return netip.Prefix{}, field.ErrorList{field.Invalid(p, s, fmt.Sprintf("host bits are set; did you mean %s?", pr.Masked()))}
	}
	return pr, nil
}

// unixUser is what useradd accepts (and what OpenSSH will log in as).
var unixUser = regexp.MustCompile(`^[a-z_][a-z0-9_-]{0,31}$`)

// validateMachine checks a Machine after defaulting.
func validateMachine(m *bosunv1.Machine) field.ErrorList {
	var errs field.ErrorList
	p := field.NewPath("spec")
	s := &m.Spec
	errs = append(errs, validateSSHEndpoint(p, s.Address, s.Port, s.User, s.HostKey)...)
	if j := s.ProxyJump; j != nil {
		jp := p.Child("proxyJump")
		errs = append(errs, validateSSHEndpoint(jp, j.Address, j.Port, j.User, j.HostKey)...)
		if j.Address == s.Address && j.Port == s.Port {
			errs = append(errs, field.Invalid(jp.Child("address"), j.Address, "is the machine itself; a jump host is another machine that reaches this one"))
		}
	}
	errs = append(errs, metavalidation.ValidateLabels(s.Labels, p.Child("labels"))...)
	type keyEffect struct{ key, effect string }
	seen := map[keyEffect]bool{}
	for i, t := range s.Taints {
		tp := p.Child("taints").Index(i)
		if t.Key == "" {
			errs = append(errs, field.Required(tp.Child("key"), ""))
		}
		for _, msg := range content.IsLabelKey(t.Key) {
			if t.Key != "" {
				errs = append(errs, field.Invalid(tp.Child("key"), t.Key, msg))
			}
		}
		for _, msg := range content.IsLabelValue(t.Value) {
			errs = append(errs, field.Invalid(tp.Child("value"), t.Value, msg))
		}
		if t.Effect == "" {
			errs = append(errs, field.Required(tp.Child("effect"), "one of NoSchedule, PreferNoSchedule, NoExecute"))
		} else {
			errs = append(errs, validateTaintEffect(t.Effect, tp.Child("effect"))...)
		}
		k := keyEffect{t.Key, string(t.Effect)}
		if seen[k] {
			errs = append(errs, field.Duplicate(tp, t.Key+":"+string(t.Effect)))
		}
		seen[k] = true
		if t.TimeAdded != nil {
			errs = append(errs, field.Forbidden(tp.Child("timeAdded"), "set by Bosun"))
		}
	}
	if s.PodCIDR != "" {
		pr, perrs := parseIPv4CIDR(s.PodCIDR, p.Child("podCIDR"))
		errs = append(errs, perrs...)
		if pr.IsValid() && pr.Masked() != pr {
			errs = append(errs, field.Invalid(p.Child("podCIDR"), s.PodCIDR, fmt.Sprintf("must be a network address (%s)", pr.Masked())))
		}
	}
	return errs
}

// validateSSHEndpoint checks how an SSH server is reached: the Machine itself or its jump host.
func validateSSHEndpoint(p *field.Path, address string, port int32, user, hostKey string) field.ErrorList {
	var errs field.ErrorList
	switch {
	case address == "":
		errs = append(errs, field.Required(p.Child("address"), "the IP address or DNS name Bosun connects to over SSH"))
	default:
		if _, err := netip.ParseAddr(address); err != nil {
			if msgs := validation.IsDNS1123Subdomain(address); len(msgs) > 0 {
				errs = append(errs, field.Invalid(p.Child("address"), address, "must be an IP address or a DNS name"))
			}
		}
	}
	for _, msg := range validation.IsValidPortNum(int(port)) {
		errs = append(errs, field.Invalid(p.Child("port"), port, msg))
	}
	if !unixUser.MatchString(user) {
		errs = append(errs, field.Invalid(p.Child("user"), user, "must be a Unix user name (lower case letters, digits, '_' and '-', starting with a letter or '_', at most 32 characters)"))
	}
	if hostKey != "" {
		if err := checkHostKey(hostKey); err != nil {
			errs = append(errs, field.Invalid(p.Child("hostKey"), hostKey, err.Error()))
		}
	}
	return errs
}

// checkHostKey accepts an OpenSSH public key ("ssh-ed25519 AAAA...", as in known_hosts without
// the host name) or a SHA-256 fingerprint as ssh-keygen -l prints it ("SHA256:...").
func checkHostKey(k string) error {
	if fp, ok := strings.CutPrefix(k, "SHA256:"); ok {
		b, err := base64.RawStdEncoding.DecodeString(strings.TrimRight(fp, "="))
		if err != nil || len(b) != 32 {
			return fmt.Errorf("a SHA256 fingerprint is 43 base64 characters, as printed by ssh-keygen -lf")
		}
		return nil
	}
	if _, _, _, rest, err := ssh.ParseAuthorizedKey([]byte(k)); err != nil || len(strings.TrimSpace(string(rest))) > 0 {
		return fmt.Errorf(`must be an SSH public key such as "ssh-ed25519 AAAA..." (from ssh-keyscan or /etc/ssh/ssh_host_ed25519_key.pub) or a "SHA256:..." fingerprint`)
	}
	return nil
}

// checkMachines runs the Machine checks that need the Cluster or other Machines.
func (l *loader) checkMachines(cluster *bosunv1.Cluster) {
	podCIDR, _ := netip.ParsePrefix(cluster.Spec.PodCIDR)
	addrs := map[string]loadedObject{}
	for _, o := range l.objects {
		if o.Resource != bosunres.Machines {
			continue
		}
		if o.invalid {
			continue
		}
		m := o.Object.Object.(*bosunv1.Machine)
		if m.Spec.HostKey == "" && !cluster.Spec.TrustOnFirstUse {
			l.errs = append(l.errs, o.doc.errorf("spec.hostKey",
				"Required value: pin the machine's SSH host key (ssh-keyscan -t ed25519 %s), or set spec.trustOnFirstUse: true in %s", m.Spec.Address, clusterFile))
		}
		if j := m.Spec.ProxyJump; j != nil && j.HostKey == "" && !cluster.Spec.TrustOnFirstUse {
			l.errs = append(l.errs, o.doc.errorf("spec.proxyJump.hostKey",
				"Required value: pin the jump host's SSH host key (ssh-keyscan -t ed25519 %s), or set spec.trustOnFirstUse: true in %s", j.Address, clusterFile))
		}
		if pr, err := netip.ParsePrefix(m.Spec.PodCIDR); err == nil && podCIDR.IsValid() {
			if !podCIDR.Contains(pr.Addr()) {
				l.errs = append(l.errs, o.doc.errorf("spec.podCIDR", "Invalid value: %q: must be inside the cluster's podCIDR %s", m.Spec.PodCIDR, cluster.Spec.PodCIDR))
			} else if mask := int(cluster.Spec.NodeCIDRMaskSize); pr.Bits() != mask {
				l.errs = append(l.errs, o.doc.errorf("spec.podCIDR", "Invalid value: %q: must be a /%d, the size of every node's pod CIDR (%s spec.nodeCIDRMaskSize)", m.Spec.PodCIDR, mask, clusterFile))
			}
		}
		at := fmt.Sprintf("%s:%d", m.Spec.Address, m.Spec.Port)
		if prev, dup := addrs[at]; dup {
			l.errs = append(l.errs, o.doc.errorf("spec.address", "Duplicate value: %s is also Machine %s at %s:%d", at, prev.Object.Object.GetName(), prev.File, prev.Line))
			continue
		}
		addrs[at] = o
	}
}
