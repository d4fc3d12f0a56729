package repolayout

import (
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/bosun-gitops/bosun/internal/poddefaults"
	bosunv1 "github.com/bosun-gitops/bosun/repo-layout/v1alpha1"
)

// Cluster defaults, as documented in DESIGN.md.
const (
	DefaultPodCIDR                = "10.244.0.0/16"
	DefaultNodeCIDRMaskSize       = 24
	DefaultServiceCIDR            = "10.96.0.0/16"
	DefaultClusterDomain          = "cluster.local"
	DefaultNodeMonitorGracePeriod = 40 * time.Second
	DefaultPodEvictionTimeout     = 300 * time.Second
	DefaultMachinePort            = 22
	DefaultMachineUser            = "root"
)

// setDefaults fills in what the Kubernetes API server (and Bosun, for its own kinds) defaults,
// so that stored objects look like those of a real cluster. It is a hand-written subset of
// k8s.io/kubernetes/pkg/apis/*/v1/defaults.go covering the fields of the supported kinds.
func setDefaults(obj any) {
	switch o := obj.(type) {
	case *corev1.Namespace:
		if o.Labels == nil {
			o.Labels = map[string]string{}
		}
		o.Labels[corev1.LabelMetadataName] = o.Name
	case *corev1.Pod:
		defaultPodSpec(&o.Spec)
		// Requests from limits are a Pod's default, not a template's (as in Kubernetes): a
		// workload's pods get them from the store when their controller creates them.
		poddefaults.SetRequests(&o.Spec)
	case *corev1.ReplicationController:
		defaultReplicas(&o.Spec.Replicas)
		if t := o.Spec.Template; t != nil {
			// Like the API server: an RC without a selector selects its template's labels.
			if len(o.Spec.Selector) == 0 && len(t.Labels) > 0 {
				o.Spec.Selector = copyMap(t.Labels)
			}
			if len(o.Labels) == 0 && len(t.Labels) > 0 {
				o.Labels = copyMap(t.Labels)
			}
			defaultPodSpec(&t.Spec)
		}
	case *appsv1.ReplicaSet:
		defaultReplicas(&o.Spec.Replicas)
		defaultPodSpec(&o.Spec.Template.Spec)
	case *appsv1.Deployment:
		defaultDeployment(o)
	case *appsv1.DaemonSet:
		defaultDaemonSet(o)
	case *corev1.Service:
		defaultService(o)
	case *corev1.Secret:
		if o.Type == "" {
			o.Type = corev1.SecretTypeOpaque
		}
		if len(o.StringData) > 0 {
			if o.Data == nil {
				o.Data = map[string][]byte{}
			}
			// stringData wins over data, as on the API server.
			for k, v := range o.StringData {
				o.Data[k] = []byte(v)
			}
			o.StringData = nil
		}
	case *bosunv1.Cluster:
		defaultCluster(o)
	case *bosunv1.Machine:
		if o.Spec.Port == 0 {
			o.Spec.Port = DefaultMachinePort
		}
		if o.Spec.User == "" {
			o.Spec.User = DefaultMachineUser
		}
		if j := o.Spec.ProxyJump; j != nil {
			if j.Port == 0 {
				j.Port = DefaultMachinePort
			}
			if j.User == "" {
				j.User = o.Spec.User
			}
		}
	}
}

