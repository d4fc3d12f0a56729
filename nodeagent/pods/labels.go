package pods

// Labels the agent puts on its containers so that it can find and adopt them after a restart.
const (
	LabelPodUID        = "bosun.dev/pod-uid"
	LabelPodName       = "bosun.dev/pod-name"
	LabelPodNamespace  = "bosun.dev/pod-namespace"
	LabelContainerName = "bosun.dev/container-name"
	// LabelRestartCount is the container's restart count when it was created.
	LabelRestartCount = "bosun.dev/restart-count"
	// LabelInit marks init containers.
	LabelInit = "bosun.dev/init"
	// LabelSpecHash is a hash of the container spec, to detect spec changes.
	LabelSpecHash = "bosun.dev/spec-hash"
	// LabelGracePeriod is the pod's termination grace period in seconds when the container was
	// created: a pod deleted while the agent was down is stopped with its own grace period.
	LabelGracePeriod = "bosun.dev/termination-grace-period"
)
