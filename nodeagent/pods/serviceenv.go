package pods

import (
	"fmt"
	"net"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ServiceLister reads the cluster's Services for the containers' service environment variables.
type ServiceLister interface {
	// HasSynced reports whether the Services were read at least once.
	HasSynced() bool
	// List returns the Services of a namespace.
	List(namespace string) ([]*corev1.Service, error)
}

// apiServiceName is the Service in the default namespace that every pod gets variables for
// (the kubelet's "master service"), whatever its enableServiceLinks.
const apiServiceName = "kubernetes"

// serviceEnv returns the service environment variables of a pod in namespace, as the kubelet
// sets them: for each Service with a cluster IP in the pod's namespace (when enableServiceLinks,
// true by default) and for default/kubernetes, FOO_SERVICE_HOST, FOO_SERVICE_PORT,
// FOO_SERVICE_PORT_<NAME> and the Docker link variables FOO_PORT, FOO_PORT_<port>_<PROTO>[_PROTO,
// _PORT, _ADDR]. A nil lister gives none; Services not read yet are an error (the container is
// created once they are), as the kubelet's.
func serviceEnv(lister ServiceLister, pod *corev1.Pod) (map[string]string, error) {
	if lister == nil {
		return nil, nil
	}
	if !lister.HasSynced() {
		return nil, configErrorf("services have not yet been read at least once, cannot construct envvars")
	}
	byName := map[string]*corev1.Service{}
	if pod.Spec.EnableServiceLinks == nil || *pod.Spec.EnableServiceLinks {
		list, err := lister.List(pod.Namespace)
		if err != nil {
			return nil, fmt.Errorf("listing the services of namespace %s: %w", pod.Namespace, err)
		}
		for _, svc := range list {
			if pod.Namespace == metav1.NamespaceDefault && svc.Name == apiServiceName {
				continue // below
			}
			if serviceIPSet(svc) {
				byName[svc.Name] = svc
			}
		}
	}
	if _, ok := byName[apiServiceName]; !ok {
		list, err := lister.List(metav1.NamespaceDefault)
		if err != nil {
			return nil, fmt.Errorf("listing the services of namespace %s: %w", metav1.NamespaceDefault, err)
		}
		for _, svc := range list {
			if svc.Name == apiServiceName && serviceIPSet(svc) {
				byName[apiServiceName] = svc
			}
		}
	}
	env := map[string]string{}
	for _, svc := range byName {
		addServiceVars(env, svc)
	}
	return env, nil
}

func serviceIPSet(svc *corev1.Service) bool {
	return svc.Spec.ClusterIP != "" && svc.Spec.ClusterIP != corev1.ClusterIPNone && len(svc.Spec.Ports) > 0
}

// addServiceVars adds one Service's variables (the kubelet's envvars.FromServices).
func addServiceVars(env map[string]string, svc *corev1.Service) {
	prefix := envVarName(svc.Name)
	ip := svc.Spec.ClusterIP
	env[prefix+"_SERVICE_HOST"] = ip
	env[prefix+"_SERVICE_PORT"] = strconv.Itoa(int(svc.Spec.Ports[0].Port))
	for i, sp := range svc.Spec.Ports {
		if sp.Name != "" {
			env[prefix+"_SERVICE_PORT_"+envVarName(sp.Name)] = strconv.Itoa(int(sp.Port))
		}
		proto := string(corev1.ProtocolTCP)
		if sp.Protocol != "" {
			proto = string(sp.Protocol)
		}
		url := strings.ToLower(proto) + "://" + net.JoinHostPort(ip, strconv.Itoa(int(sp.Port)))
		if i == 0 {
			env[prefix+"_PORT"] = url // Docker's links name the first port so
		}
		portPrefix := fmt.Sprintf("%s_PORT_%d_%s", prefix, sp.Port, strings.ToUpper(proto))
		env[portPrefix] = url
		env[portPrefix+"_PROTO"] = strings.ToLower(proto)
		env[portPrefix+"_PORT"] = strconv.Itoa(int(sp.Port))
		env[portPrefix+"_ADDR"] = ip
	}
}

// envVarName turns a Service or port name into a variable name part: upper case, '-' as '_'.
func envVarName(s string) string { return strings.ToUpper(strings.ReplaceAll(s, "-", "_")) }
