package repolayout

import (
	"fmt"
	"path"
	"sort"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/validate/content"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metavalidation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"

	bosunres "github.com/bosun-gitops/bosun/internal/resource"
	bosunv1 "github.com/bosun-gitops/bosun/repo-layout/v1alpha1"
)

// validateObject checks a defaulted object as the API server would on create, for the fields
// Bosun supports.
func validateObject(r *bosunres.Resource, obj bosunres.Object) field.ErrorList {
	nameFn := apivalidation.NameIsDNSSubdomain
	switch r {
	case bosunres.Namespaces:
		nameFn = apivalidation.NameIsDNSLabel
	case bosunres.Services:
		nameFn = apivalidation.NameIsDNS1035Label
	}
	var errs field.ErrorList
	if om, ok := obj.(interface{ GetObjectMeta() metav1.Object }); ok {
		errs = append(errs, apivalidation.ValidateObjectMetaAccessor(om.GetObjectMeta(), r.Namespaced, nameFn, field.NewPath("metadata"))...)
	}
	spec := field.NewPath("spec")
	switch o := obj.(type) {
	case *corev1.Pod:
		errs = append(errs, validatePodSpec(&o.Spec, spec, false)...)
	case *corev1.ReplicationController:
		errs = append(errs, validateReplicas(o.Spec.Replicas, spec.Child("replicas"))...)
		if len(o.Spec.Selector) == 0 {
			errs = append(errs, field.Required(spec.Child("selector"), "set the labels that select the pods"))
		}
		errs = append(errs, metavalidation.ValidateLabels(o.Spec.Selector, spec.Child("selector"))...)
		if o.Spec.Template == nil {
			errs = append(errs, field.Required(spec.Child("template"), "set the pod template"))
		} else {
			errs = append(errs, validateTemplate(o.Spec.Template, labels.SelectorFromSet(o.Spec.Selector), spec.Child("template"))...)
		}
	case *appsv1.ReplicaSet:
		errs = append(errs, validateReplicas(o.Spec.Replicas, spec.Child("replicas"))...)
		errs = append(errs, validateSelectedTemplate(o.Spec.Selector, &o.Spec.Template, spec)...)
	case *appsv1.Deployment:
		errs = append(errs, validateReplicas(o.Spec.Replicas, spec.Child("replicas"))...)
		errs = append(errs, validateSelectedTemplate(o.Spec.Selector, &o.Spec.Template, spec)...)
		errs = append(errs, validateDeploymentStrategy(&o.Spec, spec)...)
	case *appsv1.DaemonSet:
		errs = append(errs, validateSelectedTemplate(o.Spec.Selector, &o.Spec.Template, spec)...)
		errs = append(errs, validateDaemonSetStrategy(&o.Spec, spec)...)
	case *corev1.Service:
		errs = append(errs, validateService(o)...)
	case *corev1.ConfigMap:
		errs = append(errs, validateDataKeys(o.Data, o.BinaryData, field.NewPath("data"), field.NewPath("binaryData"))...)
	case *corev1.Secret:
		errs = append(errs, validateDataKeys(o.Data, map[string]string(nil), field.NewPath("data"), field.NewPath("stringData"))...)
		if o.Type == corev1.SecretTypeTLS {
			for _, k := range []string{corev1.TLSCertKey, corev1.TLSPrivateKeyKey} {
				if _, ok := o.Data[k]; !ok {
					errs = append(errs, field.Required(field.NewPath("data").Key(k), "a kubernetes.io/tls Secret needs tls.crt and tls.key"))
				}
			}
		}
	case *bosunv1.Cluster:
		errs = append(errs, validateCluster(o)...)
	case *bosunv1.Machine:
		errs = append(errs, validateMachine(o)...)
	}
	return errs
}

func validateReplicas(r *int32, p *field.Path) field.ErrorList {
	if r != nil && *r < 0 {
		return field.ErrorList{field.Invalid(p, *r, "must be greater than or equal to 0")}
	}
	return nil
}

// validateSelectedTemplate checks a selector and the pod template it must select.
func validateSelectedTemplate(sel *metav1.LabelSelector, t *corev1.PodTemplateSpec, spec *field.Path) field.ErrorList {
	var errs field.ErrorList
	sp := spec.Child("selector")
	if sel == nil {
		return append(errs, field.Required(sp, "set matchLabels selecting the pod template's labels"))
	}
	errs = append(errs, metavalidation.ValidateLabelSelector(sel, metavalidation.LabelSelectorValidationOptions{}, sp)...)
	if len(sel.MatchLabels)+len(sel.MatchExpressions) == 0 {
		errs = append(errs, field.Invalid(sp, sel, "empty selector is invalid; it would select every pod"))
	}
	selector, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		if len(errs) == 0 { // else already said, at the faulty field
			errs = append(errs, field.Invalid(sp, sel, err.Error()))
		}
		// The template is still checked, so that every error is listed; whether the selector
		// matches its labels cannot be.
		selector = labels.Everything()
	}
	return append(errs, validateTemplate(t, selector, spec.Child("template"))...)
}

