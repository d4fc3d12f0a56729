// Package bootstrap turns a reachable Linux machine into a Bosun node over SSH: an SSH client with
// strict host-key verification (directly, or through a jump host whose key is verified too), the
// operator's ed25519 identity, and a sequence of idempotent
// steps, each a check followed (only when the check fails) by an action. Re-running a bootstrap on
// a finished machine runs every check and changes nothing; interrupting one at any point leaves a
// state that the next run completes.
//
//	probe ──> packages ──> binary ──> credentials ──> config ──> service ──> (caller: wait Ready)
//	 OS,       containerd,  upload to   node client +   agent.yaml  systemd unit, or the
//	 arch,     runc, CNI,   temp name,  serving certs   (0600)      supervisor script under
//	 init,     iptables,    rename      from the CA,                setsid with a pid file
//	 sudo,     conntrack    (skipped    keys 0600 over
//	 disk      (apt/dnf)    if sum ok)  stdin
//
// Where systemd runs (/run/systemd/system exists) the agent is the unit bosun-agent.service
// (RenderUnit). Elsewhere — containers, the namespace machines of the e2e lab — a small POSIX
// shell supervisor (RenderSupervisor) runs the agent, restarts it with backoff when it exits,
// records its own pid and the agent's pid under /run, and on SIGTERM stops the agent and exits.
// Restarting the agent never stops pods: the agent adopts running containers on start.
//
// The credentials step installs the cluster CA (ca.crt, which the agent verifies the API and the
// operator's log proxy with), the node's client certificate signed by the cluster CA (node.crt,
// CN system:node:<name>) and its serving certificate signed by the node serving CA (serving.crt,
// the same CN, the node's name and IP as SANs), which only the operator's log proxy trusts. A
// serving certificate from the cluster CA, as bootstraps issued before the node serving CA
// existed, fails the check, so the next upgrade replaces it.
//
// Secrets (private keys) travel only on a session's stdin, never on a command line, and no
// command prints them, so command output can be recorded as events as it is.
package bootstrap
