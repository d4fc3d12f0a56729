// Package dns is the node agent's cluster DNS server, a small equivalent of CoreDNS's
// kubernetes plugin (with `pods insecure`) plus its forward plugin:
//
//	<svc>.<ns>.svc.<domain>                 A: the ClusterIP; for headless services the ready
//	                                        endpoint IPs; ExternalName services: a CNAME
//	<hostname>.<svc>.<ns>.svc.<domain>      A: one endpoint of a headless service (its hostname,
//	                                        or its IP with dashes)
//	_<port>._<proto>.<svc>.<ns>.svc.<domain> SRV for named ports
//	<a-b-c-d>.<ns>.pod.<domain>             A: the IP spelled in the name
//	anything else in <domain>               NXDOMAIN (with the SOA, so search-path lookups
//	                                        such as example.com.default.svc.cluster.local fail
//	                                        fast and the resolver tries the next suffix)
//	other names                             forwarded to the node's own resolvers (the host's
//	                                        /etc/resolv.conf, never a pod's)
//
// Answers carry TTL 5 s like CoreDNS's kubernetes plugin. The server answers on UDP and TCP at
// Config.Listen; the agent listens on the node's address in its pod network (the bridge
// gateway, e.g. 10.244.3.1:53), which every pod on the node can reach without a route out, and
// the pod worker writes `nameserver <that address>` and the search path
// `<ns>.svc.<domain> svc.<domain> <domain>` with `options ndots:5` into each pod's resolv.conf.
package dns
