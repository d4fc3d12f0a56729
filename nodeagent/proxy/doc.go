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
// the tables `ip bosun` and `ip bosun-0` … `ip bosun-15` (nothing else writes them; deleting
// them removes the whole proxy) and programs them over netlink (github.com/google/nftables),
// from the same service model (servicePorts). Each Service lives in one shard table, chosen by
// a hash of namespace/name; what is global lives in the main table ip bosun:
//
//	ip bosun-N, each:  nat-prerouting/nat-output (priority -100) ─> services:
//	                     ip daddr . l4proto . dport vmap @service-ips ─> service-<hash>-ns/name/proto/port
//	                     fib daddr local: l4proto . dport vmap @service-nodeports ─> external-... ─> service-...
//	                   service-...: numgen random mod N vmap { 0 : goto endpoint-..., ... } ─> endpoint-...: dnat
//	ip bosun:          filter-input/forward/output (priority -110, before DNAT): vmap @no-endpoint-services ─> reject-chain
//	                   nat-postrouting ─> masquerading: masquerade what the shards' mark-for-masquerade marked
//
// Sharding is what makes a change cheap: at every commit that adds a jump, a NAT or a lookup the
// kernel validates the jump graph of every table the transaction touched, which for one table
// of 10 000 services costs 200-300 ms whatever the change. A change to one service touches its
// shard (and the main table's small no-endpoint maps), so the kernel validates a sixteenth of
// the services. The shards' nat chains all hook at one priority; the kernel's NAT core stops at
// the first chain that sets up NAT for a new connection, so exactly one shard DNATs it, and
// only new connections go through the nat chains at all.
//
// A partial sync sends one netlink batch with only the changed services' chains (flushed and
// refilled), affinity sets and map elements (nft_sync.go); a full sync (start, FullSyncPeriod,
// after a failure, or when CheckPeriod finds a table or a base chain gone) declares everything
// again, table after table, and deletes the chains, sets and elements that no service wants,
// and shard tables beyond the current number of shards. Tables of other names (ip bosun-extra,
// iptables-nft's ip nat) are never touched.
package proxy
