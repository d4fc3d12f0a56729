package repolayout

import (
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// validatePodSecurity checks the securityContext of a pod and of its containers as the API server
// does, the capability names the runtime would refuse, and the one combination the kubelet
// refuses at every start (runAsNonRoot with runAsUser 0). The fields Bosun does not implement are
// refused by unsupported.go.
func validatePodSecurity(s *corev1.PodSpec, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	psc := s.SecurityContext
	pp := p.Child("securityContext")
	if psc != nil {
		errs = append(errs, validateIDs(psc.RunAsUser, psc.RunAsGroup, pp)...)
		for i, g := range psc.SupplementalGroups {
			for _, msg := range validation.IsValidGroupID(g) {
				errs = append(errs, field.Invalid(pp.Child("supplementalGroups").Index(i), g, msg))
			}
		}
	}
	reported := map[string]bool{} // a pod-level runAsUser 0 is reported once, not per container
	check := func(list string, containers []corev1.Container) {
		for i := range containers {
			cp := p.Child(list).Index(i).Child("securityContext")
			errs = append(errs, validateContainerSecurity(containers[i].SecurityContext, cp)...)
			if e := nonRootAsRoot(psc, containers[i].SecurityContext, pp, cp); e != nil && !reported[e.Field] {
				reported[e.Field] = true
				errs = append(errs, e)
			}
		}
	}
	check("initContainers", s.InitContainers)
	check("containers", s.Containers)
	return errs
}

func validateIDs(uid, gid *int64, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	if uid != nil {
		for _, msg := range validation.IsValidUserID(*uid) {
			errs = append(errs, field.Invalid(p.Child("runAsUser"), *uid, msg))
		}
	}
	if gid != nil {
		for _, msg := range validation.IsValidGroupID(*gid) {
			errs = append(errs, field.Invalid(p.Child("runAsGroup"), *gid, msg))
		}
	}
	return errs
}

func validateContainerSecurity(sc *corev1.SecurityContext, p *field.Path) field.ErrorList {
	if sc == nil {
		return nil
	}
	errs := validateIDs(sc.RunAsUser, sc.RunAsGroup, p)
	var added []string
	if caps := sc.Capabilities; caps != nil {
		for _, l := range []struct {
			name  string
			names []corev1.Capability
		}{{"add", caps.Add}, {"drop", caps.Drop}} {
			for i, c := range l.names {
				name, ok := capabilityName(string(c))
				if !ok {
					errs = append(errs, field.Invalid(p.Child("capabilities", l.name).Index(i), string(c),
						"not a Linux capability; use a name from capabilities(7) with or without CAP_ (NET_ADMIN, CAP_NET_ADMIN) or ALL"))
				}
				if l.name == "add" {
					added = append(added, name)
				}
			}
		}
	}
	if ape := sc.AllowPrivilegeEscalation; ape != nil && !*ape {
		ap := p.Child("allowPrivilegeEscalation")
		if sc.Privileged != nil && *sc.Privileged {
			errs = append(errs, field.Invalid(ap, false, "cannot set `allowPrivilegeEscalation` to false and `privileged` to true"))
		}
		for _, c := range added {
			if c == "CAP_SYS_ADMIN" {
				errs = append(errs, field.Invalid(ap, false, "cannot set `allowPrivilegeEscalation` to false and `capabilities.Add` CAP_SYS_ADMIN"))
				break
			}
		}
	}
	return errs
}

// nonRootAsRoot is the error of a container whose effective runAsNonRoot is true and runAsUser
// 0, at the runAsUser that applies (the container's, else the pod's): the kubelet never starts
// it.
func nonRootAsRoot(psc *corev1.PodSecurityContext, sc *corev1.SecurityContext, pp, cp *field.Path) *field.Error {
	var nonRoot bool
	var uid *int64
	at := pp.Child("runAsUser")
	if psc != nil {
		nonRoot = psc.RunAsNonRoot != nil && *psc.RunAsNonRoot
		uid = psc.RunAsUser
	}
	if sc != nil {
		if sc.RunAsNonRoot != nil {
			nonRoot = *sc.RunAsNonRoot
		}
		if sc.RunAsUser != nil {
			uid, at = sc.RunAsUser, cp.Child("runAsUser")
		}
	}
	if !nonRoot || uid == nil || *uid != 0 {
		return nil
	}
	return field.Invalid(at, 0, "runAsNonRoot is true, so the container would never start; set a non-zero runAsUser or remove runAsNonRoot")
}

// capabilityName is c as the OCI spec names it ("CAP_NET_ADMIN"; "ALL" for all), and whether it
// is a capability. Kubernetes writes names without CAP_; both forms, in any case, are accepted.
func capabilityName(c string) (string, bool) {
	name := strings.ToUpper(c)
	if name == "ALL" {
		return name, true
	}
	if !strings.HasPrefix(name, "CAP_") {
		name = "CAP_" + name
	}
	return name, linuxCapabilities[name]
}

// linuxCapabilities are the capabilities of Linux 5.9 and later (capabilities(7)), those
// containerd knows.
var linuxCapabilities = func() map[string]bool {
	names := []string{
		"CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID",
		"SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW",
		"IPC_LOCK", "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT",
		"SYS_ADMIN", "SYS_BOOT", "SYS_NICE", "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD",
		"LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP", "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG",
		"WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF", "CHECKPOINT_RESTORE",
	}
	out := make(map[string]bool, len(names))
	for _, n := range names {
		out["CAP_"+n] = true
	}
	return out
}()
