package pods

import (
	"fmt"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// effectiveSecurity is a container's securityContext with the pod's settings filled in where the
// container leaves them unset, as the kubelet's DetermineEffectiveSecurityContext does: the user,
// group and runAsNonRoot come from either; the rest is the container's own.
type effectiveSecurity struct {
	uid, gid     *int64
	runAsNonRoot bool
	container    corev1.SecurityContext
}

func containerSecurity(pod *corev1.Pod, c *corev1.Container) effectiveSecurity {
	var e effectiveSecurity
	if psc := pod.Spec.SecurityContext; psc != nil {
		e.uid, e.gid = psc.RunAsUser, psc.RunAsGroup
		e.runAsNonRoot = psc.RunAsNonRoot != nil && *psc.RunAsNonRoot
	}
	if sc := c.SecurityContext; sc != nil {
		e.container = *sc
		if sc.RunAsUser != nil {
			e.uid = sc.RunAsUser
		}
		if sc.RunAsGroup != nil {
			e.gid = sc.RunAsGroup
		}
		if sc.RunAsNonRoot != nil {
			e.runAsNonRoot = *sc.RunAsNonRoot
		}
	}
	return e
}

// security is what the runtime applies for the container's securityContext, as the kubelet hands
// it to the CRI: capabilities normalised to "CAP_*" names, no_new_privs only when
// allowPrivilegeEscalation is false (Kubernetes' default allows escalation).
func (e effectiveSecurity) security(pod *corev1.Pod) Security {
	sc := e.container
	s := Security{
		Privileged:             sc.Privileged != nil && *sc.Privileged,
		ReadOnlyRootFilesystem: sc.ReadOnlyRootFilesystem != nil && *sc.ReadOnlyRootFilesystem,
		NoNewPrivileges:        sc.AllowPrivilegeEscalation != nil && !*sc.AllowPrivilegeEscalation,
	}
	if psc := pod.Spec.SecurityContext; psc != nil {
		s.SupplementalGroups = append([]int64(nil), psc.SupplementalGroups...)
		if psc.SeccompProfile != nil {
			s.SeccompRuntimeDefault = psc.SeccompProfile.Type == corev1.SeccompProfileTypeRuntimeDefault
		}
	}
	if sc.SeccompProfile != nil { // the container's wins
		s.SeccompRuntimeDefault = sc.SeccompProfile.Type == corev1.SeccompProfileTypeRuntimeDefault
	}
	if caps := sc.Capabilities; caps != nil {
		for _, c := range caps.Add {
			s.AddCapabilities = append(s.AddCapabilities, capabilityName(string(c)))
		}
		for _, c := range caps.Drop {
			s.DropCapabilities = append(s.DropCapabilities, capabilityName(string(c)))
		}
	}
	return s
}

// capabilityName turns a Kubernetes capability name ("NET_ADMIN", "net_admin", "CAP_NET_ADMIN")
// into the OCI spec's ("CAP_NET_ADMIN"); "all" in any case is AllCapabilities.
func capabilityName(name string) string {
	name = strings.ToUpper(name)
	if name == AllCapabilities || strings.HasPrefix(name, "CAP_") {
		return name
	}
	return "CAP_" + name
}

// verifyRunAsNonRoot refuses, with the kubelet's messages, a container that must not run as root
// but would: runAsUser 0, or no runAsUser and an image whose user is root (or unset, which is
// root). An image user given by name cannot be verified without the image's /etc/passwd, and the
// kubelet refuses it too.
func (e effectiveSecurity) verifyRunAsNonRoot(pod *corev1.Pod, c *corev1.Container, image ImageInfo) error {
	if !e.runAsNonRoot {
		return nil
	}
	where := fmt.Sprintf("(pod: %q, container: %s)", fmt.Sprintf("%s_%s(%s)", pod.Name, pod.Namespace, pod.UID), c.Name)
	if e.uid != nil {
		if *e.uid == 0 {
			return configErrorf("container's runAsUser breaks non-root policy %s", where)
		}
		return nil
	}
	uid, name := imageUser(image.User)
	switch {
	case name != "":
		return configErrorf("container has runAsNonRoot and image has non-numeric user (%s), cannot verify user is non-root %s", name, where)
	case uid == 0:
		return configErrorf("container has runAsNonRoot and image will run as root %s", where)
	}
	return nil
}

// imageUser reads an image config's User ("1000", "1000:100", "app", "app:staff", "") as the CRI
// reports it to the kubelet: the user part only, a uid when numeric, else a name; unset is root.
func imageUser(user string) (uid int64, name string) {
	user, _, _ = strings.Cut(user, ":")
	if user == "" {
		return 0, ""
	}
	uid, err := strconv.ParseInt(user, 10, 64)
	if err != nil {
		return -1, user
	}
	return uid, ""
}
