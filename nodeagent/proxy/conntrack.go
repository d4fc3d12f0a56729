package proxy

import (
	"context"
	"fmt"
	"slices"
	"strconv"
)

// staleConntrack lists the `conntrack -D` argument lists that clear UDP flows made stale by going
// from old to new (either may be nil): flows DNATed to an endpoint that is gone would otherwise
// keep going there, and flows that hit the REJECT of a port without endpoints would keep being
// rejected once endpoints appear. TCP needs nothing: its connections fail and are retried.
func staleConntrack(old, new *serviceRules) [][]string {
	var o, n []udpPort
	if old != nil {
		o = old.udp
	}
	if new != nil {
		n = new.udp
	}
	return staleUDPConntrack(o, n)
}

// staleUDPConntrack is staleConntrack on the UDP ports of a Service before and after (nil:
// the Service does not exist), for either proxy mode.
func staleUDPConntrack(old, new []udpPort) [][]string {
	var out [][]string
	newPorts := map[string]udpPort{}
	for _, u := range new {
		newPorts[u.name] = u
	}
	oldPorts := map[string]udpPort{}
	for _, u := range old {
		oldPorts[u.name] = u
		n, ok := newPorts[u.name]
		for _, ip := range u.endpoints {
			if ok && slices.Contains(n.endpoints, ip) {
				continue
			}
			out = append(out, []string{"-D", "-p", "udp", "--orig-dst", u.clusterIP, "--dst-nat", ip})
			if u.nodePort != 0 {
				out = append(out, []string{"-D", "-p", "udp", "--dport", strconv.Itoa(int(u.nodePort)), "--dst-nat", ip})
			}
		}
	}
	for _, u := range new {
		if len(u.endpoints) == 0 || len(oldPorts[u.name].endpoints) > 0 {
			continue
		}
		out = append(out, []string{"-D", "-p", "udp", "--orig-dst", u.clusterIP})
		if u.nodePort != 0 {
			out = append(out, []string{"-D", "-p", "udp", "--dport", strconv.Itoa(int(u.nodePort))})
		}
	}
	return out
}

// clearConntrack runs each deletion; exit status 1 ("0 flow entries have been deleted") is
// success.
func clearConntrack(ctx context.Context, ex Executor, deletions [][]string) error {
	for _, args := range deletions {
		if _, err := ex.Run(ctx, nil, "conntrack", args...); err != nil && exitCode(err) != 1 {
			return fmt.Errorf("clearing stale UDP conntrack entries: %w", err)
		}
	}
	return nil
}
