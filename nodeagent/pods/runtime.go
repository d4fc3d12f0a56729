package pods

import (
	"context"
	"errors"
	"time"
)

// ErrContainerExists is wrapped by Runtime.CreateContainer's error when a container with the
// spec's ID already exists (a leftover of a crashed agent).
var ErrContainerExists = errors.New("container already exists")

// Runtime is the subset of containerd the pod workers need. nodeagent/runtime implements it
// against containerd; podstest has an in-memory fake for unit tests.
type Runtime interface {
	// EnsureImage makes ref present locally according to policy (Always pulls, IfNotPresent pulls
	// when missing, Never fails when missing), reporting progress lines through progress (may be
	// nil). Auth holds credentials from the pod's imagePullSecrets.
	EnsureImage(ctx context.Context, ref string, policy PullPolicy, auth []RegistryAuth, progress func(string)) (ImageInfo, error)
	// CreateContainer creates a container ready to start (namespaces, mounts and cgroup set up;
	// spec's network namespace and mount sources must exist) without running its process; what
	// keeps the process from being set up is StartContainer's error. An existing container with
	// that ID makes it fail with an error wrapping ErrContainerExists.
	CreateContainer(ctx context.Context, spec ContainerSpec) error
	// StartContainer starts the container's process (its output goes to spec.LogPath) and
	// returns the container's status.
	StartContainer(ctx context.Context, id string) (ContainerStatus, error)
	// StopContainer sends the stop signal (SIGTERM unless the image says otherwise), waits up to
	// grace, then SIGKILLs. Stopping a stopped or missing container succeeds.
	StopContainer(ctx context.Context, id string, grace time.Duration) error
	// RemoveContainer deletes the container and its task and snapshot. Missing = success.
	RemoveContainer(ctx context.Context, id string) error
	// ContainerStatus reports the container's state.
	ContainerStatus(ctx context.Context, id string) (ContainerStatus, error)
	// ListContainers lists every container the agent created (found by label), for adoption after
	// an agent restart and for cleanup.
	ListContainers(ctx context.Context) ([]ContainerStatus, error)
	// Exec runs cmd inside a running container (for exec probes) and returns its exit code and
	// combined output (truncated to a few KiB).
	Exec(ctx context.Context, id string, cmd []string, timeout time.Duration) (exitCode int, output []byte, err error)
	// Events delivers a notification each time a container's task exits (the worker then reads
	// ContainerStatus); the channel closes when ctx ends.
	Events(ctx context.Context) (<-chan ContainerEvent, error)
}

// Errors of Runtime.EnsureImage that a pod's status reports with reasons of their own, as the
// kubelet does (ErrImageNeverPull, InvalidImageName); they are not retried with a back-off.
var (
	// ErrImageNeverPull: the image is not on the node and imagePullPolicy is Never.
	ErrImageNeverPull = errors.New("image is not present on the node and imagePullPolicy is Never")
	// ErrInvalidImageName: the image reference cannot be parsed.
	ErrInvalidImageName = errors.New("invalid image reference")
)

// PullPolicy mirrors corev1.PullPolicy.
type PullPolicy string

// Pull policies.
const (
	PullAlways       PullPolicy = "Always"
	PullIfNotPresent PullPolicy = "IfNotPresent"
	PullNever        PullPolicy = "Never"
)

// RegistryAuth is one credential for a registry host (from a dockerconfigjson Secret).
type RegistryAuth struct {
	Host     string // "registry.example.com:5000" or "docker.io"
	Username string
	Password string
}

// ImageInfo describes a local image.
type ImageInfo struct {
	Ref    string
	Digest string
	// Default process settings from the image config, used when the pod does not override them.
	Entrypoint []string
	Cmd        []string
	Env        []string
	WorkingDir string
	User       string
	StopSignal string
}

