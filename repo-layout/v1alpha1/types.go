// Package v1alpha1 defines Bosun's own kinds in the bosun.dev/v1alpha1 API group: Cluster
// (bosun.yaml), Machine (machines/*.yaml) and GitSync (the operator's sync status). Field names are
// part of the repository format and must not change.
package v1alpha1

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// Group and Version of Bosun's kinds.
const (
	Group   = "bosun.dev"
	Version = "v1alpha1"
)

// SchemeGroupVersion is bosun.dev/v1alpha1.
var SchemeGroupVersion = schema.GroupVersion{Group: Group, Version: Version}

// Cluster holds cluster-wide settings. A repository has at most one, in bosun.yaml.
type Cluster struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              ClusterSpec `json:"spec,omitempty"`
}

// ClusterSpec is the desired cluster configuration.
type ClusterSpec struct {
	// PodCIDR is split into one subnet per node, of NodeCIDRMaskSize bits.
	PodCIDR string `json:"podCIDR,omitempty"`
	// NodeCIDRMaskSize is the prefix length of each node's pod CIDR (default 24: 254 pod
	// addresses per node), as kube-controller-manager's --node-cidr-mask-size.
	NodeCIDRMaskSize int32 `json:"nodeCIDRMaskSize,omitempty"`
	// ServiceCIDR is where ClusterIPs are allocated from.
	ServiceCIDR   string `json:"serviceCIDR,omitempty"`
	ClusterDomain string `json:"clusterDomain,omitempty"`
	// NodeMonitorGracePeriod is how long a node lease may go unrenewed before the node is NotReady.
	NodeMonitorGracePeriod *metav1.Duration `json:"nodeMonitorGracePeriod,omitempty"`
	// PodEvictionTimeout is how long pods stay on a NotReady node before they are evicted.
	PodEvictionTimeout *metav1.Duration `json:"podEvictionTimeout,omitempty"`
	// TrustOnFirstUse lets machines without a pinned hostKey be trusted on first connection.
	TrustOnFirstUse bool          `json:"trustOnFirstUse,omitempty"`
	Upgrade         UpgradePolicy `json:"upgrade,omitempty"`
	// ProxyMode is how the agents of bootstrapped machines program services: "iptables" (the
	// default) or "nftables". A machine takes a change at its next bootstrap.
	ProxyMode string `json:"proxyMode,omitempty"`
	// Webhook configures the operator's webhook receiver.
	Webhook *WebhookSpec `json:"webhook,omitempty"`
}

// WebhookSpec configures the operator's webhook receiver (/hooks/{github,gitea,gitlab,generic}).
type WebhookSpec struct {
	// SecretRef names the key of a Secret declared in the repository that holds the webhook
	// secret. Without it the operator uses DATA-DIR/webhook-secret (or --webhook-secret-file).
	SecretRef *SecretKeyRef `json:"secretRef,omitempty"`
}

// SecretKeyRef names one key of a Secret.
type SecretKeyRef struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	Key       string `json:"key"`
}

// The proxy modes of ClusterSpec.ProxyMode (nodeagent/proxy's).
const (
	ProxyModeIPTables = "iptables"
	ProxyModeNFTables = "nftables"
)

// UpgradePolicy bounds agent upgrades.
type UpgradePolicy struct {
	MaxUnavailable int32 `json:"maxUnavailable,omitempty"`
}

// ClusterList is a list of Clusters.
type ClusterList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Cluster `json:"items"`
}

// Machine is one VM or bare-metal host that Bosun bootstraps into a node over SSH.
type Machine struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              MachineSpec   `json:"spec,omitempty"`
	Status            MachineStatus `json:"status,omitempty"`
}

// MachineSpec says how to reach a machine and how its node looks.
type MachineSpec struct {
	Address string `json:"address"`
	Port    int32  `json:"port,omitempty"`
	User    string `json:"user,omitempty"`
	// HostKey is the machine's SSH public host key ("ssh-ed25519 AAAA...") or its fingerprint
	// ("SHA256:...").
	HostKey string            `json:"hostKey,omitempty"`
	Labels  map[string]string `json:"labels,omitempty"`
	Taints  []corev1.Taint    `json:"taints,omitempty"`
	// PodCIDR optionally pins this node's pod CIDR.
	PodCIDR string `json:"podCIDR,omitempty"`
	// ProxyJump is a bastion that the SSH connection to the machine goes through, for machines
	// that the operator cannot reach directly.
	ProxyJump *ProxyJump `json:"proxyJump,omitempty"`
}

