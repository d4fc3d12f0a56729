// Package endpoints is the Endpoints controller: for every Service with a selector it keeps an
// Endpoints object of the same name listing the IPs and ports of the matching pods, ready ones
// under addresses and the others under notReadyAddresses, the way kube-controller-manager's
// endpoint controller does.
//
//	Service, Pod, Endpoints informers ──> queue of Service keys ──> reconcile:
//	    pods matching the selector ──> one subset per (address, ports) ──> RepackSubsets ──>
//	    write the Endpoints only when subsets or labels changed
//
// Kubernetes' rules, reimplemented: pods without an IP and terminal pods (Succeeded, Failed) are
// left out, terminating pods too unless spec.publishNotReadyAddresses; a named targetPort is
// looked up in each pod's container ports, so pods that number a name differently end up in
// different subsets; subsets come out in the canonical order of Kubernetes' RepackSubsets
// (addresses by IP then pod UID, ports and subsets by the MD5 of their dump.ForHash rendering);
// the Endpoints carries the Service's labels plus service.kubernetes.io/headless for headless
// Services. Services without a selector are left alone (their Endpoints are the user's), and the
// Endpoints of a Service that no longer exists is deleted.
//
// Not implemented: the 1000-address cap with the endpoints.kubernetes.io/over-capacity
// annotation, the last-change-trigger-time annotation, and EndpointSlices.
package endpoints