func validateTemplate(t *corev1.PodTemplateSpec, selector labels.Selector, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	lp := p.Child("metadata", "labels")
	errs = append(errs, metavalidation.ValidateLabels(t.Labels, lp)...)
	errs = append(errs, apivalidation.ValidateAnnotations(t.Annotations, p.Child("metadata", "annotations"))...)
	if !selector.Empty() && !selector.Matches(labels.Set(t.Labels)) {
		errs = append(errs, field.Invalid(lp, t.Labels, "`selector` does not match template `labels`"))
	}
	errs = append(errs, validatePodSpec(&t.Spec, p.Child("spec"), true)...)
	return errs
}

func validateDeploymentStrategy(s *appsv1.DeploymentSpec, spec *field.Path) field.ErrorList {
	var errs field.ErrorList
	sp := spec.Child("strategy")
	switch s.Strategy.Type {
	case appsv1.RecreateDeploymentStrategyType:
		if s.Strategy.RollingUpdate != nil {
			errs = append(errs, field.Forbidden(sp.Child("rollingUpdate"), "may not be specified when strategy `type` is 'Recreate'"))
		}
	case appsv1.RollingUpdateDeploymentStrategyType:
		ru := s.Strategy.RollingUpdate
		errs = append(errs, validateRollingUpdate(ru.MaxUnavailable, ru.MaxSurge, sp.Child("rollingUpdate"))...)
	default:
		errs = append(errs, field.NotSupported(sp.Child("type"), s.Strategy.Type, []string{"Recreate", "RollingUpdate"}))
	}
	if s.RevisionHistoryLimit != nil && *s.RevisionHistoryLimit < 0 {
		errs = append(errs, field.Invalid(spec.Child("revisionHistoryLimit"), *s.RevisionHistoryLimit, "must be greater than or equal to 0"))
	}
	if s.MinReadySeconds < 0 {
		errs = append(errs, field.Invalid(spec.Child("minReadySeconds"), s.MinReadySeconds, "must be greater than or equal to 0"))
	}
	if d := s.ProgressDeadlineSeconds; d != nil && *d <= s.MinReadySeconds {
		errs = append(errs, field.Invalid(spec.Child("progressDeadlineSeconds"), *d, "must be greater than minReadySeconds"))
	}
	return errs
}

func validateDaemonSetStrategy(s *appsv1.DaemonSetSpec, spec *field.Path) field.ErrorList {
	var errs field.ErrorList
	sp := spec.Child("updateStrategy")
	switch s.UpdateStrategy.Type {
	case appsv1.OnDeleteDaemonSetStrategyType:
		if s.UpdateStrategy.RollingUpdate != nil {
			errs = append(errs, field.Forbidden(sp.Child("rollingUpdate"), "may not be specified when strategy `type` is 'OnDelete'"))
		}
	case appsv1.RollingUpdateDaemonSetStrategyType:
		ru := s.UpdateStrategy.RollingUpdate
		errs = append(errs, validateRollingUpdate(ru.MaxUnavailable, ru.MaxSurge, sp.Child("rollingUpdate"))...)
	default:
		errs = append(errs, field.NotSupported(sp.Child("type"), s.UpdateStrategy.Type, []string{"OnDelete", "RollingUpdate"}))
	}
	if s.RevisionHistoryLimit != nil && *s.RevisionHistoryLimit < 0 {
		errs = append(errs, field.Invalid(spec.Child("revisionHistoryLimit"), *s.RevisionHistoryLimit, "must be greater than or equal to 0"))
	}
	return errs
}

// validateRollingUpdate checks the maxUnavailable/maxSurge pair that Deployments and DaemonSets
// share.
func validateRollingUpdate(maxUnavailable, maxSurge *intstr.IntOrString, rp *field.Path) field.ErrorList {
	errs := validateIntOrPercent(maxUnavailable, rp.Child("maxUnavailable"))
	errs = append(errs, validateIntOrPercent(maxSurge, rp.Child("maxSurge"))...)
	if isZero(maxUnavailable) && isZero(maxSurge) {
		errs = append(errs, field.Invalid(rp.Child("maxUnavailable"), maxUnavailable.String(), "may not be 0 when `maxSurge` is 0"))
	}
	return errs
}

func isZero(v *intstr.IntOrString) bool {
	if v == nil {
		return true
	}
	if v.Type == intstr.Int {
		return v.IntVal == 0
	}
	return strings.TrimSuffix(v.StrVal, "%") == "0"
}

