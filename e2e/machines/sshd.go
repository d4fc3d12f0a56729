package machines

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// SSHPort is the port sshd listens on in every machine.
const SSHPort = 22

// sshdConfig is the machines' sshd configuration: keys only, one fresh ed25519 host key, the
// authorized keys of every user in /etc/ssh/authorized_keys/<user>.
const sshdConfig = `Port 22
ListenAddress 0.0.0.0
HostKey /etc/ssh/ssh_host_ed25519_key
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
AuthorizedKeysFile /etc/ssh/authorized_keys/%u
StrictModes no
PidFile /run/sshd.pid
Subsystem sftp /usr/lib/openssh/sftp-server
LogLevel VERBOSE
`

// SSHAddr is the machine's SSH address ("192.168.77.1:22").
func (m *Machine) SSHAddr() string {
	return netip.AddrPortFrom(m.addr, SSHPort).String()
}

// HostKey is the machine's SSH host public key line ("ssh-ed25519 AAAA..."), generated freshly
// for this machine.
func (m *Machine) HostKey() string { return m.hostKey }

// startSSHD generates the machine's host key, installs the authorized keys and starts sshd.
func (m *Machine) startSSHD(ctx context.Context) error {
	script := `set -eu
rm -f /etc/ssh/ssh_host_*
ssh-keygen -q -t ed25519 -N '' -C "root@$(hostname)" -f /etc/ssh/ssh_host_ed25519_key
mkdir -p /etc/ssh/authorized_keys
cat > /etc/ssh/sshd_config
`
	cmd := m.Command(ctx, "sh", "-c", script)
	cmd.Stdin = strings.NewReader(sshdConfig)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("preparing sshd: %w: %s", err, bytes.TrimSpace(out))
	}
	pub, err := os.ReadFile(m.HostPath("/etc/ssh/ssh_host_ed25519_key.pub"))
	if err != nil {
		return fmt.Errorf("reading host key: %w", err)
	}
	m.hostKey = strings.TrimSpace(string(pub))
	keys := strings.Join(m.lab.cfg.AuthorizedKeys, "\n") + "\n"
	users := []string{"root"}
	if u := m.lab.cfg.SudoUser; u != "" {
		users = append(users, u)
	}
	for _, u := range users {
		if err := os.WriteFile(m.HostPath(filepath.Join("/etc/ssh/authorized_keys", u)), []byte(keys), 0o644); err != nil {
			return fmt.Errorf("authorized keys for %s: %w", u, err)
		}
	}
	if out, err := m.Exec(ctx, "/usr/sbin/sshd", "-t"); err != nil {
		return fmt.Errorf("checking sshd config: %w: %s", err, out)
	}
	p, err := m.Start(context.Background(), "/usr/sbin/sshd", "-D", "-e")
	if err != nil {
		return err
	}
	return m.waitTCP(ctx, p, m.SSHAddr())
}

// waitTCP waits until addr accepts connections from inside the machine, or p exits.
func (m *Machine) waitTCP(ctx context.Context, p *Process, addr string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		c, err := m.DialContext(ctx, "tcp", addr)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-p.Done():
			b, _ := os.ReadFile(p.LogPath())
			return fmt.Errorf("%s exited: %s", p.name, bytes.TrimSpace(b))
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w", addr, errors.Join(err, ctx.Err()))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// addSudoUser creates a user with passwordless sudo. /etc is the machine's overlay, so useradd
// changes only this machine's passwd, shadow and group files. The password field is "*" (no
// password, not locked): sshd without PAM refuses locked ("!") accounts even for key logins.
func (m *Machine) addSudoUser(ctx context.Context, user string) error {
	script := `set -eu
useradd --create-home --shell /bin/bash "$1"
usermod -p '*' "$1"
printf '%s ALL=(ALL:ALL) NOPASSWD: ALL\n' "$1" > "/etc/sudoers.d/bosun-$1"
chmod 0440 "/etc/sudoers.d/bosun-$1"
`
	if _, err := m.Exec(ctx, "sh", "-c", script, "adduser", user); err != nil {
		return fmt.Errorf("creating sudo user: %w", err)
	}
	return nil
}
