package pods

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// pullPolicy is the container's imagePullPolicy, defaulted as the API server does: Always for
// ":latest" or untagged images, IfNotPresent otherwise.
func pullPolicy(c *corev1.Container) PullPolicy {
	if c.ImagePullPolicy != "" {
		return PullPolicy(c.ImagePullPolicy)
	}
	ref := c.Image
	if strings.Contains(ref, "@") {
		return PullIfNotPresent
	}
	last := ref[strings.LastIndex(ref, "/")+1:]
	_, tag, hasTag := strings.Cut(last, ":")
	if !hasTag || tag == "latest" {
		return PullAlways
	}
	return PullIfNotPresent
}

// dockerConfigEntry is one registry of a .dockerconfigjson / .dockercfg.
type dockerConfigEntry struct {
	Username string `json:"username"`
	Password string `json:"password"`
	Auth     string `json:"auth"`
}

// parsePullSecret reads the registry credentials of a kubernetes.io/dockerconfigjson (or legacy
// dockercfg) Secret.
func parsePullSecret(s *corev1.Secret) ([]RegistryAuth, error) {
	var entries map[string]dockerConfigEntry
	if b, ok := s.Data[corev1.DockerConfigJsonKey]; ok {
		var cfg struct {
			Auths map[string]dockerConfigEntry `json:"auths"`
		}
		if err := json.Unmarshal(b, &cfg); err != nil {
			return nil, fmt.Errorf("secret %s: parsing %s: %w", s.Name, corev1.DockerConfigJsonKey, err)
		}
		entries = cfg.Auths
	} else if b, ok := s.Data[corev1.DockerConfigKey]; ok {
		if err := json.Unmarshal(b, &entries); err != nil {
			return nil, fmt.Errorf("secret %s: parsing %s: %w", s.Name, corev1.DockerConfigKey, err)
		}
	} else {
		return nil, fmt.Errorf("secret %s has neither %s nor %s", s.Name, corev1.DockerConfigJsonKey, corev1.DockerConfigKey)
	}
	hosts := make([]string, 0, len(entries))
	for h := range entries {
		hosts = append(hosts, h)
	}
	sort.Strings(hosts)
	var out []RegistryAuth
	for _, h := range hosts {
		e := entries[h]
		user, pass := e.Username, e.Password
		if e.Auth != "" && user == "" {
			raw, err := base64.StdEncoding.DecodeString(e.Auth)
			if err != nil {
				return nil, fmt.Errorf("secret %s: registry %s: auth is not base64: %w", s.Name, h, err)
			}
			user, pass, _ = strings.Cut(string(raw), ":")
		}
		out = append(out, RegistryAuth{Host: registryHost(h), Username: user, Password: pass})
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Host < out[j].Host })
	return out, nil
}

// registryHost normalizes a docker config key ("https://index.docker.io/v1/", "reg:5000/path")
// to a host.
func registryHost(key string) string {
	h := strings.TrimPrefix(strings.TrimPrefix(key, "https://"), "http://")
	h, _, _ = strings.Cut(h, "/")
	switch h {
	case "index.docker.io", "registry-1.docker.io":
		return "docker.io"
	}
	return h
}

// pullAuth collects the credentials of the pod's imagePullSecrets; unreadable secrets are
// skipped (the pull then fails with the registry's own error).
func (w *podWorker) pullAuth(ctx context.Context, pod *corev1.Pod) []RegistryAuth {
	var out []RegistryAuth
	for _, ref := range pod.Spec.ImagePullSecrets {
		s, err := w.m.cfg.Objects.GetSecret(ctx, pod.Namespace, ref.Name)
		if err != nil {
			w.log.Warn("reading image pull secret", "secret", ref.Name, "err", err)
			continue
		}
		auths, err := parsePullSecret(s)
		if err != nil {
			w.log.Warn("reading image pull secret", "err", err)
			continue
		}
		out = append(out, auths...)
	}
	return out
}

// ensureImage makes the container's image present, with the kubelet's ErrImagePull then
// ImagePullBackOff behaviour on failure.
func (w *podWorker) ensureImage(ctx context.Context, pod *corev1.Pod, c *corev1.Container, r *ctrRun) (ImageInfo, bool) {
	now := w.m.clock.Now()
	key := c.Image
	if in, end := w.pullBackoff.inBackoffSinceUpdate(key, now); in {
		r.waiting = &corev1.ContainerStateWaiting{
			Reason:  "ImagePullBackOff",
			Message: fmt.Sprintf("Back-off pulling image %q: %s", c.Image, r.pullErr),
		}
		w.wakeAt(end)
		return ImageInfo{}, false
	}
	pulling := false
	progress := func(string) {
		if !pulling {
			pulling = true
			w.event(pod, corev1.EventTypeNormal, "Pulling", "Pulling image %q", c.Image)
		}
	}
	start := w.m.clock.Now()
	info, err := w.m.cfg.Runtime.EnsureImage(ctx, c.Image, pullPolicy(c), w.pullAuth(ctx, pod), progress)
	switch {
	case errors.Is(err, ErrImageNeverPull):
		// No pull, so no back-off: the next sync looks again (an image imported meanwhile).
		msg := fmt.Sprintf("Container image %q is not present with pull policy of Never", c.Image)
		r.waiting = &corev1.ContainerStateWaiting{Reason: "ErrImageNeverPull", Message: msg}
		w.event(pod, corev1.EventTypeWarning, "ErrImageNeverPull", "%s", msg)
		return ImageInfo{}, false
	case errors.Is(err, ErrInvalidImageName):
		msg := fmt.Sprintf("Failed to apply default image tag %q: %v", c.Image, err)
		r.waiting = &corev1.ContainerStateWaiting{Reason: "InvalidImageName", Message: msg}
		w.event(pod, corev1.EventTypeWarning, "InspectFailed", "%s", msg)
		return ImageInfo{}, false
	}
	if err != nil {
		delay := w.pullBackoff.next(key, now, now)
		r.pullErr = err.Error()
		r.waiting = &corev1.ContainerStateWaiting{Reason: "ErrImagePull", Message: err.Error()}
		w.event(pod, corev1.EventTypeWarning, "Failed", "Failed to pull image %q: %v", c.Image, err)
		// Look again soon to report ImagePullBackOff, as the kubelet does.
		w.wakeAt(now.Add(min(delay, statusMinInterval)))
		return ImageInfo{}, false
	}
	w.pullBackoff.reset(key)
	r.pullErr = ""
	if pulling {
		w.event(pod, corev1.EventTypeNormal, "Pulled", "Successfully pulled image %q in %s", c.Image, w.m.clock.Since(start))
	} else {
		w.event(pod, corev1.EventTypeNormal, "Pulled", "Container image %q already present on machine", c.Image)
	}
	return info, true
}
