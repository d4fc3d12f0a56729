// Package runtime implements pods.Runtime against containerd (Go client v1.7, daemon 1.6): it
// pulls and imports images, creates containers that join the pod's pinned network namespace,
// with their user, groups, capabilities and other securityContext settings applied as
// containerd's CRI plugin applies them, runs them with their output in the pod's log files,
// stops them gracefully, and reports their status including OOM kills. Every call runs in one
// containerd namespace, applied here once.
//
// Tasks are children of containerd's shims, not of the agent: they keep running when the agent
// exits, and a new Runtime finds them again by their labels (ListContainers).
package runtime

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/containerd/containerd"

	"github.com/bosun-gitops/bosun/nodeagent/pods"
)

var _ pods.Runtime = (*Runtime)(nil)

// Defaults for Config fields left empty.
const (
	DefaultAddress     = "/run/containerd/containerd.sock"
	DefaultNamespace   = "bosun"
	DefaultSnapshotter = "overlayfs"
)

// Config configures a Runtime.
type Config struct {
	// Address is containerd's socket (DefaultAddress when empty).
	Address string
	// Namespace is the containerd namespace holding the agent's images and containers.
	Namespace string
	// Snapshotter unpacks images and holds container root filesystems ("overlayfs").
	Snapshotter string
	// Registry configures mirrors, plain-HTTP hosts and credentials.
	Registry RegistryConfig
	// ImportDir holds offline image archives (*.tar, OCI or Docker) imported at start.
	ImportDir string
	// Logger receives the runtime's logs; nil discards them.
	Logger *slog.Logger
}

// withDefaults fills empty fields.
func (c Config) withDefaults() Config {
	if c.Address == "" {
		c.Address = DefaultAddress
	}
	if c.Namespace == "" {
		c.Namespace = DefaultNamespace
	}
	if c.Snapshotter == "" {
		c.Snapshotter = DefaultSnapshotter
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Validate names the first invalid field.
func (c Config) Validate() error {
	return c.Registry.Validate()
}

// Runtime is a pods.Runtime backed by containerd.
type Runtime struct {
	cfg    Config
	client *containerd.Client
	log    *slog.Logger

	// pullLocks serialises pulls of one reference so that concurrent pod workers share a pull.
	pullMu    sync.Mutex
	pullLocks map[string]*sync.Mutex

	// known caches what EnsureImage learned of present, unpacked images (see lastKnown, currentKnown).
	knownMu sync.Mutex
	known   map[string]knownImage

	// fresh holds the containers created and not started yet (see StartContainer).
	freshMu sync.Mutex
	fresh   map[string]freshContainer

	// swapLimit says whether the host accounts swap in the memory cgroup: containers with a
	// memory limit then get the same memory+swap limit, as the CRI does.
	swapLimit bool

	// execSeq makes exec process IDs unique within this Runtime.
	execSeq atomic.Uint64

	stopOOM   context.CancelFunc
	oomDone   chan struct{}
	closeOnce sync.Once
	closeErr  error
}

// New connects to containerd, imports the offline images of cfg.ImportDir and starts watching
// OOM events. Close releases the connection.
func New(ctx context.Context, cfg Config) (*Runtime, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("runtime config: %w", err)
	}
	client, err := containerd.New(cfg.Address,
		containerd.WithDefaultNamespace(cfg.Namespace),
		containerd.WithTimeout(10*time.Second))
	if err != nil {
		return nil, fmt.Errorf("connecting to containerd at %s (is it running?): %w", cfg.Address, err)
	}
	r := &Runtime{
		cfg:       cfg,
		client:    client,
		log:       cfg.Logger.With("component", "runtime"),
		pullLocks: map[string]*sync.Mutex{},
		known:     map[string]knownImage{},
		fresh:     map[string]freshContainer{},
		oomDone:   make(chan struct{}),
	}
	selfCgroup, _ := os.ReadFile(procSelfCgroup)
	r.swapLimit = swapAccounted(cgroupRoot, selfCgroup)
	r.log.Debug("memory limits", "swapLimited", r.swapLimit)
	if cfg.ImportDir != "" {
		if err := r.ImportDir(ctx); err != nil {
			// A broken archive must not keep the node from running pods with other images.
			r.log.Error("importing offline images", "dir", cfg.ImportDir, "err", err)
		}
	}
	oomCtx, cancel := context.WithCancel(context.Background())
	r.stopOOM = cancel
	go r.watchOOM(oomCtx)
	return r, nil
}

// Close stops watching events and closes the containerd connection. Tasks keep running.
func (r *Runtime) Close() error {
	r.closeOnce.Do(func() {
		r.stopOOM()
		<-r.oomDone
		r.closeErr = r.client.Close()
	})
	return r.closeErr
}

// Client is the underlying containerd client (namespace applied by default), for diagnostics.
func (r *Runtime) Client() *containerd.Client { return r.client }

// Version reports containerd's version, for the Node's status.
func (r *Runtime) Version(ctx context.Context) (string, error) {
	v, err := r.client.Version(ctx)
	if err != nil {
		return "", fmt.Errorf("containerd version: %w", err)
	}
	return v.Version, nil
}

// ErrImageNotPresent is returned by EnsureImage for a missing image with PullNever.
var ErrImageNotPresent = pods.ErrImageNeverPull
