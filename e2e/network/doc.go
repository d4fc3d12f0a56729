// Package network is the end-to-end test of Bosun's pod network on three namespace machines
// (e2e/machines): the built `bosun` binary (BOSUN_BIN, set by `make e2e`) runs the operator on
// the host side of the lab and one agent per machine, joined with `bosun token create`; the pods
// come from a Git repository pushed with the git CLI and pull their image from the lab registry.
// The test proves pod-to-pod traffic across machines without NAT, Services by ClusterIP and by
// DNS name spreading over the backends of every machine, NodePorts on every machine, graceful
// removal of a deleted backend, and the restoration of a flushed nat table. Build tag e2e.
//
//	host: bosun operator on the lab's host address ── git repo (file system)
//	  │ lab switch 192.168.78.0/24
//	  ├── m1: containerd, bosun agent ── pod echo (10.244.a.0/24) ┐ host-gw routes
//	  ├── m2: containerd, bosun agent ── pod echo (10.244.b.0/24) ├ between the
//	  └── m3: containerd, bosun agent ── pod echo (10.244.c.0/24) ┘ pod CIDRs
package network