func validateIntOrPercent(v *intstr.IntOrString, p *field.Path) field.ErrorList {
	if v == nil {
		return nil
	}
	if v.Type == intstr.Int {
		if v.IntVal < 0 {
			return field.ErrorList{field.Invalid(p, v.IntVal, "must be greater than or equal to 0")}
		}
		return nil
	}
	for _, msg := range validation.IsValidPercent(v.StrVal) {
		return field.ErrorList{field.Invalid(p, v.StrVal, msg)}
	}
	return nil
}

// validatePodSpec checks a pod spec; inTemplate is true for the template of a workload, whose
// pods must restart forever.
func validatePodSpec(s *corev1.PodSpec, p *field.Path, inTemplate bool) field.ErrorList {
	var errs field.ErrorList
	containers := sets.New[string]()
	for _, c := range append(append([]corev1.Container{}, s.InitContainers...), s.Containers...) {
		containers.Insert(c.Name)
	}
	volumes := sets.New[string]()
	for i, v := range s.Volumes {
		vp := p.Child("volumes").Index(i)
		errs = append(errs, validateVolume(&v, vp, containers)...)
		if volumes.Has(v.Name) {
			errs = append(errs, field.Duplicate(vp.Child("name"), v.Name))
		}
		volumes.Insert(v.Name)
	}
	if len(s.Containers) == 0 {
		errs = append(errs, field.Required(p.Child("containers"), "a pod needs at least one container"))
	}
	names := sets.New[string]()
	portNames := sets.New[string]()
	for i := range s.Containers {
		cp := p.Child("containers").Index(i)
		c := &s.Containers[i]
		errs = append(errs, validateContainer(c, cp, volumes, portNames)...)
		if s.HostNetwork {
			for j, port := range c.Ports {
				if port.HostPort != port.ContainerPort {
					errs = append(errs, field.Invalid(cp.Child("ports").Index(j).Child("hostPort"), port.HostPort,
						"must match containerPort when hostNetwork is true (the container listens on the node's own ports)"))
				}
			}
		}
		if c.Name != "" && names.Has(c.Name) {
			errs = append(errs, field.Duplicate(cp.Child("name"), c.Name))
		}
		names.Insert(c.Name)
	}
	switch s.RestartPolicy {
	case corev1.RestartPolicyAlways:
	case corev1.RestartPolicyOnFailure, corev1.RestartPolicyNever:
		if inTemplate {
			errs = append(errs, field.NotSupported(p.Child("restartPolicy"), s.RestartPolicy, []string{string(corev1.RestartPolicyAlways)}))
		}
	default:
		errs = append(errs, field.NotSupported(p.Child("restartPolicy"), s.RestartPolicy, []string{"Always", "OnFailure", "Never"}))
	}
	if g := s.TerminationGracePeriodSeconds; g != nil && *g < 0 {
		errs = append(errs, field.Invalid(p.Child("terminationGracePeriodSeconds"), *g, "must be greater than or equal to 0"))
	}
	errs = append(errs, metavalidation.ValidateLabels(s.NodeSelector, p.Child("nodeSelector"))...)
	if s.NodeName != "" {
		for _, msg := range validation.IsDNS1123Subdomain(s.NodeName) {
			errs = append(errs, field.Invalid(p.Child("nodeName"), s.NodeName, msg))
		}
	}
	if s.Hostname != "" {
		for _, msg := range validation.IsDNS1123Label(s.Hostname) {
			errs = append(errs, field.Invalid(p.Child("hostname"), s.Hostname, msg))
		}
	}
	for i, t := range s.Tolerations {
		errs = append(errs, validateToleration(&t, p.Child("tolerations").Index(i))...)
	}
	errs = append(errs, validatePodSecurity(s, p)...)
	return errs
}

