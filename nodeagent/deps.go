package nodeagent

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/bosun-gitops/bosun/nodeagent/pods"
	"github.com/containerd/containerd"
)

// DefaultDeps wires the agent's real parts: containerd's version for the Ready condition, and the
// pod workers (pods.Manager on nodeagent/runtime and nodeagent/network) with the node's service
// proxy, cluster DNS and pod routes beside them (stack.go).
func DefaultDeps(cfg Config) Deps {
	cv := &containerdVersion{socket: cfg.ContainerdSocket}
	return Deps{RuntimeVersion: cv.get, NewPodManager: NewNodeStack}
}

// containerdVersion asks containerd for its version, keeping one connection and redialing
// after failures.
type containerdVersion struct {
	socket string
	mu     sync.Mutex
	client *containerd.Client
}

func (c *containerdVersion) get(ctx context.Context) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.client == nil {
		cl, err := containerd.New(c.socket, containerd.WithTimeout(5*time.Second))
		if err != nil {
			return "", fmt.Errorf("connecting to containerd at %s: %w", c.socket, err)
		}
		c.client = cl
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	v, err := c.client.Version(ctx)
	if err != nil {
		c.client.Close()
		c.client = nil
		return "", fmt.Errorf("containerd at %s: %w", c.socket, err)
	}
	return "containerd://" + v.Version, nil
}

// logDir and logPath bind the pod workers' log file layout (pods.LogDir, pods.LogPath).
func logDir(dataDir, podUID, container string) string { return pods.LogDir(dataDir, podUID, container) }

func logPath(dataDir, podUID, container string, restartCount int32) string {
	return pods.LogPath(dataDir, podUID, container, restartCount)
}

var _ PodManager = (*pods.Manager)(nil)
