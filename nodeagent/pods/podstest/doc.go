// Package podstest has in-memory fakes of the pod workers' dependencies (pods.Runtime,
// pods.Network, the status writer, the object getter and the event recorder) for unit tests:
// containers exit, get OOM-killed and answer exec probes as the test says, on a fake clock.
package podstest