func validateVolume(v *corev1.Volume, p *field.Path, containers sets.Set[string]) field.ErrorList {
	var errs field.ErrorList
	if v.Name == "" {
		errs = append(errs, field.Required(p.Child("name"), ""))
	} else {
		for _, msg := range validation.IsDNS1123Label(v.Name) {
			errs = append(errs, field.Invalid(p.Child("name"), v.Name, msg))
		}
	}
	n := 0
	if v.EmptyDir != nil {
		n++
	}
	if hp := v.HostPath; hp != nil {
		n++
		if !path.IsAbs(hp.Path) {
			errs = append(errs, field.Invalid(p.Child("hostPath", "path"), hp.Path, "must be an absolute path"))
		}
		if hp.Type != nil {
			switch *hp.Type {
			case corev1.HostPathUnset, corev1.HostPathDirectoryOrCreate, corev1.HostPathDirectory, corev1.HostPathFileOrCreate,
				corev1.HostPathFile, corev1.HostPathSocket, corev1.HostPathCharDev, corev1.HostPathBlockDev:
			default:
				errs = append(errs, field.NotSupported(p.Child("hostPath", "type"), *hp.Type,
					[]string{"", "DirectoryOrCreate", "Directory", "FileOrCreate", "File", "Socket", "CharDevice", "BlockDevice"}))
			}
		}
	}
	if cm := v.ConfigMap; cm != nil {
		n++
		errs = append(errs, validateReferenceName(cm.Name, p.Child("configMap", "name"))...)
		errs = append(errs, validateKeyToPaths(cm.Items, p.Child("configMap", "items"))...)
		errs = append(errs, validateMode(cm.DefaultMode, p.Child("configMap", "defaultMode"))...)
	}
	if sec := v.Secret; sec != nil {
		n++
		errs = append(errs, validateReferenceName(sec.SecretName, p.Child("secret", "secretName"))...)
		errs = append(errs, validateKeyToPaths(sec.Items, p.Child("secret", "items"))...)
		errs = append(errs, validateMode(sec.DefaultMode, p.Child("secret", "defaultMode"))...)
	}
	if d := v.DownwardAPI; d != nil {
		n++
		errs = append(errs, validateDownwardAPIItems(d.Items, p.Child("downwardAPI", "items"), containers)...)
		errs = append(errs, validateMode(d.DefaultMode, p.Child("downwardAPI", "defaultMode"))...)
	}
	if pr := v.Projected; pr != nil {
		n++
		errs = append(errs, validateProjected(pr, p.Child("projected"), containers)...)
	}
	switch {
	case n == 0 && v.Name != "":
		// An unsupported source is reported as such; only a volume with no source at all is here.
		if v.VolumeSource == (corev1.VolumeSource{}) {
			errs = append(errs, field.Required(p, "must specify a volume type (emptyDir, hostPath, configMap, secret, downwardAPI or projected)"))
		}
	case n > 1:
		errs = append(errs, field.Forbidden(p, "may not specify more than 1 volume type"))
	}
	return errs
}

// downwardVolumeFields are the pod fields a downwardAPI volume may project (besides a single
// label or annotation); the pod's IPs and node name are for env only, as in Kubernetes.
var downwardVolumeFields = []string{"metadata.name", "metadata.namespace", "metadata.uid", "metadata.labels", "metadata.annotations"}

// downwardResources are what a resourceFieldRef may name.
var downwardResources = []string{"limits.cpu", "limits.memory", "limits.ephemeral-storage", "requests.cpu", "requests.memory", "requests.ephemeral-storage"}

func validateDownwardAPIItems(items []corev1.DownwardAPIVolumeFile, p *field.Path, containers sets.Set[string]) field.ErrorList {
	var errs field.ErrorList
	for i, it := range items {
		ip := p.Index(i)
		errs = append(errs, validateLocalPath(it.Path, ip.Child("path"))...)
		errs = append(errs, validateMode(it.Mode, ip.Child("mode"))...)
		switch {
		case it.FieldRef != nil && it.ResourceFieldRef != nil:
			errs = append(errs, field.Invalid(ip, "", "fieldRef and resourceFieldRef can not be specified simultaneously"))
		case it.FieldRef != nil:
			fp := it.FieldRef.FieldPath
			if name, _, ok := subscript(fp); ok && (name == "metadata.labels" || name == "metadata.annotations") {
				break
			}
			if !contains(downwardVolumeFields, fp) {
				errs = append(errs, field.NotSupported(ip.Child("fieldRef", "fieldPath"), fp, append(downwardVolumeFields, "metadata.labels['<KEY>']", "metadata.annotations['<KEY>']")))
			}
		case it.ResourceFieldRef != nil:
			r := it.ResourceFieldRef
			rp := ip.Child("resourceFieldRef")
			switch {
			case r.ContainerName == "":
				errs = append(errs, field.Required(rp.Child("containerName"), "a downwardAPI volume names the container whose resources it shows"))
			case !containers.Has(r.ContainerName):
				errs = append(errs, field.NotFound(rp.Child("containerName"), r.ContainerName))
			}
			if !contains(downwardResources, r.Resource) {
				errs = append(errs, field.NotSupported(rp.Child("resource"), r.Resource, downwardResources))
			}
		default:
			errs = append(errs, field.Required(ip, "one of fieldRef or resourceFieldRef"))
		}
	}
	return errs
}

// subscript splits `metadata.labels['key']`.
func subscript(path string) (string, string, bool) {
	i := strings.Index(path, "['")
	if i < 0 || !strings.HasSuffix(path, "']") {
		return "", "", false
	}
	return path[:i], path[i+2 : len(path)-2], true
}

