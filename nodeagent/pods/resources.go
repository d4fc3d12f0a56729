package pods

import (
	corev1 "k8s.io/api/core/v1"
)

// The kubelet's CPU constants (pkg/kubelet/cm/helpers_linux.go).
const (
	cpuPeriod     = 100000 // 100 ms in µs
	minShares     = 2
	maxShares     = 262144
	sharesPerCPU  = 1024
	milliCPUToCPU = 1000
	minQuota      = 1000
)

// containerResources converts a container's requests and limits to cgroup settings the way the
// kubelet does: memory limit in bytes, CPU limit as a CFS quota over a 100 ms period, CPU request
// (or the limit when no request is set, as the API server defaults it) as shares.
func containerResources(c *corev1.Container) Resources {
	var r Resources
	if mem, ok := c.Resources.Limits[corev1.ResourceMemory]; ok {
		r.MemoryLimitBytes = mem.Value()
	}
	var requestMilli int64
	if cpu, ok := c.Resources.Requests[corev1.ResourceCPU]; ok {
		requestMilli = cpu.MilliValue()
	} else if cpu, ok := c.Resources.Limits[corev1.ResourceCPU]; ok {
		requestMilli = cpu.MilliValue()
	}
	r.CPUShares = milliCPUToShares(requestMilli)
	if cpu, ok := c.Resources.Limits[corev1.ResourceCPU]; ok && cpu.MilliValue() > 0 {
		r.CPUQuota = milliCPUToQuota(cpu.MilliValue())
		r.CPUPeriod = cpuPeriod
	}
	return r
}

func milliCPUToShares(milliCPU int64) uint64 {
	if milliCPU == 0 {
		return minShares
	}
	shares := milliCPU * sharesPerCPU / milliCPUToCPU
	switch {
	case shares < minShares:
		return minShares
	case shares > maxShares:
		return maxShares
	}
	return uint64(shares)
}

func milliCPUToQuota(milliCPU int64) int64 {
	quota := milliCPU * cpuPeriod / milliCPUToCPU
	if quota < minQuota {
		quota = minQuota
	}
	return quota
}
