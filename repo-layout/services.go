package repolayout

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"github.com/bosun-gitops/bosun/internal/resource"
	bosunv1 "github.com/bosun-gitops/bosun/repo-layout/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// serviceFields are the fields of a Service that checkServiceAddresses reports on, to keep the
// lines of when the document's nodes are released.
func serviceFields(svc *corev1.Service) []string {
	fields := []string{"spec.clusterIP"}
	for i, p := range svc.Spec.Ports {
		if p.NodePort != 0 {
			fields = append(fields, fmt.Sprintf("spec.ports[%d].nodePort", i))
		}
	}
	return fields
}

// checkServiceAddresses checks the addresses Services ask for against the cluster, as the API
// server does when it allocates them: a spec.clusterIP must be a usable address of the cluster's
// service range, not the one kept for the API service, and no two Services may ask for the same
// cluster IP or node port. Otherwise the commit would apply and the Services fail later, one by
// one, in their events.
func (l *loader) checkServiceAddresses(cluster *bosunv1.Cluster) {
	rng, err := netip.ParsePrefix(cluster.Spec.ServiceCIDR)
	if err != nil || !rng.Addr().Is4() {
		rng = netip.Prefix{} // reported on bosun.yaml
	}
	type claim struct {
		o     loadedObject
		field string
	}
	ips := map[netip.Addr]claim{}
	ports := map[int32]claim{}
	for _, o := range l.objects {
		svc, ok := o.Object.Object.(*corev1.Service)
		if !ok || o.Resource != resource.Services || o.invalid {
			continue
		}
		if ip, err := netip.ParseAddr(svc.Spec.ClusterIP); err == nil && rng.IsValid() {
			switch {
			case !rng.Contains(ip):
				l.errs = append(l.errs, o.doc.errorf("spec.clusterIP",
					"%s is not in the cluster's service range %s (bosun.yaml spec.serviceCIDR); choose an address in it, or remove spec.clusterIP to get one allocated",
					ip, rng))
			case ip == rng.Addr() || ip == lastAddr(rng):
				l.errs = append(l.errs, o.doc.errorf("spec.clusterIP",
					"%s is the network or broadcast address of the service range %s; choose another address, or remove spec.clusterIP", ip, rng))
			case ip == rng.Addr().Next() && !(svc.Namespace == metav1.NamespaceDefault && svc.Name == "kubernetes"):
				l.errs = append(l.errs, o.doc.errorf("spec.clusterIP",
					"%s is reserved for the API service default/kubernetes; choose another address, or remove spec.clusterIP", ip))
			default:
				if prev, dup := ips[ip]; dup {
					l.errs = append(l.errs, o.doc.errorf("spec.clusterIP",
						"cluster IP %s is also asked for by %s at %s:%d; every Service needs its own, remove spec.clusterIP from one of them",
						ip, describe(keyOf(prev.o.Object)), prev.o.File, prev.o.doc.lineOf(prev.field)))
				} else {
					ips[ip] = claim{o, "spec.clusterIP"}
				}
			}
		}
		for i, p := range svc.Spec.Ports {
			if p.NodePort == 0 {
				continue
			}
			f := fmt.Sprintf("spec.ports[%d].nodePort", i)
			prev, dup := ports[p.NodePort]
			switch {
			case !dup:
				ports[p.NodePort] = claim{o, f}
			case keyOf(prev.o.Object) != keyOf(o.Object):
				l.errs = append(l.errs, o.doc.errorf(f,
					"node port %d is also asked for by %s at %s:%d; every Service needs its own, remove nodePort from one of them to get one allocated",
					p.NodePort, describe(keyOf(prev.o.Object)), prev.o.File, prev.o.doc.lineOf(prev.field)))
			}
		}
	}
}

// lastAddr returns the highest address of the IPv4 prefix p, its broadcast address.
func lastAddr(p netip.Prefix) netip.Addr {
	a := p.Masked().Addr().As4()
	n := binary.BigEndian.Uint32(a[:]) | (1<<(32-p.Bits()) - 1)
	binary.BigEndian.PutUint32(a[:], n)
	return netip.AddrFrom4(a)
}
