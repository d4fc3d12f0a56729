// Package pods runs the pods bound to this node: one worker goroutine per pod compares the pod's
// spec with what runs in the container runtime and acts (pull, network, volumes, create, start,
// probe, restart with back-off, stop), then reports the pod's status through the API.
//
//	informer ──UpdatePod/DeletePod/SyncAll──> Manager ──one goroutine per pod──> podWorker
//	                                              │                                │  sync(): level-triggered
//	Runtime.Events ──container exited──> wake ────┘                                ├─ Network.PinNetns / SetupPod / TeardownPod
//	                                                                               ├─ volumes, /etc/hosts, resolv.conf under PodDir
//	                                                                               ├─ Runtime.EnsureImage / Create / Start / Stop
//	                                                                               ├─ probes (exec, HTTP, TCP, gRPC health)
//	                                                                               └─ StatusWriter (when the API's copy differs, rate-limited)
//
// A pod's first start overlaps its network set-up with its containers' creation: the worker pins
// the pod's network namespace and writes its /etc files, runs CNI ADD in the background while it
// checks images and creates the containers (runc sets up each one in the namespace and holds it
// before its process runs), then completes /etc/hosts with the pod IP in place and starts them.
// No process runs before the pod's network is up.
//
// A pod marked for a graceful deletion (deletionTimestamp) has its containers stopped within its
// deletionGracePeriodSeconds and is then deleted for good through the StatusWriter; its removal
// from the informer cleans up containers, network and volumes. A pod that has finished gives its
// network back at once and keeps its exited containers (their logs) until it is deleted.
//
// Container logs are files per container run, written by containerd's shim; the Manager rotates
// them past ManagerConfig.ContainerLogMaxSize (logrotate.go).
//
// The Runtime and Network it drives are declared in manager.go; nodeagent/runtime implements them
// with containerd and CNI, and podstest has in-memory fakes for unit tests.
package pods
