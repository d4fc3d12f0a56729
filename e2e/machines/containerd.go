package machines

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// containerdConfig runs containerd with the default paths, which are the machine's own: /run
// and /var/lib/containerd are per-machine directories. The CRI plugin is off: Bosun's agent
// uses the Go client.
const containerdConfig = `version = 2
root = "/var/lib/containerd"
state = "/run/containerd"
disabled_plugins = ["io.containerd.grpc.v1.cri"]

[grpc]
  address = "/run/containerd/containerd.sock"

[ttrpc]
  address = "/run/containerd/containerd.sock.ttrpc"
`

// ContainerdSocket is the host path of the machine's containerd socket (the machine sees it
// at /run/containerd/containerd.sock).
func (m *Machine) ContainerdSocket() string {
	return filepath.Join(m.RunDir(), "containerd", "containerd.sock")
}

func (m *Machine) startContainerd(ctx context.Context) error {
	if err := os.MkdirAll(m.HostPath("/etc/containerd"), 0o755); err != nil {
		return fmt.Errorf("containerd config dir: %w", err)
	}
	if err := os.WriteFile(m.HostPath("/etc/containerd/config.toml"), []byte(containerdConfig), 0o644); err != nil {
		return fmt.Errorf("containerd config: %w", err)
	}
	p, err := m.Start(context.Background(), "/usr/bin/containerd", "--config", "/etc/containerd/config.toml")
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		if _, err := os.Stat(m.ContainerdSocket()); err == nil {
			return nil
		}
		select {
		case <-p.Done():
			b, _ := os.ReadFile(p.LogPath())
			return fmt.Errorf("containerd exited: %s", strings.TrimSpace(string(b)))
		case <-ctx.Done():
			return fmt.Errorf("waiting for containerd socket: %w", ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}
