package pods

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

const (
	volumesDirName  = "volumes"
	hostsFileName   = "etc-hosts"
	hostnameFileNm  = "etc-hostname"
	resolvFileName  = "resolv.conf"
	defaultFileMode = 0o644
)

// podVolumes prepares a pod's volumes and generated /etc files under its PodDir and turns
// volumeMounts into bind mounts.
type podVolumes struct {
	dataDir string
	mounter Mounter
	objects ObjectGetter
	// dirs maps a volume name to its directory on the host; readOnly marks API-data volumes
	// (configMap, secret), always mounted read-only as in Kubernetes.
	dirs     map[string]string
	readOnly map[string]bool
	tmpfs    map[string]bool // mounted memory-backed emptyDirs
	podDir   string
}

func newPodVolumes(dataDir string, mounter Mounter, objects ObjectGetter, uid string) *podVolumes {
	return &podVolumes{
		dataDir: dataDir, mounter: mounter, objects: objects,
		dirs: map[string]string{}, readOnly: map[string]bool{}, tmpfs: map[string]bool{},
		podDir: PodDir(dataDir, uid),
	}
}

// mountError is a volume that cannot be set up (event FailedMount; containers stay
// ContainerCreating and the worker retries).
type mountError struct {
	volume string
	err    error
}

func (e *mountError) Error() string {
	return fmt.Sprintf("MountVolume.SetUp failed for volume %q: %v", e.volume, e.err)
}
func (e *mountError) Unwrap() error { return e.err }

// prepare makes every volume of the pod ready; it is idempotent and refreshes configMap, secret
// and downward API contents. nodeAllocatable answers resourceFieldRefs of containers without a
// limit.
func (v *podVolumes) prepare(ctx context.Context, pod *corev1.Pod, nodeAllocatable corev1.ResourceList) error {
	cache := objectCache{getter: v.objects, ns: pod.Namespace}
	ec := envContext{pod: pod, objects: v.objects, nodeAllocatable: nodeAllocatable}
	for _, vol := range pod.Spec.Volumes {
		if err := v.prepareOne(ctx, &cache, ec, vol); err != nil {
			return &mountError{volume: vol.Name, err: err}
		}
	}
	return nil
}

func (v *podVolumes) volumeDir(name string) string {
	return filepath.Join(v.podDir, volumesDirName, name)
}

func (v *podVolumes) prepareOne(ctx context.Context, cache *objectCache, ec envContext, vol corev1.Volume) error {
	switch {
	case vol.EmptyDir != nil:
		dir := v.volumeDir(vol.Name)
		if err := os.MkdirAll(dir, 0o777); err != nil {
			return err
		}
		if err := os.Chmod(dir, 0o777); err != nil { // the kubelet makes emptyDirs world-writable
			return err
		}
		if vol.EmptyDir.Medium == corev1.StorageMediumMemory {
			size := emptyDirMemorySize(ec.pod, vol.EmptyDir, ec.nodeAllocatable)
			if err := v.ensureTmpfs(vol.Name, size); err != nil {
				return err
			}
		}
		v.dirs[vol.Name] = dir
	case vol.HostPath != nil:
		if err := checkHostPath(vol.HostPath); err != nil {
			return err
		}
		v.dirs[vol.Name] = vol.HostPath.Path
	case vol.ConfigMap != nil:
		src := vol.ConfigMap
		files, err := configMapFiles(ctx, cache, src.Name, src.Items, src.DefaultMode, src.Optional)
		if err != nil {
			return err
		}
		return v.writeDataVolume(vol.Name, files)
	// Secret, downwardAPI and projected volumes live in memory, as the kubelet keeps them: a
	// secret never reaches the node's disk.
	case vol.Secret != nil:
		src := vol.Secret
		files, err := secretFiles(ctx, cache, src.SecretName, src.Items, src.DefaultMode, src.Optional)
		if err != nil {
			return err
		}
		return v.writeMemoryVolume(vol.Name, files)
	case vol.DownwardAPI != nil:
		files, err := downwardAPIFiles(ec, vol.DownwardAPI.Items, vol.DownwardAPI.DefaultMode)
		if err != nil {
			return err
		}
		return v.writeMemoryVolume(vol.Name, files)
	case vol.Projected != nil:
		files, err := projectedFiles(ctx, cache, ec, vol.Projected)
		if err != nil {
			return err
		}
		return v.writeMemoryVolume(vol.Name, files)
	default:
		return fmt.Errorf("volume type not supported on bosun nodes (use emptyDir, hostPath, configMap, secret, downwardAPI or projected)")
	}
	return nil
}