func validateProjected(pr *corev1.ProjectedVolumeSource, p *field.Path, containers sets.Set[string]) field.ErrorList {
	errs := validateMode(pr.DefaultMode, p.Child("defaultMode"))
	paths := map[string]*field.Path{} // every file the volume would hold, to find two sources writing one
	claim := func(path string, at *field.Path) {
		if prev, ok := paths[path]; ok {
			errs = append(errs, field.Invalid(at, path, fmt.Sprintf("conflicting duplicate paths: also written by %s", prev)))
			return
		}
		paths[path] = at
	}
	for i, src := range pr.Sources {
		sp := p.Child("sources").Index(i)
		n := 0
		if cm := src.ConfigMap; cm != nil {
			n++
			errs = append(errs, validateReferenceName(cm.Name, sp.Child("configMap", "name"))...)
			errs = append(errs, validateKeyToPaths(cm.Items, sp.Child("configMap", "items"))...)
			for j, it := range cm.Items {
				claim(it.Path, sp.Child("configMap", "items").Index(j).Child("path"))
			}
		}
		if sec := src.Secret; sec != nil {
			n++
			errs = append(errs, validateReferenceName(sec.Name, sp.Child("secret", "name"))...)
			errs = append(errs, validateKeyToPaths(sec.Items, sp.Child("secret", "items"))...)
			for j, it := range sec.Items {
				claim(it.Path, sp.Child("secret", "items").Index(j).Child("path"))
			}
		}
		if d := src.DownwardAPI; d != nil {
			n++
			errs = append(errs, validateDownwardAPIItems(d.Items, sp.Child("downwardAPI", "items"), containers)...)
			for j, it := range d.Items {
				claim(it.Path, sp.Child("downwardAPI", "items").Index(j).Child("path"))
			}
		}
		switch {
		case n == 0 && src == (corev1.VolumeProjection{}):
			errs = append(errs, field.Required(sp, "must specify a source (configMap, secret or downwardAPI)"))
		case n > 1:
			errs = append(errs, field.Forbidden(sp, "may not specify more than 1 volume type per source"))
		}
	}
	return errs
}

func validateReferenceName(name string, p *field.Path) field.ErrorList {
	if name == "" {
		return field.ErrorList{field.Required(p, "")}
	}
	var errs field.ErrorList
	for _, msg := range validation.IsDNS1123Subdomain(name) {
		errs = append(errs, field.Invalid(p, name, msg))
	}
	return errs
}

func validateMode(m *int32, p *field.Path) field.ErrorList {
	if m != nil && (*m < 0 || *m > 0777) {
		return field.ErrorList{field.Invalid(p, *m, "must be a number between 0 and 0777 (octal), both inclusive")}
	}
	return nil
}

func validateKeyToPaths(items []corev1.KeyToPath, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	for i, kp := range items {
		ip := p.Index(i)
		if kp.Key == "" {
			errs = append(errs, field.Required(ip.Child("key"), ""))
		}
		errs = append(errs, validateLocalPath(kp.Path, ip.Child("path"))...)
		errs = append(errs, validateMode(kp.Mode, ip.Child("mode"))...)
	}
	return errs
}

func validateLocalPath(v string, p *field.Path) field.ErrorList {
	switch {
	case v == "":
		return field.ErrorList{field.Required(p, "")}
	case path.IsAbs(v):
		return field.ErrorList{field.Invalid(p, v, "must be a relative path")}
	case v == ".." || strings.HasPrefix(v, "../") || strings.Contains(v, "/../") || strings.HasSuffix(v, "/.."):
		return field.ErrorList{field.Invalid(p, v, "must not contain '..'")}
	}
	return nil
}

var supportedPullPolicies = []string{string(corev1.PullAlways), string(corev1.PullIfNotPresent), string(corev1.PullNever)}

