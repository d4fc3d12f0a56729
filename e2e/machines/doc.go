// Package machines builds a small fleet of "machines" on one Linux host for multi-machine tests:
// each machine is a network namespace plus private mount, PID and UTS namespaces, with its own
// /etc, /usr, /var, /opt (overlays of the host's), its own /run, /tmp, /root, /home,
// /var/lib/containerd and /var/lib/bosun (per-machine directories), its own containerd and a real
// OpenSSH sshd. The machines share an L2 "switch": a bridge in a namespace of its own, which
// also runs a docker-registry holding the busybox test image.
//
//	              switch netns (bosun-lab<id>-sw)
//	           ┌──────────────── br0 .253 ─────────────────┐ docker-registry on .253:5000
//	           │           │            │                  │
//	       veth m1      veth m2      veth m3         veth host (only with Config.HostLink)
//	           │           │            │                  │
//	bosun-lab<id>-1  bosun-lab<id>-2  bosun-lab<id>-3     host root netns: bl<id>h .254
//	eth0 .1          eth0 .2          eth0 .3             (the operator's side)
//
// No namespace has a default route, so machines reach each other, the registry and (with
// HostLink) the host's lab address, and nothing else. The host gets no iptables rule.
//
// Each machine is anchored by a long-lived process: `nsenter --net=<netns> unshare --pid --fork
// --mount-proc --mount --uts --propagation private sh -c <setup>`, whose setup script mounts the
// overlays and bind mounts and then execs `sleep infinity` as the machine's PID 1. Commands run
// in the machine with `nsenter --target <pid1> --mount --net --pid --uts` (Machine.Exec,
// Machine.Start), each in its own process group with its output in a per-machine log. Killing the
// anchor kills every process of the machine, including containerd shims and containers (they
// live in the machine's PID namespace), and drops all of its mounts with its mount namespace.
//
// A sudo user (Config.SudoUser) is created with `useradd` inside the machine: /etc is an overlay,
// so /etc/passwd, /etc/shadow and /etc/sudoers.d change for that machine only.
//
// Use NewLab from tests (it registers Close with t.Cleanup and prints the machines' logs when the
// test fails) or Start from a program such as `make e2e`; CleanupStale removes what a crashed
// earlier run left behind. Everything needs root; tests skip otherwise.
package machines
