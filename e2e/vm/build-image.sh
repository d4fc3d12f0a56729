#!/bin/bash
# build-image.sh OUT-DIR — build the Debian 12 (bookworm) VM of `make e2e-vm` into OUT-DIR:
#   disk.raw      ext4 root filesystem (systemd, openssh-server, containerd, runc, CNI plugins,
#                 iptables, conntrack, sudo), made with `mkfs.ext4 -d` from a debootstrap tree
#   vmlinuz       the image's kernel and initrd, for qemu -kernel/-initrd
#   initrd.img
#   host_key.pub  the image's SSH host key (ed25519), generated here, so tests pin it
# Packages come from the configured apt mirror; nothing else is downloaded. The guest gets the
# authorized SSH key at boot from the kernel command line (bosun.authorized_keys=<base64>), so
# one cached image serves any operator identity. Runs as root; no loop mounts.
set -euo pipefail

out=${1:?usage: build-image.sh OUT-DIR}
suite=bookworm
mirror=${BOSUN_VM_MIRROR:-$(sed -n 's/^URIs: *\(http[^ ]*\/debian\)$/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n1)}
mirror=${mirror:-http://deb.debian.org/debian}
packages=systemd,systemd-sysv,udev,dbus,kmod,iproute2,procps,openssh-server,sudo,linux-image-amd64,initramfs-tools,containerd,runc,containernetworking-plugins,iptables,conntrack,ca-certificates
size=${BOSUN_VM_DISK_SIZE:-6G}

for tool in debootstrap mkfs.ext4 ssh-keygen; do
  command -v "$tool" >/dev/null || { echo "build-image: $tool is missing: apt-get install debootstrap e2fsprogs openssh-client" >&2; exit 1; }
done

tmp=$out.tmp
rootfs=$tmp/rootfs
cleanup() {
  # debootstrap mounts proc and sys inside the tree; never leave them behind, nor delete through them.
  for m in proc sys dev/pts dev; do umount -l "$rootfs/$m" 2>/dev/null || true; done
}
trap cleanup EXIT
cleanup # an interrupted earlier build
rm -rf "$tmp"
mkdir -p "$tmp"

echo "build-image: debootstrap $suite from $mirror"
debootstrap --variant=minbase --include="$packages" "$suite" "$rootfs" "$mirror" >"$tmp/debootstrap.log" 2>&1 || {
  tail -n 40 "$tmp/debootstrap.log" >&2
  tail -n 40 "$rootfs/debootstrap/debootstrap.log" >&2 2>/dev/null || true
  echo "build-image: debootstrap failed; full log in $tmp/debootstrap.log" >&2
  exit 1
}

echo "build-image: configuring the guest"
echo bosun-vm >"$rootfs/etc/hostname"
printf '127.0.0.1\tlocalhost\n127.0.1.1\tbosun-vm\n::1\tlocalhost ip6-localhost ip6-loopback\n' >"$rootfs/etc/hosts"
echo '/dev/vda / ext4 defaults,errors=remount-ro 0 1' >"$rootfs/etc/fstab"

# The first virtio NIC on qemu's user-mode network: DHCP from qemu's built-in server.
cat >"$rootfs/etc/systemd/network/10-qemu.network" <<'NET'
[Match]
Name=en* eth*

[Network]
DHCP=ipv4
NET

# sshd: keys only, the ed25519 host key generated below.
rm -f "$rootfs"/etc/ssh/ssh_host_*
ssh-keygen -q -t ed25519 -N '' -C bosun-vm -f "$rootfs/etc/ssh/ssh_host_ed25519_key"
cat >"$rootfs/etc/ssh/sshd_config.d/bosun-vm.conf" <<'SSH'
HostKey /etc/ssh/ssh_host_ed25519_key
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
UseDNS no
SSH

# The operator's key arrives on the kernel command line; install it before sshd starts.
cat >"$rootfs/usr/local/sbin/bosun-vm-keys" <<'KEYS'
#!/bin/sh
# Installs root's authorized_keys from bosun.authorized_keys=<base64> on the kernel command line.
set -eu
for arg in $(cat /proc/cmdline); do
  case "$arg" in
    bosun.authorized_keys=*)
      mkdir -p -m 0700 /root/.ssh
      echo "${arg#bosun.authorized_keys=}" | base64 -d >/root/.ssh/authorized_keys
      chmod 0600 /root/.ssh/authorized_keys
      echo "bosun-vm-keys: installed root's authorized_keys"
      ;;
  esac
done
KEYS
chmod 0755 "$rootfs/usr/local/sbin/bosun-vm-keys"
cat >"$rootfs/etc/systemd/system/bosun-vm-keys.service" <<'UNIT'
[Unit]
Description=Install root's SSH authorized_keys from the kernel command line
Before=ssh.service

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/bosun-vm-keys

[Install]
WantedBy=multi-user.target
UNIT

passwd -R "$rootfs" -l root >/dev/null
chroot "$rootfs" systemctl enable systemd-networkd.service ssh.service containerd.service bosun-vm-keys.service >/dev/null 2>&1
# Timers that would compete for the (emulated) CPU during a test.
chroot "$rootfs" systemctl mask apt-daily.timer apt-daily-upgrade.timer man-db.timer e2scrub_all.timer fstrim.timer >/dev/null 2>&1 || true
chroot "$rootfs" apt-get clean
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/debootstrap

cp "$rootfs"/boot/vmlinuz-* "$tmp/vmlinuz"
cp "$rootfs"/boot/initrd.img-* "$tmp/initrd.img"
cp "$rootfs/etc/ssh/ssh_host_ed25519_key.pub" "$tmp/host_key.pub"

echo "build-image: mkfs.ext4 -d ($size)"
cleanup
mkfs.ext4 -q -F -L bosun-root -d "$rootfs" "$tmp/disk.raw" "$size"
rm -rf "$rootfs"
rm -rf "$out"
mv "$tmp" "$out"
echo "build-image: $out ready"