func validateContainer(c *corev1.Container, p *field.Path, volumes sets.Set[string], portNames sets.Set[string]) field.ErrorList {
	var errs field.ErrorList
	if c.Name == "" {
		errs = append(errs, field.Required(p.Child("name"), ""))
	} else {
		for _, msg := range validation.IsDNS1123Label(c.Name) {
			errs = append(errs, field.Invalid(p.Child("name"), c.Name, msg))
		}
	}
	switch {
	case strings.TrimSpace(c.Image) == "":
		errs = append(errs, field.Required(p.Child("image"), "set the container image, for example docker.io/library/busybox:1.36"))
	case strings.TrimSpace(c.Image) != c.Image || strings.ContainsAny(c.Image, " \t\n"):
		errs = append(errs, field.Invalid(p.Child("image"), c.Image, "must not contain whitespace"))
	}
	if !contains(supportedPullPolicies, string(c.ImagePullPolicy)) {
		errs = append(errs, field.NotSupported(p.Child("imagePullPolicy"), c.ImagePullPolicy, supportedPullPolicies))
	}
	switch c.TerminationMessagePolicy {
	case corev1.TerminationMessageReadFile, corev1.TerminationMessageFallbackToLogsOnError:
	default:
		errs = append(errs, field.NotSupported(p.Child("terminationMessagePolicy"), c.TerminationMessagePolicy, []string{"File", "FallbackToLogsOnError"}))
	}
	for i, port := range c.Ports {
		pp := p.Child("ports").Index(i)
		for _, msg := range validation.IsValidPortNum(int(port.ContainerPort)) {
			errs = append(errs, field.Invalid(pp.Child("containerPort"), port.ContainerPort, msg))
		}
		if port.HostPort != 0 {
			for _, msg := range validation.IsValidPortNum(int(port.HostPort)) {
				errs = append(errs, field.Invalid(pp.Child("hostPort"), port.HostPort, msg))
			}
		}
		if port.Name != "" {
			for _, msg := range validation.IsValidPortName(port.Name) {
				errs = append(errs, field.Invalid(pp.Child("name"), port.Name, msg))
			}
			if portNames.Has(port.Name) {
				errs = append(errs, field.Duplicate(pp.Child("name"), port.Name))
			}
			portNames.Insert(port.Name)
		}
		switch port.Protocol {
		case corev1.ProtocolTCP, corev1.ProtocolUDP, corev1.ProtocolSCTP:
		default:
			errs = append(errs, field.NotSupported(pp.Child("protocol"), port.Protocol, []string{"TCP", "UDP", "SCTP"}))
		}
	}
	for i, e := range c.Env {
		errs = append(errs, validateEnv(&e, p.Child("env").Index(i))...)
	}
	for i, e := range c.EnvFrom {
		ep := p.Child("envFrom").Index(i)
		n := 0
		if e.ConfigMapRef != nil {
			n++
			errs = append(errs, validateReferenceName(e.ConfigMapRef.Name, ep.Child("configMapRef", "name"))...)
		}
		if e.SecretRef != nil {
			n++
			errs = append(errs, validateReferenceName(e.SecretRef.Name, ep.Child("secretRef", "name"))...)
		}
		if n != 1 {
			errs = append(errs, field.Invalid(ep, "", "must specify exactly one of configMapRef or secretRef"))
		}
	}
	errs = append(errs, validateResources(&c.Resources, p.Child("resources"))...)
	mountPaths := sets.New[string]()
	for i, m := range c.VolumeMounts {
		mp := p.Child("volumeMounts").Index(i)
		switch {
		case m.Name == "":
			errs = append(errs, field.Required(mp.Child("name"), ""))
		case !volumes.Has(m.Name):
			errs = append(errs, field.NotFound(mp.Child("name"), m.Name))
		}
		switch {
		case m.MountPath == "":
			errs = append(errs, field.Required(mp.Child("mountPath"), ""))
		case !path.IsAbs(m.MountPath):
			errs = append(errs, field.Invalid(mp.Child("mountPath"), m.MountPath, "must be an absolute path"))
		case mountPaths.Has(m.MountPath):
			errs = append(errs, field.Invalid(mp.Child("mountPath"), m.MountPath, "must be unique"))
		}
		mountPaths.Insert(m.MountPath)
		if m.SubPath != "" {
			errs = append(errs, validateLocalPath(m.SubPath, mp.Child("subPath"))...)
		}
	}
	errs = append(errs, validateProbe(c.LivenessProbe, p.Child("livenessProbe"))...)
	errs = append(errs, validateProbe(c.ReadinessProbe, p.Child("readinessProbe"))...)
	return errs
}

func validateEnv(e *corev1.EnvVar, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	if e.Name == "" {
		errs = append(errs, field.Required(p.Child("name"), ""))
	} else {
		for _, msg := range validation.IsEnvVarName(e.Name) {
			errs = append(errs, field.Invalid(p.Child("name"), e.Name, msg))
		}
	}
	vf := e.ValueFrom
	if vf == nil {
		return errs
	}
	vp := p.Child("valueFrom")
	n := 0
	if vf.FieldRef != nil {
		n++
		if vf.FieldRef.FieldPath == "" {
			errs = append(errs, field.Required(vp.Child("fieldRef", "fieldPath"), ""))
		}
	}
	if r := vf.ConfigMapKeyRef; r != nil {
		n++
		errs = append(errs, validateReferenceName(r.Name, vp.Child("configMapKeyRef", "name"))...)
		if r.Key == "" {
			errs = append(errs, field.Required(vp.Child("configMapKeyRef", "key"), ""))
		}
	}
	if r := vf.SecretKeyRef; r != nil {
		n++
		errs = append(errs, validateReferenceName(r.Name, vp.Child("secretKeyRef", "name"))...)
		if r.Key == "" {
			errs = append(errs, field.Required(vp.Child("secretKeyRef", "key"), ""))
		}
	}
	if n > 1 {
		errs = append(errs, field.Invalid(vp, "", "may not have more than one field specified at a time"))
	}
	if n > 0 && e.Value != "" {
		errs = append(errs, field.Invalid(p.Child("value"), e.Value, "may not be specified when `valueFrom` is not empty"))
	}
	return errs
}