func copyMap(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func ptr[T any](v T) *T { return &v }

func defaultReplicas(r **int32) {
	if *r == nil {
		*r = ptr(int32(1))
	}
}

func defaultCluster(c *bosunv1.Cluster) {
	s := &c.Spec
	if s.PodCIDR == "" {
		s.PodCIDR = DefaultPodCIDR
	}
	if s.NodeCIDRMaskSize == 0 {
		s.NodeCIDRMaskSize = DefaultNodeCIDRMaskSize
	}
	if s.ServiceCIDR == "" {
		s.ServiceCIDR = DefaultServiceCIDR
	}
	if s.ClusterDomain == "" {
		s.ClusterDomain = DefaultClusterDomain
	}
	if s.NodeMonitorGracePeriod == nil {
		s.NodeMonitorGracePeriod = &metav1.Duration{Duration: DefaultNodeMonitorGracePeriod}
	}
	if s.PodEvictionTimeout == nil {
		s.PodEvictionTimeout = &metav1.Duration{Duration: DefaultPodEvictionTimeout}
	}
	if s.Upgrade.MaxUnavailable == 0 {
		s.Upgrade.MaxUnavailable = 1
	}
}

func defaultDeployment(d *appsv1.Deployment) {
	s := &d.Spec
	defaultReplicas(&s.Replicas)
	if s.Strategy.Type == "" {
		s.Strategy.Type = appsv1.RollingUpdateDeploymentStrategyType
	}
	if s.Strategy.Type == appsv1.RollingUpdateDeploymentStrategyType {
		if s.Strategy.RollingUpdate == nil {
			s.Strategy.RollingUpdate = &appsv1.RollingUpdateDeployment{}
		}
		if s.Strategy.RollingUpdate.MaxUnavailable == nil {
			s.Strategy.RollingUpdate.MaxUnavailable = ptr(intstr.FromString("25%"))
		}
		if s.Strategy.RollingUpdate.MaxSurge == nil {
			s.Strategy.RollingUpdate.MaxSurge = ptr(intstr.FromString("25%"))
		}
	}
	if s.RevisionHistoryLimit == nil {
		s.RevisionHistoryLimit = ptr(int32(10))
	}
	if s.ProgressDeadlineSeconds == nil {
		s.ProgressDeadlineSeconds = ptr(int32(600))
	}
	defaultPodSpec(&s.Template.Spec)
}

func defaultDaemonSet(d *appsv1.DaemonSet) {
	s := &d.Spec
	if s.UpdateStrategy.Type == "" {
		s.UpdateStrategy.Type = appsv1.RollingUpdateDaemonSetStrategyType
	}
	if s.UpdateStrategy.Type == appsv1.RollingUpdateDaemonSetStrategyType {
		if s.UpdateStrategy.RollingUpdate == nil {
			s.UpdateStrategy.RollingUpdate = &appsv1.RollingUpdateDaemonSet{}
		}
		if s.UpdateStrategy.RollingUpdate.MaxUnavailable == nil {
			s.UpdateStrategy.RollingUpdate.MaxUnavailable = ptr(intstr.FromInt32(1))
		}
		if s.UpdateStrategy.RollingUpdate.MaxSurge == nil {
			s.UpdateStrategy.RollingUpdate.MaxSurge = ptr(intstr.FromInt32(0))
		}
	}
	if s.RevisionHistoryLimit == nil {
		s.RevisionHistoryLimit = ptr(int32(10))
	}
	defaultPodSpec(&s.Template.Spec)
}

func defaultService(svc *corev1.Service) {
	s := &svc.Spec
	if s.Type == "" {
		s.Type = corev1.ServiceTypeClusterIP
	}
	if s.SessionAffinity == "" {
		s.SessionAffinity = corev1.ServiceAffinityNone
	}
	for i := range s.Ports {
		p := &s.Ports[i]
		if p.Protocol == "" {
			p.Protocol = corev1.ProtocolTCP
		}
		if p.TargetPort.Type == intstr.Int && p.TargetPort.IntVal == 0 {
			p.TargetPort = intstr.FromInt32(p.Port)
		}
	}
}

func defaultPodSpec(s *corev1.PodSpec) {
	if s.RestartPolicy == "" {
		s.RestartPolicy = corev1.RestartPolicyAlways
	}
	if s.DNSPolicy == "" {
		s.DNSPolicy = corev1.DNSClusterFirst
	}
	if s.TerminationGracePeriodSeconds == nil {
		s.TerminationGracePeriodSeconds = ptr(int64(corev1.DefaultTerminationGracePeriodSeconds))
	}
	if s.SchedulerName == "" {
		s.SchedulerName = corev1.DefaultSchedulerName
	}
	for i := range s.Containers {
		defaultContainer(&s.Containers[i], s.HostNetwork)
	}
	for i := range s.InitContainers {
		defaultContainer(&s.InitContainers[i], s.HostNetwork)
	}
	for i := range s.Volumes {
		v := &s.Volumes[i].VolumeSource
		switch {
		case v.ConfigMap != nil && v.ConfigMap.DefaultMode == nil:
			v.ConfigMap.DefaultMode = ptr(corev1.ConfigMapVolumeSourceDefaultMode)
		case v.Secret != nil && v.Secret.DefaultMode == nil:
			v.Secret.DefaultMode = ptr(corev1.SecretVolumeSourceDefaultMode)
		case v.HostPath != nil && v.HostPath.Type == nil:
			v.HostPath.Type = ptr(corev1.HostPathUnset)
		case v.DownwardAPI != nil:
			if v.DownwardAPI.DefaultMode == nil {
				v.DownwardAPI.DefaultMode = ptr(corev1.DownwardAPIVolumeSourceDefaultMode)
			}
			defaultDownwardAPIItems(v.DownwardAPI.Items)
		case v.Projected != nil:
			if v.Projected.DefaultMode == nil {
				v.Projected.DefaultMode = ptr(corev1.ProjectedVolumeSourceDefaultMode)
			}
			for _, src := range v.Projected.Sources {
				if src.DownwardAPI != nil {
					defaultDownwardAPIItems(src.DownwardAPI.Items)
				}
			}
		}
	}
}

func defaultDownwardAPIItems(items []corev1.DownwardAPIVolumeFile) {
	for i := range items {
		if f := items[i].FieldRef; f != nil && f.APIVersion == "" {
			f.APIVersion = "v1"
		}
	}
}

func defaultContainer(c *corev1.Container, hostNetwork bool) {
	if c.ImagePullPolicy == "" {
		if imageTag(c.Image) == "latest" || (imageTag(c.Image) == "" && !strings.Contains(c.Image, "@")) {
			c.ImagePullPolicy = corev1.PullAlways
		} else {
			c.ImagePullPolicy = corev1.PullIfNotPresent
		}
	}
	if c.TerminationMessagePath == "" {
		c.TerminationMessagePath = corev1.TerminationMessagePathDefault
	}
	if c.TerminationMessagePolicy == "" {
		c.TerminationMessagePolicy = corev1.TerminationMessageReadFile
	}
	for i := range c.Ports {
		if c.Ports[i].Protocol == "" {
			c.Ports[i].Protocol = corev1.ProtocolTCP
		}
		// A hostNetwork container's ports are the node's ports (Kubernetes' defaulting).
		if hostNetwork && c.Ports[i].HostPort == 0 {
			c.Ports[i].HostPort = c.Ports[i].ContainerPort
		}
	}
	for i := range c.Env {
		if vf := c.Env[i].ValueFrom; vf != nil && vf.FieldRef != nil && vf.FieldRef.APIVersion == "" {
			vf.FieldRef.APIVersion = "v1"
		}
	}
	for _, p := range []*corev1.Probe{c.LivenessProbe, c.ReadinessProbe, c.StartupProbe} {
		defaultProbe(p)
	}
}

func defaultProbe(p *corev1.Probe) {
	if p == nil {
		return
	}
	if p.TimeoutSeconds == 0 {
		p.TimeoutSeconds = 1
	}
	if p.PeriodSeconds == 0 {
		p.PeriodSeconds = 10
	}
	if p.SuccessThreshold == 0 {
		p.SuccessThreshold = 1
	}
	if p.FailureThreshold == 0 {
		p.FailureThreshold = 3
	}
	if p.HTTPGet != nil {
		if p.HTTPGet.Path == "" {
			p.HTTPGet.Path = "/"
		}
		if p.HTTPGet.Scheme == "" {
			p.HTTPGet.Scheme = corev1.URISchemeHTTP
		}
	}
}

// imageTag returns the tag of an image reference, "" when it has none. A registry port
// ("localhost:5000/app") is not a tag.
func imageTag(image string) string {
	if i := strings.IndexByte(image, '@'); i >= 0 {
		image = image[:i]
	}
	last := image[strings.LastIndexByte(image, '/')+1:]
	if i := strings.LastIndexByte(last, ':'); i >= 0 {
		return last[i+1:]
	}
	return ""
}
