// Package proxy is the node agent's service proxy, the equivalent of kube-proxy's iptables mode:
// it turns Services and Endpoints into nat and filter rules so that a ClusterIP or a NodePort
// reaches one of the service's ready endpoints.
//
//	PREROUTING/OUTPUT (nat) ─> BOSUN-SERVICES ─┬─> BOSUN-SVC-<hash> ─random─> BOSUN-SEP-<hash> ─> DNAT
//	                                           └─> BOSUN-NODEPORTS ─> BOSUN-MARK-MASQ, BOSUN-SVC-<hash>
//	POSTROUTING (nat) ─> BOSUN-POSTROUTING: MASQUERADE what BOSUN-MARK-MASQ marked
//	INPUT/FORWARD/OUTPUT (filter) ─> BOSUN-SERVICES: REJECT services without endpoints
//
// The ruleset is generated per service (rules.go, pure and golden-tested), diffed against what
// the last successful sync wrote (sync.go), and applied as one `iptables-restore --noflush`
// input that only declares the chains that changed: an endpoint change rewrites the service's
// BOSUN-SVC chain and its BOSUN-SEP chains, never the large dispatch chain. Syncs are
// rate-limited (Config.MinSyncPeriod), everything is rewritten on start and every
// Config.FullSyncPeriod, and a cheap check (Config.CheckPeriod) of the jump rules and of the
// BOSUN-PROXY-CANARY chains triggers a full sync when someone flushed the tables. The proxy only
// ever writes its own chains (the BOSUN-* names above) and its own jump rules (checked with -C
// before -I); other BOSUN-* chains, such as nodeagent/routes' BOSUN-POD-MASQ, are not its own.
//
// Config.Mode "nftables" is the equivalent of kube-proxy's nftables mode instead: the proxy owns
// the table `ip bosun` (nothing else writes it; deleting it removes the whole proxy) and programs
// it over netlink (github.com/google/nftables), from the same service model (servicePorts):
//
//	nat-prerouting/nat-output ─> services: ip daddr . l4proto . dport vmap @service-ips ─> service-<hash>-ns/name/proto/port
//	                                       fib daddr local: l4proto . dport vmap @service-nodeports ─> external-... ─> service-...
//	service-...: numgen random mod N vmap { 0 : goto endpoint-..., ... } ─> endpoint-...: dnat
//	filter-input/forward/output (priority -110, before DNAT): vmap @no-endpoint-services ─> reject-chain
//	nat-postrouting ─> masquerading: masquerade what mark-for-masquerade marked
//
// A partial sync sends one netlink batch with only the changed services' chains (flushed and
// refilled), affinity sets and map elements (nft_sync.go); a full sync (start, FullSyncPeriod,
// after a failure, or when CheckPeriod finds the table or a base chain gone) declares
// everything again and deletes the table's chains and sets that no service wants. With
// thousands of services the kernel's commit, which validates every chain reachable from the
// base chains, dominates the cost of each batch.
package proxy