func validateResources(r *corev1.ResourceRequirements, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	check := func(list corev1.ResourceList, lp *field.Path) {
		for _, name := range sortedKeys(list) {
			q := list[corev1.ResourceName(name)]
			rp := lp.Key(name)
			if !standardResource(name) {
				errs = append(errs, field.Invalid(rp, name, "must be cpu, memory, ephemeral-storage or a domain-qualified extended resource"))
			}
			if q.Sign() < 0 {
				errs = append(errs, field.Invalid(rp, q.String(), "must be greater than or equal to 0"))
			}
		}
	}
	check(r.Limits, p.Child("limits"))
	check(r.Requests, p.Child("requests"))
	for _, name := range sortedKeys(r.Requests) {
		req := r.Requests[corev1.ResourceName(name)]
		lim, ok := r.Limits[corev1.ResourceName(name)]
		if ok && req.Cmp(lim) > 0 {
			errs = append(errs, field.Invalid(p.Child("requests").Key(name), req.String(), fmt.Sprintf("must be less than or equal to %s limit of %s", name, lim.String())))
		}
	}
	return errs
}

func sortedKeys(l corev1.ResourceList) []string {
	keys := make([]string, 0, len(l))
	for k := range l {
		keys = append(keys, string(k))
	}
	sort.Strings(keys)
	return keys
}

func standardResource(name string) bool {
	switch corev1.ResourceName(name) {
	case corev1.ResourceCPU, corev1.ResourceMemory, corev1.ResourceEphemeralStorage:
		return true
	}
	// Extended resources are domain-qualified, outside kubernetes.io.
	return strings.Contains(name, "/") && !strings.Contains(name, "kubernetes.io/") && len(content.IsLabelKey(name)) == 0
}

func validateProbe(pr *corev1.Probe, p *field.Path) field.ErrorList {
	if pr == nil {
		return nil
	}
	var errs field.ErrorList
	n := 0
	if pr.Exec != nil {
		n++
		if len(pr.Exec.Command) == 0 {
			errs = append(errs, field.Required(p.Child("exec", "command"), ""))
		}
	}
	if pr.HTTPGet != nil {
		n++
		errs = append(errs, validatePortRef(pr.HTTPGet.Port, p.Child("httpGet", "port"))...)
	}
	if pr.TCPSocket != nil {
		n++
		errs = append(errs, validatePortRef(pr.TCPSocket.Port, p.Child("tcpSocket", "port"))...)
	}
	if pr.GRPC != nil {
		n++
		for _, msg := range validation.IsValidPortNum(int(pr.GRPC.Port)) {
			errs = append(errs, field.Invalid(p.Child("grpc", "port"), pr.GRPC.Port, msg))
		}
	}
	if n != 1 {
		errs = append(errs, field.Invalid(p, "", "must specify exactly one handler: exec, httpGet, tcpSocket or grpc"))
	}
	for name, v := range map[string]int32{"initialDelaySeconds": pr.InitialDelaySeconds, "timeoutSeconds": pr.TimeoutSeconds,
		"periodSeconds": pr.PeriodSeconds, "successThreshold": pr.SuccessThreshold, "failureThreshold": pr.FailureThreshold} {
		if v < 0 {
			errs = append(errs, field.Invalid(p.Child(name), v, "must be greater than or equal to 0"))
		}
	}
	return errs
}

// validatePortRef checks a port given by number or by a container port name.
func validatePortRef(v intstr.IntOrString, p *field.Path) field.ErrorList {
	var msgs []string
	if v.Type == intstr.Int {
		msgs = validation.IsValidPortNum(int(v.IntVal))
	} else {
		msgs = validation.IsValidPortName(v.StrVal)
	}
	var errs field.ErrorList
	for _, msg := range msgs {
		errs = append(errs, field.Invalid(p, v.String(), msg))
	}
	return errs
}