// ContainerSpec is everything needed to create one container.
type ContainerSpec struct {
	ID     string // unique, e.g. "<pod-uid>-<container>-<restart>"
	Image  string
	Labels map[string]string // LabelPodUID, LabelPodName, ... (see labels.go)
	// Process
	Args       []string // the full argv (entrypoint/command + args already resolved)
	Env        []string // "KEY=value"
	WorkingDir string
	// UID and GID are the process's user and primary group; nil is the image's (a GID alone
	// is the image's user with that primary group).
	UID, GID *int64
	Hostname string
	// Namespaces: the pod's pinned network namespace path; containers of one pod share it.
	NetnsPath string
	// HostNetwork runs the container in the node's network and UTS namespaces (a hostNetwork
	// pod); NetnsPath and Hostname are empty then.
	HostNetwork bool
	Mounts      []Mount
	Resources   Resources
	Security    Security
	// LogPath is the file that receives stdout and stderr (one file per container restart).
	LogPath string
}

// Mount is a bind mount into the container.
type Mount struct {
	HostPath      string
	ContainerPath string
	ReadOnly      bool
}

// Security is what the container's securityContext asks of the runtime beyond its user. The
// zero value is the runtime's defaults: its default capabilities, a writable root filesystem,
// privilege escalation allowed.
type Security struct {
	// SupplementalGroups are added to the groups of the process (besides its primary group and
	// the groups the image's /etc/group lists the user in).
	SupplementalGroups []int64
	// Privileged gives the container every capability, the node's devices and a writable /sys.
	Privileged bool
	// ReadOnlyRootFilesystem mounts the image's root read-only; mounts keep their own mode.
	ReadOnlyRootFilesystem bool
	// NoNewPrivileges sets no_new_privs: setuid binaries and file capabilities grant nothing.
	NoNewPrivileges bool
	// SeccompRuntimeDefault confines the container's system calls with the runtime's default
	// seccomp profile (seccompProfile: RuntimeDefault); else it runs unconfined, as in Kubernetes.
	SeccompRuntimeDefault bool
	// AddCapabilities and DropCapabilities change the runtime's default capability set: "CAP_*"
	// names, or AllCapabilities. As the CRI does, adding all comes first, then dropping all,
	// then the single names.
	AddCapabilities, DropCapabilities []string
}

// AllCapabilities in Security's capability lists stands for every capability.
const AllCapabilities = "ALL"

// Resources become cgroup limits.
type Resources struct {
	MemoryLimitBytes int64 // 0 = none
	CPUShares        uint64
	CPUQuota         int64 // microseconds per CPUPeriod; 0 = none
	CPUPeriod        uint64
}

// ContainerState is the coarse state of a container.
type ContainerState string

// Container states.
const (
	StateCreated ContainerState = "Created"
	StateRunning ContainerState = "Running"
	StateExited  ContainerState = "Exited"
	StateUnknown ContainerState = "Unknown"
)

// ContainerStatus is what the runtime knows of a container.
type ContainerStatus struct {
	ID         string
	Labels     map[string]string
	Image      string
	ImageID    string
	State      ContainerState
	Pid        uint32
	StartedAt  time.Time
	FinishedAt time.Time
	ExitCode   int32
	// OOMKilled is set when the kernel's OOM killer ended the process.
	OOMKilled bool
	// Reason is "Completed", "Error", "OOMKilled" for exited containers.
	Reason  string
	Message string
}

// ContainerEvent says a container's task exited.
type ContainerEvent struct {
	ID       string
	ExitCode int32
}

// Network is the subset of pod networking the pod workers need; nodeagent/network implements it
// with a pinned network namespace per pod and CNI.
type Network interface {
	// SetupPod creates the pod's network namespace (idempotent: an existing one is returned) and
	// wires it with CNI; hostPorts become portmap entries.
	SetupPod(ctx context.Context, pod PodRef, ports []PortMapping) (PodNetwork, error)
	// TeardownPod runs CNI DEL and then removes the namespace. Missing = success.
	TeardownPod(ctx context.Context, pod PodRef) error
	// ListPods returns the pods that have a namespace, for cleanup after a restart.
	ListPods(ctx context.Context) ([]PodRef, error)
}

// PodRef identifies a pod on this node.
type PodRef struct {
	UID       string
	Namespace string
	Name      string
}

// PortMapping is one hostPort.
type PortMapping struct {
	HostPort      int32
	ContainerPort int32
	Protocol      string // "tcp" or "udp"
	HostIP        string
}

// PodNetwork is the result of SetupPod.
type PodNetwork struct {
	NetnsPath string
	IP        string
}
