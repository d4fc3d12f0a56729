package repolayout

import (
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// TestEverySecurityFieldImplementedOrRefused holds every field of the pod's and the containers'
// securityContext to one of two fates: the agent applies it (nodeagent/pods/security.go and
// nodeagent/runtime/security.go), or unsupported.go refuses it. A field a newer k8s.io/api adds
// fails this test until it is given one.
func TestEverySecurityFieldImplementedOrRefused(t *testing.T) {
	implemented := map[string][]string{
		"securityContext": {"runAsUser", "runAsGroup", "runAsNonRoot", "supplementalGroups", "seccompProfile"},
		"containers[*].securityContext": {"runAsUser", "runAsGroup", "runAsNonRoot", "capabilities", "privileged",
			"readOnlyRootFilesystem", "allowPrivilegeEscalation", "seccompProfile"},
	}
	refused := map[string]bool{}
	for _, f := range podSpecUnsupported {
		if f.allowed == nil && f.onlyKeys == nil {
			refused[f.path] = true
		}
	}
	// Allowed values only: the rest of the values are refused.
	partly := map[string]bool{"containers[*].securityContext.procMount": true}
	for prefix, typ := range map[string]reflect.Type{
		"securityContext":               reflect.TypeFor[corev1.PodSecurityContext](),
		"containers[*].securityContext": reflect.TypeFor[corev1.SecurityContext](),
	} {
		for i := range typ.NumField() {
			name, _, _ := strings.Cut(typ.Field(i).Tag.Get("json"), ",")
			path := prefix + "." + name
			isImplemented := false
			for _, n := range implemented[prefix] {
				isImplemented = isImplemented || n == name
			}
			switch {
			case isImplemented && refused[path]:
				t.Errorf("%s is implemented and refused; remove it from unsupported.go", path)
			case !isImplemented && !refused[path] && !partly[path]:
				t.Errorf("%s is neither implemented nor refused: implement it or add it to unsupported.go", path)
			}
			if strings.HasPrefix(path, "containers[*].") && refused[path] != refused["initContainers"+strings.TrimPrefix(path, "containers")] {
				t.Errorf("%s is refused for containers and not for init containers, or the other way round", path)
			}
		}
	}
}