func validateToleration(t *corev1.Toleration, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	if t.Key != "" {
		for _, msg := range content.IsLabelKey(t.Key) {
			errs = append(errs, field.Invalid(p.Child("key"), t.Key, msg))
		}
	}
	switch t.Operator {
	case corev1.TolerationOpEqual, "":
		if t.Key == "" {
			errs = append(errs, field.Invalid(p.Child("operator"), t.Operator, "operator must be Exists when `key` is empty, which means \"match all values and all keys\""))
		}
		for _, msg := range content.IsLabelValue(t.Value) {
			errs = append(errs, field.Invalid(p.Child("value"), t.Value, msg))
		}
	case corev1.TolerationOpExists:
		if t.Value != "" {
			errs = append(errs, field.Invalid(p.Child("operator"), t.Value, "value must be empty when `operator` is 'Exists'"))
		}
	default:
		errs = append(errs, field.NotSupported(p.Child("operator"), t.Operator, []string{"Equal", "Exists"}))
	}
	if t.Effect != "" {
		errs = append(errs, validateTaintEffect(t.Effect, p.Child("effect"))...)
	}
	if t.TolerationSeconds != nil && t.Effect != corev1.TaintEffectNoExecute {
		errs = append(errs, field.Invalid(p.Child("effect"), t.Effect, "effect must be 'NoExecute' when `tolerationSeconds` is set"))
	}
	return errs
}

func validateTaintEffect(e corev1.TaintEffect, p *field.Path) field.ErrorList {
	switch e {
	case corev1.TaintEffectNoSchedule, corev1.TaintEffectPreferNoSchedule, corev1.TaintEffectNoExecute:
		return nil
	}
	return field.ErrorList{field.NotSupported(p, e, []string{"NoSchedule", "PreferNoSchedule", "NoExecute"})}
}

func validateService(svc *corev1.Service) field.ErrorList {
	var errs field.ErrorList
	s := &svc.Spec
	p := field.NewPath("spec")
	if len(s.Selector) == 0 {
		errs = append(errs, field.Required(p.Child("selector"), "Bosun computes endpoints from the selector; a Service without one is not supported"))
	}
	errs = append(errs, metavalidation.ValidateLabels(s.Selector, p.Child("selector"))...)
	if s.ClusterIP != "" && s.ClusterIP != corev1.ClusterIPNone {
		errs = append(errs, validation.IsValidIP(p.Child("clusterIP"), s.ClusterIP)...)
	}
	if len(s.Ports) == 0 && s.ClusterIP != corev1.ClusterIPNone {
		errs = append(errs, field.Required(p.Child("ports"), "a Service needs at least one port"))
	}
	names := sets.New[string]()
	type portProto struct {
		port  int32
		proto corev1.Protocol
	}
	seen := map[portProto]bool{}
	for i, sp := range s.Ports {
		pp := p.Child("ports").Index(i)
		if len(s.Ports) > 1 && sp.Name == "" {
			errs = append(errs, field.Required(pp.Child("name"), "every port needs a name when a Service has more than one"))
		}
		if sp.Name != "" {
			for _, msg := range validation.IsDNS1123Label(sp.Name) {
				errs = append(errs, field.Invalid(pp.Child("name"), sp.Name, msg))
			}
			if names.Has(sp.Name) {
				errs = append(errs, field.Duplicate(pp.Child("name"), sp.Name))
			}
			names.Insert(sp.Name)
		}
		for _, msg := range validation.IsValidPortNum(int(sp.Port)) {
			errs = append(errs, field.Invalid(pp.Child("port"), sp.Port, msg))
		}
		key := portProto{sp.Port, sp.Protocol}
		if seen[key] {
			errs = append(errs, field.Duplicate(pp, fmt.Sprintf("%d/%s", sp.Port, sp.Protocol)))
		}
		seen[key] = true
		if sp.TargetPort.Type == intstr.String || sp.TargetPort.IntVal != 0 {
			// 0 only when port is 0 too (targetPort defaults to port), already reported.
			errs = append(errs, validatePortRef(sp.TargetPort, pp.Child("targetPort"))...)
		}
		if sp.NodePort != 0 {
			if s.Type != corev1.ServiceTypeNodePort {
				errs = append(errs, field.Forbidden(pp.Child("nodePort"), "may only be set when `type` is 'NodePort'"))
			} else if sp.NodePort < 30000 || sp.NodePort > 32767 {
				errs = append(errs, field.Invalid(pp.Child("nodePort"), sp.NodePort, "must be in the range 30000-32767"))
			}
		}
	}
	return errs
}

func validateDataKeys[A, B any](data map[string]A, binary map[string]B, dp, bp *field.Path) field.ErrorList {
	var errs field.ErrorList
	for _, k := range sortedMapKeys(data) {
		for _, msg := range validation.IsConfigMapKey(k) {
			errs = append(errs, field.Invalid(dp.Key(k), k, msg))
		}
	}
	for _, k := range sortedMapKeys(binary) {
		for _, msg := range validation.IsConfigMapKey(k) {
			errs = append(errs, field.Invalid(bp.Key(k), k, msg))
		}
		if _, dup := data[k]; dup {
			errs = append(errs, field.Invalid(bp.Key(k), k, "duplicate of key present in data"))
		}
	}
	return errs
}

func sortedMapKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