// configMapFiles are the files of a configMap volume or projection.
func configMapFiles(ctx context.Context, cache *objectCache, name string, items []corev1.KeyToPath, defaultMode *int32, opt *bool) (map[string]dataFile, error) {
	cm, err := cache.configMap(ctx, name)
	if err != nil {
		if !isNotFound(err) || !optional(opt) {
			return nil, fmt.Errorf("configmap %q: %w", name, err)
		}
		cm = &corev1.ConfigMap{}
	}
	data := map[string][]byte{}
	for k, s := range cm.Data {
		data[k] = []byte(s)
	}
	for k, b := range cm.BinaryData {
		data[k] = b
	}
	return projectKeys(data, items, defaultMode, optional(opt), "configmap "+name)
}

// secretFiles are the files of a secret volume or projection.
func secretFiles(ctx context.Context, cache *objectCache, name string, items []corev1.KeyToPath, defaultMode *int32, opt *bool) (map[string]dataFile, error) {
	s, err := cache.secret(ctx, name)
	if err != nil {
		if !isNotFound(err) || !optional(opt) {
			return nil, fmt.Errorf("secret %q: %w", name, err)
		}
		s = &corev1.Secret{}
	}
	return projectKeys(s.Data, items, defaultMode, optional(opt), "secret "+name)
}

// downwardAPIFiles renders the pod's own fields and its containers' resources as files: labels
// and annotations as sorted key="value" lines, a resource divided by its divisor and rounded up.
func downwardAPIFiles(ec envContext, items []corev1.DownwardAPIVolumeFile, defaultMode *int32) (map[string]dataFile, error) {
	mode := os.FileMode(defaultFileMode)
	if defaultMode != nil {
		mode = os.FileMode(*defaultMode) & os.ModePerm
	}
	files := map[string]dataFile{}
	for _, it := range items {
		if err := checkRelativePath(it.Path); err != nil {
			return nil, fmt.Errorf("downward API item: %w", err)
		}
		var value string
		var err error
		switch {
		case it.FieldRef != nil:
			value, err = podFieldValue(ec, it.FieldRef.FieldPath)
		case it.ResourceFieldRef != nil:
			value, err = resourceFieldValue(ec, &corev1.Container{}, it.ResourceFieldRef)
		default:
			err = fmt.Errorf("downward API item %q has neither fieldRef nor resourceFieldRef", it.Path)
		}
		if err != nil {
			return nil, err
		}
		m := mode
		if it.Mode != nil {
			m = os.FileMode(*it.Mode) & os.ModePerm
		}
		files[it.Path] = dataFile{data: []byte(value), mode: m}
	}
	return files, nil
}

// projectedFiles merges the projected volume's sources into one directory.
func projectedFiles(ctx context.Context, cache *objectCache, ec envContext, pr *corev1.ProjectedVolumeSource) (map[string]dataFile, error) {
	all := map[string]dataFile{}
	for i, src := range pr.Sources {
		var files map[string]dataFile
		var err error
		switch {
		case src.ConfigMap != nil:
			files, err = configMapFiles(ctx, cache, src.ConfigMap.Name, src.ConfigMap.Items, pr.DefaultMode, src.ConfigMap.Optional)
		case src.Secret != nil:
			files, err = secretFiles(ctx, cache, src.Secret.Name, src.Secret.Items, pr.DefaultMode, src.Secret.Optional)
		case src.DownwardAPI != nil:
			files, err = downwardAPIFiles(ec, src.DownwardAPI.Items, pr.DefaultMode)
		default:
			err = fmt.Errorf("projected source %d: only configMap, secret and downwardAPI sources are supported on bosun nodes", i)
		}
		if err != nil {
			return nil, err
		}
		for p, f := range files {
			all[p] = f
		}
	}
	return all, nil
}