// ProxyJump is an SSH jump host (OpenSSH's ProxyJump): the operator logs in to it and opens a
// TCP connection from there to the machine's address and port; the machine's own SSH session
// runs inside that connection, end to end. The jump host needs no sudo and nothing installed,
// only sshd with TCP forwarding allowed.
type ProxyJump struct {
	Address string `json:"address"`
	Port    int32  `json:"port,omitempty"`
	// User defaults to the Machine's user.
	User string `json:"user,omitempty"`
	// HostKey is the jump host's SSH public host key or its SHA256 fingerprint, in the forms of
	// MachineSpec.HostKey; required unless the Cluster enables trustOnFirstUse.
	HostKey string `json:"hostKey,omitempty"`
}

// MachinePhase is where a machine is in its life.
type MachinePhase string

// Machine phases.
const (
	MachinePending    MachinePhase = "Pending"
	MachineConnecting MachinePhase = "Connecting"
	MachineInstalling MachinePhase = "Installing"
	MachineStarting   MachinePhase = "Starting"
	MachineReady      MachinePhase = "Ready"
	MachineFailed     MachinePhase = "Failed"
	MachineDraining   MachinePhase = "Draining"
	MachineRetired    MachinePhase = "Retired"
)

// MachineStatus is written by the operator's machine controller.
type MachineStatus struct {
	Phase        MachinePhase       `json:"phase,omitempty"`
	Step         string             `json:"step,omitempty"`
	Conditions   []metav1.Condition `json:"conditions,omitempty"`
	AgentVersion string             `json:"agentVersion,omitempty"`
	// LearnedHostKey is the host key recorded on first use when trustOnFirstUse is enabled.
	LearnedHostKey string `json:"learnedHostKey,omitempty"`
	// LearnedJumpHostKey is the jump host's key, recorded on first use like LearnedHostKey.
	LearnedJumpHostKey string       `json:"learnedJumpHostKey,omitempty"`
	LastError          string       `json:"lastError,omitempty"`
	NextRetry          *metav1.Time `json:"nextRetry,omitempty"`
	// AgentDigest is the SHA-256 of the bosun binary installed on the machine; the operator
	// upgrades the agent when its own binary differs.
	AgentDigest string `json:"agentDigest,omitempty"`
	// ObservedSpecHash identifies the spec and cluster settings of the last completed bootstrap.
	ObservedSpecHash string `json:"observedSpecHash,omitempty"`
	// Failures counts consecutive failed bootstraps (for the retry backoff).
	Failures int32 `json:"failures,omitempty"`
}

// MachineList is a list of Machines.
type MachineList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Machine `json:"items"`
}

// GitSync reports the state of syncing one Git source into the cluster. The operator owns it; the
// object is cluster-scoped and named after the source ("default" for --repo).
type GitSync struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              GitSyncSpec   `json:"spec,omitempty"`
	Status            GitSyncStatus `json:"status,omitempty"`
}

// GitSyncSpec is the source being synced, as configured on the operator's command line.
type GitSyncSpec struct {
	Repo     string          `json:"repo"`
	Branch   string          `json:"branch,omitempty"`
	Path     string          `json:"path,omitempty"`
	Interval metav1.Duration `json:"interval,omitempty"`
	// SyncRequested, when changed, asks the operator to sync at once (written by `bosun sync`).
	SyncRequested string `json:"syncRequested,omitempty"`
	// AcceptRewrite is a commit (its SHA, or a prefix of at least 7 hex digits) the branch may
	// move to although it does not descend from the applied commit (a force-push): written by
	// `bosun sync --accept-rewrite`. Other rewrites are refused unless the operator runs with
	// --follow-force-push.
	AcceptRewrite string `json:"acceptRewrite,omitempty"`
}

// SyncState is the outcome of the latest sync attempt.
type SyncState string

// Sync states.
const (
	SyncStateSyncing SyncState = "Syncing"
	SyncStateSynced  SyncState = "Synced"
	SyncStateFailed  SyncState = "Failed"
)

