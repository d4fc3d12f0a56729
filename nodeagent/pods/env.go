package pods

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation"
)

// configError is a problem in the pod's configuration that keeps a container from being created
// (reason CreateContainerConfigError): a missing ConfigMap, Secret or key that is not optional, a
// runAsNonRoot container that would run as root.
type configError struct{ msg string }

func (e *configError) Error() string { return e.msg }

func configErrorf(format string, args ...any) error {
	return &configError{msg: fmt.Sprintf(format, args...)}
}

// envContext is what env resolution reads besides the container itself.
type envContext struct {
	pod             *corev1.Pod
	podIP, hostIP   string
	objects         ObjectGetter
	nodeAllocatable corev1.ResourceList
	// services are the pod's service environment variables (see serviceEnv).
	services map[string]string
}

// orderedEnv keeps variables in the order they were first defined, later values replacing earlier.
type orderedEnv struct {
	names  []string
	values map[string]string
}

func newOrderedEnv() *orderedEnv { return &orderedEnv{values: map[string]string{}} }

func (e *orderedEnv) set(name, value string) {
	if _, ok := e.values[name]; !ok {
		e.names = append(e.names, name)
	}
	e.values[name] = value
}

func (e *orderedEnv) list() []string {
	out := make([]string, 0, len(e.names))
	for _, n := range e.names {
		out = append(out, n+"="+e.values[n])
	}
	return out
}

// containerEnv resolves a container's environment the way the kubelet does: envFrom sources in
// order, then env entries in order, each value expanded against the variables defined before it
// and the service variables, then the service variables the container does not define itself.
// It returns the container's own variables (without the image's).
func containerEnv(ctx context.Context, ec envContext, c *corev1.Container) (*orderedEnv, error) {
	env := newOrderedEnv()
	// scope is what $(VAR) expands against: the service variables, overridden by those defined.
	scope := maps.Clone(ec.services)
	if scope == nil {
		scope = map[string]string{}
	}
	set := func(name, value string) {
		env.set(name, value)
		scope[name] = value
	}
	cache := objectCache{getter: ec.objects, ns: ec.pod.Namespace}
	for _, from := range c.EnvFrom {
		var data map[string]string
		switch {
		case from.ConfigMapRef != nil:
			cm, err := cache.configMap(ctx, from.ConfigMapRef.Name)
			if err != nil {
				if isNotFound(err) && optional(from.ConfigMapRef.Optional) {
					continue
				}
				return nil, envObjectError("configmap", from.ConfigMapRef.Name, err)
			}
			data = cm.Data
		case from.SecretRef != nil:
			s, err := cache.secret(ctx, from.SecretRef.Name)
			if err != nil {
				if isNotFound(err) && optional(from.SecretRef.Optional) {
					continue
				}
				return nil, envObjectError("secret", from.SecretRef.Name, err)
			}
			data = make(map[string]string, len(s.Data))
			for k, v := range s.Data {
				data[k] = string(v)
			}
		}
		keys := make([]string, 0, len(data))
		for k := range data {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			name := from.Prefix + k
			if len(validation.IsEnvVarName(name)) != 0 {
				continue // the kubelet skips invalid names with an event
			}
			set(name, data[k])
		}
	}
	for _, ev := range c.Env {
		value := ev.Value
		switch {
		case value != "":
			value = expand(value, scope)
		case ev.ValueFrom != nil:
			v, ok, err := envValueFrom(ctx, ec, &cache, c, ev.ValueFrom)
			if err != nil {
				return nil, fmt.Errorf("env %s: %w", ev.Name, err)
			}
			if !ok {
				continue
			}
			value = v
		}
		set(ev.Name, value)
	}
	for _, name := range slices.Sorted(maps.Keys(ec.services)) {
		if _, ok := env.values[name]; !ok {
			env.set(name, ec.services[name])
		}
	}
	return env, nil
}

func envValueFrom(ctx context.Context, ec envContext, cache *objectCache, c *corev1.Container, from *corev1.EnvVarSource) (string, bool, error) {
	switch {
	case from.FieldRef != nil:
		v, err := podFieldValue(ec, from.FieldRef.FieldPath)
		return v, err == nil, err
	case from.ResourceFieldRef != nil:
		v, err := resourceFieldValue(ec, c, from.ResourceFieldRef)
		return v, err == nil, err
	case from.ConfigMapKeyRef != nil:
		ref := from.ConfigMapKeyRef
		cm, err := cache.configMap(ctx, ref.Name)
		if err != nil {
			if isNotFound(err) && optional(ref.Optional) {
				return "", false, nil
			}
			return "", false, envObjectError("configmap", ref.Name, err)
		}
		v, ok := cm.Data[ref.Key]
		if !ok {
			if optional(ref.Optional) {
				return "", false, nil
			}
			return "", false, configErrorf("couldn't find key %s in ConfigMap %s/%s", ref.Key, ec.pod.Namespace, ref.Name)
		}
		return v, true, nil
	case from.SecretKeyRef != nil:
		ref := from.SecretKeyRef
		s, err := cache.secret(ctx, ref.Name)
		if err != nil {
			if isNotFound(err) && optional(ref.Optional) {
				return "", false, nil
			}
			return "", false, envObjectError("secret", ref.Name, err)
		}
		v, ok := s.Data[ref.Key]
		if !ok {
			if optional(ref.Optional) {
				return "", false, nil
			}
			return "", false, configErrorf("couldn't find key %s in Secret %s/%s", ref.Key, ec.pod.Namespace, ref.Name)
		}
		return string(v), true, nil
	}
	return "", true, nil
}