// dataFile is one file of a configMap or secret volume.
type dataFile struct {
	data []byte
	mode os.FileMode
}

// projectKeys selects the keys of a configMap or secret (all, or items key→path) with their modes.
func projectKeys(data map[string][]byte, items []corev1.KeyToPath, defaultMode *int32, isOptional bool, what string) (map[string]dataFile, error) {
	mode := os.FileMode(defaultFileMode)
	if defaultMode != nil {
		mode = os.FileMode(*defaultMode) & os.ModePerm
	}
	files := map[string]dataFile{}
	if len(items) == 0 {
		for k, b := range data {
			files[k] = dataFile{data: b, mode: mode}
		}
		return files, nil
	}
	for _, it := range items {
		b, ok := data[it.Key]
		if !ok {
			if isOptional {
				continue
			}
			return nil, fmt.Errorf("%s has no key %q", what, it.Key)
		}
		if err := checkRelativePath(it.Path); err != nil {
			return nil, fmt.Errorf("%s item %q: %w", what, it.Key, err)
		}
		m := mode
		if it.Mode != nil {
			m = os.FileMode(*it.Mode) & os.ModePerm
		}
		files[it.Path] = dataFile{data: b, mode: m}
	}
	return files, nil
}

func checkRelativePath(p string) error {
	if p == "" || filepath.IsAbs(p) {
		return fmt.Errorf("path %q must be relative", p)
	}
	for _, part := range strings.Split(p, "/") {
		if part == ".." {
			return fmt.Errorf("path %q must not contain '..'", p)
		}
	}
	return nil
}