// GitSyncStatus describes the last attempted commit and the last commit that was applied.
type GitSyncStatus struct {
	State SyncState `json:"state,omitempty"`
	// Commit is the commit of the latest attempt.
	Commit CommitInfo `json:"commit,omitempty"`
	// Applied is the last commit that was applied completely (the live state).
	Applied CommitInfo `json:"applied,omitempty"`
	// AppliedSource is the repository (redacted) and branch Applied came from, "REPO#BRANCH": a
	// head of another source is not a rewrite of Applied's history.
	AppliedSource string `json:"appliedSource,omitempty"`
	// Message summarises the latest attempt (for example why the fetch failed).
	Message string `json:"message,omitempty"`
	// Errors lists every validation error of the attempted commit.
	Errors         []FileError  `json:"errors,omitempty"`
	Counts         SyncCounts   `json:"counts,omitempty"`
	LastAttempt    *metav1.Time `json:"lastAttempt,omitempty"`
	LastSyncedTime *metav1.Time `json:"lastSyncedTime,omitempty"`
	// ObservedSyncRequest is the last spec.syncRequested value acted on.
	ObservedSyncRequest string `json:"observedSyncRequest,omitempty"`
	// Sync is the sync state in Argo CD's model: Synced when the latest commit is applied,
	// OutOfSync while a newer commit is being applied, Failed when it cannot be.
	Sync SyncStatusCode `json:"sync,omitempty"`
	// Health is the health of the objects that the applied commit created or changed.
	Health *CommitHealth `json:"health,omitempty"`
	// History lists the latest commits whose sync ended (at most MaxHistory, newest first): the
	// syncer records how each sync ended, the health tracker the health of what it changed.
	History []CommitRecord `json:"history,omitempty"`
}

// CommitRecord is one commit of a GitSync's history.
type CommitRecord struct {
	SHA    string `json:"sha"`
	Author string `json:"author,omitempty"`
	// Message is the first line of the commit message, shortened.
	Message string `json:"message,omitempty"`
	// Time is when the commit's latest sync ended.
	Time *metav1.Time   `json:"time,omitempty"`
	Sync SyncStatusCode `json:"sync"`
	// Health is the health of what the commit changed once applied; empty until assessed, and
	// for a commit that was not applied.
	Health HealthStatusCode `json:"health,omitempty"`
	// Reason says why the sync failed, or why the health is what it is.
	Reason string `json:"reason,omitempty"`
}

// SyncStatusCode is the sync state of a commit against the live objects.
type SyncStatusCode string

// Sync status codes.
const (
	SyncStatusSynced    SyncStatusCode = "Synced"
	SyncStatusOutOfSync SyncStatusCode = "OutOfSync"
	SyncStatusFailed    SyncStatusCode = "Failed"
)

// HealthStatusCode is the health of an object or of everything a commit changed.
type HealthStatusCode string

// Health status codes, ordered from best to worst as Argo CD orders them.
const (
	HealthHealthy     HealthStatusCode = "Healthy"
	HealthProgressing HealthStatusCode = "Progressing"
	HealthMissing     HealthStatusCode = "Missing"
	HealthDegraded    HealthStatusCode = "Degraded"
)

// CommitHealth is the health of what one applied commit changed.
type CommitHealth struct {
	Commit  string           `json:"commit"`
	Status  HealthStatusCode `json:"status"`
	Message string           `json:"message,omitempty"`
	// Resources lists the objects the commit created or updated that have a health of their own.
	Resources          []ResourceHealth `json:"resources,omitempty"`
	LastTransitionTime *metav1.Time     `json:"lastTransitionTime,omitempty"`
}

// ResourceHealth is the health of one object.
type ResourceHealth struct {
	Kind      string           `json:"kind"`
	Namespace string           `json:"namespace,omitempty"`
	Name      string           `json:"name"`
	Status    HealthStatusCode `json:"status"`
	Message   string           `json:"message,omitempty"`
}

// CommitInfo identifies a commit.
type CommitInfo struct {
	SHA     string       `json:"sha,omitempty"`
	Author  string       `json:"author,omitempty"`
	Message string       `json:"message,omitempty"`
	Time    *metav1.Time `json:"time,omitempty"`
}

// FileError is one validation error with its place in the repository.
type FileError struct {
	File    string `json:"file"`
	Line    int    `json:"line,omitempty"`
	Field   string `json:"field,omitempty"`
	Message string `json:"message"`
}

// SyncCounts counts what a sync did.
type SyncCounts struct {
	Created   int `json:"created"`
	Updated   int `json:"updated"`
	Deleted   int `json:"deleted"`
	Unchanged int `json:"unchanged"`
}

// GitSyncList is a list of GitSyncs.
type GitSyncList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []GitSync `json:"items"`
}