func envObjectError(kind, name string, err error) error {
	if isNotFound(err) {
		return configErrorf("%s %q not found", kind, name)
	}
	return fmt.Errorf("reading %s %q: %w", kind, name, err)
}

// podFieldValue answers a downward-API fieldRef.
func podFieldValue(ec envContext, path string) (string, error) {
	pod := ec.pod
	if name, key, ok := subscript(path); ok {
		switch name {
		case "metadata.labels":
			return pod.Labels[key], nil
		case "metadata.annotations":
			return pod.Annotations[key], nil
		}
	}
	switch path {
	case "metadata.name":
		return pod.Name, nil
	case "metadata.namespace":
		return pod.Namespace, nil
	case "metadata.uid":
		return string(pod.UID), nil
	case "metadata.labels":
		return formatMap(pod.Labels), nil
	case "metadata.annotations":
		return formatMap(pod.Annotations), nil
	case "spec.nodeName":
		return pod.Spec.NodeName, nil
	case "spec.serviceAccountName":
		return pod.Spec.ServiceAccountName, nil
	case "status.podIP", "status.podIPs":
		return ec.podIP, nil
	case "status.hostIP", "status.hostIPs":
		return ec.hostIP, nil
	}
	return "", configErrorf("unsupported fieldRef %q", path)
}

// subscript splits `metadata.labels['key']`.
func subscript(path string) (string, string, bool) {
	i := strings.Index(path, "['")
	if i < 0 || !strings.HasSuffix(path, "']") {
		return "", "", false
	}
	return path[:i], path[i+2 : len(path)-2], true
}

// formatMap renders labels or annotations as the downward API does: key="value" lines, sorted.
func formatMap(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	lines := make([]string, 0, len(keys))
	for _, k := range keys {
		lines = append(lines, fmt.Sprintf("%s=%q", k, m[k]))
	}
	return strings.Join(lines, "\n")
}

// resourceFieldValue answers a resourceFieldRef: the container's limit or request divided by the
// divisor and rounded up; a missing limit falls back to the node's allocatable.
func resourceFieldValue(ec envContext, self *corev1.Container, ref *corev1.ResourceFieldSelector) (string, error) {
	c := self
	if ref.ContainerName != "" && ref.ContainerName != self.Name {
		c = nil
		for _, list := range [][]corev1.Container{ec.pod.Spec.InitContainers, ec.pod.Spec.Containers} {
			for i := range list {
				if list[i].Name == ref.ContainerName {
					c = &list[i]
				}
			}
		}
		if c == nil {
			return "", configErrorf("resourceFieldRef: no container %q", ref.ContainerName)
		}
	}
	kind, name, ok := strings.Cut(ref.Resource, ".")
	if !ok {
		return "", configErrorf("unsupported resourceFieldRef %q", ref.Resource)
	}
	list := c.Resources.Limits
	if kind == "requests" {
		list = c.Resources.Requests
	}
	q, found := list[corev1.ResourceName(name)]
	if !found {
		if kind == "requests" {
			q = resource.Quantity{}
		} else {
			q = ec.nodeAllocatable[corev1.ResourceName(name)]
		}
	}
	divisor := ref.Divisor
	if divisor.IsZero() {
		divisor = resource.MustParse("1")
	}
	if name == string(corev1.ResourceCPU) {
		return strconv.FormatInt(int64(math.Ceil(float64(q.MilliValue())/float64(divisor.MilliValue()))), 10), nil
	}
	return strconv.FormatInt(int64(math.Ceil(float64(q.Value())/float64(divisor.Value()))), 10), nil
}

func optional(b *bool) bool { return b != nil && *b }

func isNotFound(err error) bool { return apierrors.IsNotFound(err) || errors.Is(err, ErrNotFound) }

// ErrNotFound is what an ObjectGetter may return (wrapped) for a missing object, besides an
// apierrors NotFound error.
var ErrNotFound = errors.New("not found")

// objectCache reads each referenced object once per sync.
type objectCache struct {
	getter     ObjectGetter
	ns         string
	configMaps map[string]*corev1.ConfigMap
	secrets    map[string]*corev1.Secret
}

func (c *objectCache) configMap(ctx context.Context, name string) (*corev1.ConfigMap, error) {
	if cm, ok := c.configMaps[name]; ok {
		return cm, nil
	}
	cm, err := c.getter.GetConfigMap(ctx, c.ns, name)
	if err != nil {
		return nil, err
	}
	if c.configMaps == nil {
		c.configMaps = map[string]*corev1.ConfigMap{}
	}
	c.configMaps[name] = cm
	return cm, nil
}

func (c *objectCache) secret(ctx context.Context, name string) (*corev1.Secret, error) {
	if s, ok := c.secrets[name]; ok {
		return s, nil
	}
	s, err := c.getter.GetSecret(ctx, c.ns, name)
	if err != nil {
		return nil, err
	}
	if c.secrets == nil {
		c.secrets = map[string]*corev1.Secret{}
	}
	c.secrets[name] = s
	return s, nil
}