// ensureTmpfs mounts a tmpfs (size bytes, 0 = the kernel's default) on the volume's directory
// unless one is there, also one mounted before an agent restart: mounting again would hide what
// the pod's containers wrote.
func (v *podVolumes) ensureTmpfs(name string, size int64) error {
	if v.tmpfs[name] {
		return nil
	}
	dir := v.volumeDir(name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if mounted, err := isMountPoint(dir); err != nil || !mounted {
		if err := v.mounter.MountTmpfs(dir, size); err != nil {
			return err
		}
	}
	v.tmpfs[name] = true
	return nil
}

// writeMemoryVolume is writeDataVolume on a tmpfs.
func (v *podVolumes) writeMemoryVolume(name string, files map[string]dataFile) error {
	if !v.tmpfs[name] {
		dir := v.volumeDir(name)
		entries, err := os.ReadDir(dir)
		if mounted, _ := isMountPoint(dir); err == nil && len(entries) > 0 && !mounted {
			// Written on disk by an agent that kept these volumes there, and bind-mounted into
			// the pod's running containers: a tmpfs over it would hide later updates from them.
			// It moves to memory when the pod is recreated.
			return v.writeDataVolume(name, files)
		}
	}
	if err := v.ensureTmpfs(name, memoryVolumeSize); err != nil {
		return err
	}
	return v.writeDataVolume(name, files)
}

// memoryVolumeSize bounds the tmpfs of a secret, downwardAPI or projected volume: their data
// comes from API objects of at most 1.5 MiB each.
const memoryVolumeSize = 64 << 20

// writeDataVolume makes the volume's directory hold exactly files, updated atomically
// (atomicwriter.go).
func (v *podVolumes) writeDataVolume(name string, files map[string]dataFile) error {
	dir := v.volumeDir(name)
	if err := writeAtomic(dir, files); err != nil {
		return err
	}
	v.dirs[name] = dir
	v.readOnly[name] = true
	return nil
}

// checkHostPath applies the hostPath volume's type check, creating what *OrCreate asks for.
func checkHostPath(hp *corev1.HostPathVolumeSource) error {
	typ := corev1.HostPathUnset
	if hp.Type != nil {
		typ = *hp.Type
	}
	st, err := os.Stat(hp.Path)
	exists := err == nil
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	switch typ {
	case corev1.HostPathUnset:
		return nil
	case corev1.HostPathDirectoryOrCreate:
		if !exists {
			return os.MkdirAll(hp.Path, 0o755)
		}
		if !st.IsDir() {
			return fmt.Errorf("hostPath type check failed: %s is not a directory", hp.Path)
		}
	case corev1.HostPathDirectory:
		if !exists || !st.IsDir() {
			return fmt.Errorf("hostPath type check failed: %s is not a directory", hp.Path)
		}
	case corev1.HostPathFileOrCreate:
		if !exists {
			f, err := os.OpenFile(hp.Path, os.O_CREATE|os.O_WRONLY, 0o644)
			if err != nil {
				return err
			}
			return f.Close()
		}
		if !st.Mode().IsRegular() {
			return fmt.Errorf("hostPath type check failed: %s is not a file", hp.Path)
		}
	case corev1.HostPathFile:
		if !exists || !st.Mode().IsRegular() {
			return fmt.Errorf("hostPath type check failed: %s is not a file", hp.Path)
		}
	case corev1.HostPathSocket:
		if !exists || st.Mode()&os.ModeSocket == 0 {
			return fmt.Errorf("hostPath type check failed: %s is not a socket file", hp.Path)
		}
	case corev1.HostPathCharDev:
		if !exists || st.Mode()&os.ModeCharDevice == 0 {
			return fmt.Errorf("hostPath type check failed: %s is not a character device", hp.Path)
		}
	case corev1.HostPathBlockDev:
		if !exists || st.Mode()&os.ModeDevice == 0 || st.Mode()&os.ModeCharDevice != 0 {
			return fmt.Errorf("hostPath type check failed: %s is not a block device", hp.Path)
		}
	default:
		return fmt.Errorf("unknown hostPath type %q", typ)
	}
	return nil
}

// writeEtcFiles writes /etc/hosts, /etc/hostname and /etc/resolv.conf for the pod. A changed
// file is replaced (readers see the old or the new one, never a partial one) or, inPlace,
// rewritten (so that the bind mounts of containers created but not started see the new one).
func (v *podVolumes) writeEtcFiles(pod *corev1.Pod, podIP string, dns dnsInput, inPlace bool) error {
	if err := os.MkdirAll(v.podDir, 0o755); err != nil {
		return fmt.Errorf("creating pod dir: %w", err)
	}
	hosts := hostsFile(pod, podIP, dns.clusterDomain)
	if pod.Spec.HostNetwork {
		if b, err := os.ReadFile("/etc/hosts"); err == nil {
			hosts = b
		}
	}
	if err := writeFileIfChanged(filepath.Join(v.podDir, hostsFileName), hosts, 0o644, inPlace); err != nil {
		return err
	}
	if err := writeFileIfChanged(filepath.Join(v.podDir, hostnameFileNm), hostnameFile(pod, dns.clusterDomain), 0o644, inPlace); err != nil {
		return err
	}
	return writeFileIfChanged(filepath.Join(v.podDir, resolvFileName), podResolvConf(pod, dns), 0o644, inPlace)
}

// containerMounts turns a container's volumeMounts (with subPath/subPathExpr) and the generated
// /etc files into bind mounts.
func (v *podVolumes) containerMounts(c *corev1.Container, env map[string]string) ([]Mount, error) {
	var mounts []Mount
	for _, vm := range c.VolumeMounts {
		dir, ok := v.dirs[vm.Name]
		if !ok {
			return nil, configErrorf("volumeMount %q: no such volume", vm.Name)
		}
		host := dir
		sub := vm.SubPath
		if vm.SubPathExpr != "" {
			sub = expand(vm.SubPathExpr, env)
		}
		if sub != "" {
			if err := checkRelativePath(sub); err != nil {
				return nil, configErrorf("volumeMount %q subPath: %v", vm.Name, err)
			}
			host = filepath.Join(dir, sub)
			if _, err := os.Lstat(host); os.IsNotExist(err) && !v.readOnly[vm.Name] {
				if err := os.MkdirAll(host, 0o755); err != nil {
					return nil, fmt.Errorf("creating subPath %s: %w", host, err)
				}
			}
			if v.readOnly[vm.Name] {
				// Bind the current version's file itself (the kubelet's subPath does the same, so
				// a subPath mount does not follow later updates), and never a path outside the
				// volume.
				real, err := filepath.EvalSymlinks(host)
				if err != nil {
					return nil, configErrorf("volumeMount %q subPath %q: %v", vm.Name, sub, err)
				}
				if realDir, err := filepath.EvalSymlinks(dir); err != nil || !strings.HasPrefix(real, realDir+string(filepath.Separator)) {
					return nil, configErrorf("volumeMount %q subPath %q leaves the volume", vm.Name, sub)
				}
				host = real
			}
		}
		mounts = append(mounts, Mount{HostPath: host, ContainerPath: vm.MountPath, ReadOnly: vm.ReadOnly || v.readOnly[vm.Name]})
	}
	mounted := map[string]bool{}
	for _, m := range mounts {
		mounted[m.ContainerPath] = true
	}
	for _, f := range []struct{ name, path string }{
		{hostsFileName, "/etc/hosts"}, {hostnameFileNm, "/etc/hostname"}, {resolvFileName, "/etc/resolv.conf"},
	} {
		if !mounted[f.path] {
			mounts = append(mounts, Mount{HostPath: filepath.Join(v.podDir, f.name), ContainerPath: f.path, ReadOnly: true})
		}
	}
	return mounts, nil
}

// teardown unmounts memory-backed emptyDirs (of this worker, or found under the pod dir after an
// agent restart) and removes the pod's directory.
func (v *podVolumes) teardown() error {
	entries, _ := os.ReadDir(filepath.Join(v.podDir, volumesDirName))
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	for _, n := range names {
		dir := v.volumeDir(n)
		if mounted, err := isMountPoint(dir); v.tmpfs[n] || (err == nil && mounted) {
			if err := v.mounter.Unmount(dir); err != nil {
				return err
			}
			delete(v.tmpfs, n)
		}
	}
	if err := os.RemoveAll(v.podDir); err != nil {
		return fmt.Errorf("removing pod dir: %w", err)
	}
	return nil
}

// emptyDirMemorySize is the size of a memory-backed emptyDir's tmpfs, as the kubelet sizes it:
// the node's allocatable memory, or less, the pod's memory limit (when every container has
// one), or less, the volume's sizeLimit. 0 (the kernel's default, half the RAM) when none is
// known.
func emptyDirMemorySize(pod *corev1.Pod, ed *corev1.EmptyDirVolumeSource, nodeAllocatable corev1.ResourceList) int64 {
	var size int64
	if q, ok := nodeAllocatable[corev1.ResourceMemory]; ok && q.Value() > 0 {
		size = q.Value()
	}
	if limit := podMemoryLimit(pod); limit > 0 && (size == 0 || limit <= size) {
		size = limit
	}
	if ed.SizeLimit != nil {
		if l := ed.SizeLimit.Value(); l > 0 && (size == 0 || l <= size) {
			size = l
		}
	}
	return size
}

// podMemoryLimit is the pod's memory limit as its cgroup gets it: the sum of its containers'
// limits, or the largest init container's if that is more; 0 when a container has none.
func podMemoryLimit(pod *corev1.Pod) int64 {
	var sum int64
	for _, c := range pod.Spec.Containers {
		q, ok := c.Resources.Limits[corev1.ResourceMemory]
		if !ok || q.Value() <= 0 {
			return 0
		}
		sum += q.Value()
	}
	for _, c := range pod.Spec.InitContainers {
		q, ok := c.Resources.Limits[corev1.ResourceMemory]
		if !ok || q.Value() <= 0 {
			return 0
		}
		sum = max(sum, q.Value())
	}
	return sum
}
