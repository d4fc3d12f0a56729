package pods

import (
	"context"
	"encoding/json"
	"hash/fnv"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// containerArgv resolves the process of a container against its image the way Kubernetes does:
// command replaces the image's entrypoint (and drops its cmd), args replace the image's cmd;
// $(VAR) references in command and args are expanded with the container's environment.
func containerArgv(c *corev1.Container, image ImageInfo, env map[string]string) []string {
	command := make([]string, 0, len(c.Command))
	for _, s := range c.Command {
		command = append(command, expand(s, env))
	}
	args := make([]string, 0, len(c.Args))
	for _, s := range c.Args {
		args = append(args, expand(s, env))
	}
	switch {
	case len(command) > 0:
		return append(command, args...)
	case len(args) > 0:
		return append(append([]string{}, image.Entrypoint...), args...)
	}
	return append(append([]string{}, image.Entrypoint...), image.Cmd...)
}

// mergeImageEnv puts the container's variables over the image's defaults, keeping the image's
// order first.
func mergeImageEnv(image []string, own *orderedEnv) []string {
	merged := newOrderedEnv()
	for _, kv := range image {
		name, value, _ := cutEnv(kv)
		merged.set(name, value)
	}
	for _, n := range own.names {
		merged.set(n, own.values[n])
	}
	return merged.list()
}

func cutEnv(kv string) (string, string, bool) {
	for i := 0; i < len(kv); i++ {
		if kv[i] == '=' {
			return kv[:i], kv[i+1:], true
		}
	}
	return kv, "", false
}

// specHash identifies a container's spec; a change restarts the container.
func specHash(c *corev1.Container) string {
	// Probes and resources (in-place resize aside) do change the hash in Kubernetes too.
	b, _ := json.Marshal(c)
	h := fnv.New32a()
	h.Write(b)
	return strconv.FormatUint(uint64(h.Sum32()), 16)
}

// buildInput is what buildContainerSpec needs besides the container.
type buildInput struct {
	dataDir   string
	pod       *corev1.Pod
	container *corev1.Container
	init      bool
	restart   int32
	image     ImageInfo
	env       *orderedEnv
	mounts    []Mount
	hostname  string
	netnsPath string
}

// buildContainerSpec assembles the runtime's ContainerSpec for one run of a container.
func buildContainerSpec(in buildInput) ContainerSpec {
	c, pod := in.container, in.pod
	uid := string(pod.UID)
	sec := containerSecurity(pod, c)
	workDir := c.WorkingDir
	if workDir == "" {
		workDir = in.image.WorkingDir
	}
	labels := map[string]string{
		LabelPodUID:        uid,
		LabelPodName:       pod.Name,
		LabelPodNamespace:  pod.Namespace,
		LabelContainerName: c.Name,
		LabelRestartCount:  strconv.Itoa(int(in.restart)),
		LabelSpecHash:      specHash(c),
		LabelGracePeriod:   strconv.FormatInt(int64(gracePeriod(pod)/time.Second), 10),
	}
	if in.init {
		labels[LabelInit] = "true"
	}
	return ContainerSpec{
		ID:          ContainerID(uid, c.Name, in.restart),
		Image:       c.Image,
		Labels:      labels,
		Args:        containerArgv(c, in.image, in.env.values),
		Env:         mergeImageEnv(in.image.Env, in.env),
		WorkingDir:  workDir,
		UID:         sec.uid,
		GID:         sec.gid,
		Hostname:    in.hostname,
		NetnsPath:   in.netnsPath,
		HostNetwork: pod.Spec.HostNetwork,
		Mounts:      in.mounts,
		Resources:   containerResources(c),
		Security:    sec.security(pod),
		LogPath:     LogPath(in.dataDir, uid, c.Name, in.restart),
	}
}

// containerSpec checks runAsNonRoot against the image, resolves the container's env and volume
// mounts (reading the API) and builds its ContainerSpec.
func (w *podWorker) containerSpec(ctx context.Context, pod *corev1.Pod, c *corev1.Container, init bool, restart int32, image ImageInfo) (ContainerSpec, error) {
	// First, as the kubelet does: nothing else matters if the container may not run.
	if err := containerSecurity(pod, c).verifyRunAsNonRoot(pod, c, image); err != nil {
		return ContainerSpec{}, err
	}
	services, err := serviceEnv(w.m.cfg.Services, pod)
	if err != nil {
		return ContainerSpec{}, err
	}
	env, err := containerEnv(ctx, envContext{
		pod: pod, podIP: w.podIP, hostIP: w.m.cfg.NodeIP,
		objects: w.m.cfg.Objects, nodeAllocatable: w.m.cfg.NodeAllocatable, services: services,
	}, c)
	if err != nil {
		return ContainerSpec{}, err
	}
	mounts, err := w.volumes.containerMounts(c, env.values)
	if err != nil {
		return ContainerSpec{}, err
	}
	return buildContainerSpec(buildInput{
		dataDir: w.m.cfg.DataDir, pod: pod, container: c, init: init, restart: restart,
		image: image, env: env, mounts: mounts, hostname: containerHostname(pod), netnsPath: w.netnsPath,
	}), nil
}

func containerByName(pod *corev1.Pod, name string) (*corev1.Container, bool) {
	for i := range pod.Spec.InitContainers {
		if pod.Spec.InitContainers[i].Name == name {
			return &pod.Spec.InitContainers[i], true
		}
	}
	for i := range pod.Spec.Containers {
		if pod.Spec.Containers[i].Name == name {
			return &pod.Spec.Containers[i], true
		}
	}
	return nil, false
}
