// Package apiserver serves Bosun's objects over HTTPS with the Kubernetes REST and watch
// protocol, so that client-go, informers, the dynamic client and kubectl work against the
// operator. It authenticates people by bearer token and agents by client certificate signed by
// the operator CA, authorizes them (admin, nodes, anonymous health checks), and enforces the Git
// rule: objects that Git manages take status writes only. Responses are JSON, except that watch
// streams of Kubernetes' own kinds are protobuf for the clients that prefer it (client-go's
// typed clients), as with the Kubernetes API server.
//
//	client ──TLS──> authenticate ─> parse path ─> authorize ─> handler ─> Store (etcd)
//	                (token | cert)   (requestInfo)  (+ Git rule)  get/list/watch/create/
//	                                                              update/patch/delete
//
// On first start New creates, under Config.DataDir:
//
//	pki/ca.crt, pki/ca.key            the operator CA (also signs agents' client certificates)
//	pki/apiserver.crt, .key           the serving certificate (reissued when names change)
//	admin-token.sha256                the admin token's SHA-256 (the token itself is never stored)
//	admin.kubeconfig                  CA data, server URL and admin token, mode 0600
package apiserver
