// Package vm is the slow end-to-end tier of `make e2e-vm` (build tag e2evm): it boots a real
// Debian 12 VM with systemd as PID 1 under qemu (`-accel tcg`) and has the operator, started from
// the built binary (BOSUN_BIN), bootstrap it over SSH from a Git repository, proving the systemd
// path of package bootstrap that the namespace machines of e2e/machines cannot exercise.
//
//	test ── git push ──> bosun operator (127.0.0.1:API)
//	                      │ ssh 127.0.0.1:SSH (pinned host key)   ^ https://10.0.2.100:API
//	                      v                                       │ guestfwd: a relay per connection
//	        qemu -accel tcg, user-mode network restrict=on ───────┘
//	          hostfwd 127.0.0.1:SSH → guest :22; no other way out
//	          Debian bookworm: systemd, sshd, containerd, runc, CNI plugins, iptables
//
// build-image.sh makes the disk once from the configured apt mirror (debootstrap, then
// `mkfs.ext4 -d`, no loop mounts) into ~/.cache/bosun/vm-<version>/; the version is a digest of
// the script, so changing the recipe rebuilds it. Each run boots the cached disk with
// `snapshot=on`, so the image stays pristine. The operator's public key reaches the guest on the
// kernel command line; the image's host key is generated at build time and pinned by the test.
package vm
