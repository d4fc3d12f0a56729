package pods

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/clock"
)

// StatusWriter writes a pod's status through the API (the status subresource), and removes a
// pod that was deleted gracefully once the agent has stopped it.
type StatusWriter interface {
	UpdatePodStatus(ctx context.Context, pod *corev1.Pod) error
	// DeletePod deletes pod for good (grace period 0), if it is still the pod with that UID.
	DeletePod(ctx context.Context, pod *corev1.Pod) error
}

// ObjectGetter reads the Secrets and ConfigMaps that pods reference (env, volumes, pull secrets).
// It returns an error satisfying apierrors.IsNotFound for a missing object.
type ObjectGetter interface {
	GetSecret(ctx context.Context, namespace, name string) (*corev1.Secret, error)
	GetConfigMap(ctx context.Context, namespace, name string) (*corev1.ConfigMap, error)
}

// EventRecorder records Kubernetes events about a pod (Pulling, Pulled, Created, Started,
// Killing, BackOff, Unhealthy, FailedMount, ...).
type EventRecorder interface {
	Eventf(pod *corev1.Pod, eventType, reason, messageFmt string, args ...any)
}

// Mounter mounts the tmpfs of `emptyDir: {medium: Memory}` volumes. The default uses mount(2).
type Mounter interface {
	MountTmpfs(dir string, sizeBytes int64) error
	// Unmount unmounts dir; not mounted = success.
	Unmount(dir string) error
}

// ManagerConfig configures a Manager.
type ManagerConfig struct {
	NodeName string
	// DataDir holds the pods' directories (PodDir) with volumes, logs and generated /etc files.
	DataDir string

	Runtime  Runtime
	Network  Network
	Status   StatusWriter
	Objects  ObjectGetter
	Recorder EventRecorder
	// Services gives containers their service environment variables (enableServiceLinks); nil =
	// none.
	Services ServiceLister
	// Mounter mounts memory-backed emptyDirs; nil = mount(2).
	Mounter Mounter

	// ClusterDNS are the nameservers of dnsPolicy ClusterFirst; empty = pods get the node's
	// resolv.conf.
	ClusterDNS    []string
	ClusterDomain string // "cluster.local" when empty
	// NodeIP is status.hostIP and the pod IP of hostNetwork pods.
	NodeIP string
	// SearchDomains are appended to ClusterFirst pods' search list (the node's own search domains).
	SearchDomains []string
	// HostResolvConf is the node's resolv.conf for dnsPolicy Default; "/etc/resolv.conf" when empty.
	HostResolvConf string
	// NodeAllocatable answers resourceFieldRef env vars of containers without limits.
	NodeAllocatable corev1.ResourceList

	// ContainerLogMaxSize is the size past which a container's log file is rotated (default
	// DefaultContainerLogMaxSize, 10 MiB); ContainerLogMaxFiles the files kept per container
	// run, the current one included (default 5, at least 2). See logrotate.go.
	ContainerLogMaxSize  int64
	ContainerLogMaxFiles int

	// Metrics receives the workers' timings; nil = unregistered metrics.
	Metrics *Metrics

	Clock  clock.WithTicker // clock.RealClock{} when nil
	Logger *slog.Logger     // slog.Default() when nil
}

// Validate checks the configuration and names the first missing field.
func (c *ManagerConfig) Validate() error {
	var errs []error
	if c.NodeName == "" {
		errs = append(errs, errors.New("NodeName is required"))
	}
	if c.DataDir == "" {
		errs = append(errs, errors.New("DataDir is required"))
	}
	if c.Runtime == nil {
		errs = append(errs, errors.New("Runtime is required"))
	}
	if c.Network == nil {
		errs = append(errs, errors.New("Network is required"))
	}
	if c.Status == nil {
		errs = append(errs, errors.New("Status is required"))
	}
	if c.Objects == nil {
		errs = append(errs, errors.New("Objects is required"))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("pod manager config: %w", err)
	}
	return nil
}

func (c *ManagerConfig) setDefaults() {
	if c.ClusterDomain == "" {
		c.ClusterDomain = "cluster.local"
	}
	if c.HostResolvConf == "" {
		c.HostResolvConf = "/etc/resolv.conf"
	}
	if c.ContainerLogMaxSize <= 0 {
		c.ContainerLogMaxSize = DefaultContainerLogMaxSize
	}
	if c.ContainerLogMaxFiles <= 0 {
		c.ContainerLogMaxFiles = DefaultContainerLogMaxFiles
	}
	c.ContainerLogMaxFiles = max(c.ContainerLogMaxFiles, 2)
	if c.Clock == nil {
		c.Clock = clock.RealClock{}
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Recorder == nil {
		c.Recorder = discardRecorder{}
	}
	if c.Mounter == nil {
		c.Mounter = sysMounter{}
	}
	if c.Metrics == nil {
		c.Metrics = NewMetrics(nil)
	}
}

type discardRecorder struct{}

func (discardRecorder) Eventf(*corev1.Pod, string, string, string, ...any) {}
