// Package apiserver serves Bosun's objects over HTTPS with the Kubernetes REST and watch
// protocol, so that client-go, informers, the dynamic client and kubectl work against the
// operator. It authenticates people by bearer token and agents by client certificate signed by
// the cluster CA, authorizes them (admin, nodes, anonymous health checks), and enforces the Git
// rule: objects that Git manages take status writes only. Objects, lists and watch streams of
// Kubernetes' own kinds are protobuf for the clients that prefer it (client-go's typed clients),
// as with the Kubernetes API server; everything else, errors included, is JSON.
//
//	client ──TLS──> authenticate ─> parse path ─> authorize ─> handler ─> Store (etcd)
//	                (token | cert)   (requestInfo)  (+ Git rule)  get/list/watch/create/
//	                                                              update/patch/delete
//
// On first start New creates, under Config.DataDir (keys mode 0600):
//
//	pki/ca.crt, pki/ca.key            the cluster CA: signs the API's serving certificate, agents'
//	                                  client certificates and the operator's client certificate
//	                                  for agents; every client of the API trusts it
//	pki/node-serving-ca.crt, .key     the node serving CA: signs agents' serving certificates (their
//	                                  logs endpoint); only the log proxy trusts it, so a node's
//	                                  certificate never passes for the API server's
//	pki/apiserver.crt, .key           the serving certificate (reissued when names change)
//	admin-token.sha256                the admin token's SHA-256 (the token itself is never stored)
//	admin.kubeconfig                  CA data, server URL and admin token, mode 0600
//
// Joining nodes (join.go) get their client certificate from the cluster CA and their serving
// certificate from the node serving CA, for their own name and addresses only. The log proxy
// (podlogs.go) accepts an agent's certificate only for the node it dials (CN system:node:<name>,
// its InternalIP); during the transition it also accepts serving certificates that the cluster CA
// issued before the node serving CA existed, until each agent replaces its own at its next start.
package apiserver
