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
package proxy
