package runtime

import (
	"context"
	"slices"
	"strconv"

	"github.com/containerd/containerd/containers"
	"github.com/containerd/containerd/contrib/seccomp"
	"github.com/containerd/containerd/oci"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/bosun-gitops/bosun/nodeagent/pods"
)

// securityOpts applies the container's user, groups and securityContext the way containerd's CRI
// plugin applies what the kubelet hands it. They come after oci.WithImageConfig, which has set
// the image's user.
func securityOpts(spec pods.ContainerSpec) []oci.SpecOpts {
	sec := spec.Security
	var opts []oci.SpecOpts
	if spec.UID != nil || spec.GID != nil {
		opts = append(opts, withUser(spec.UID, spec.GID))
	}
	if len(sec.SupplementalGroups) > 0 {
		opts = append(opts, withSupplementalGroups(sec.SupplementalGroups))
	}
	if len(sec.AddCapabilities)+len(sec.DropCapabilities) > 0 {
		opts = append(opts, withCapabilities(sec.AddCapabilities, sec.DropCapabilities))
	}
	if sec.Privileged {
		// Every capability of the agent, no masked or read-only /proc paths, writable /sys and
		// cgroupfs, no seccomp or AppArmor profile; the node's devices, all of them allowed.
		opts = append(opts, oci.WithPrivileged, oci.WithHostDevices, oci.WithAllDevicesAllowed)
	}
	// containerd's default spec sets no_new_privs; Kubernetes allows privilege escalation unless
	// allowPrivilegeEscalation is false, and the CRI clears it likewise.
	if sec.NoNewPrivileges {
		opts = append(opts, oci.WithNoNewPrivileges)
	} else {
		opts = append(opts, oci.WithNewPrivileges)
	}
	if sec.ReadOnlyRootFilesystem {
		opts = append(opts, oci.WithRootFSReadonly())
	}
	if sec.SeccompRuntimeDefault && !sec.Privileged {
		// containerd's default profile, the one the CRI applies for RuntimeDefault.
		opts = append(opts, seccomp.WithDefaultProfile())
	}
	return opts
}

// withUser sets the process's user for runAsUser and runAsGroup: uid, else the user the image's
// config resolved to; gid as the primary group, else the user's group in the image's /etc/passwd
// (0 when it has none); and, as the CRI does, the groups the image's /etc/group lists the user in.
func withUser(uid, gid *int64) oci.SpecOpts {
	return func(ctx context.Context, client oci.Client, c *containers.Container, s *specs.Spec) error {
		user := "0"
		if uid != nil {
			user = strconv.FormatInt(*uid, 10)
		} else if s.Process != nil {
			user = strconv.FormatUint(uint64(s.Process.User.UID), 10)
		}
		userAndGroup := user
		if gid != nil {
			userAndGroup += ":" + strconv.FormatInt(*gid, 10)
		}
		if err := oci.WithUser(userAndGroup)(ctx, client, c, s); err != nil {
			return err
		}
		own := s.Process.User.AdditionalGids
		if err := oci.WithAdditionalGIDs(user)(ctx, client, c, s); err != nil {
			return err
		}
		s.Process.User.AdditionalGids = mergeGIDs(s.Process.User.AdditionalGids, own)
		return nil
	}
}

// withSupplementalGroups adds the pod's supplementalGroups to the groups of the process.
func withSupplementalGroups(groups []int64) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *specs.Spec) error {
		if s.Process == nil {
			s.Process = &specs.Process{}
		}
		gids := make([]uint32, 0, len(groups))
		for _, g := range groups {
			gids = append(gids, uint32(g))
		}
		s.Process.User.AdditionalGids = mergeGIDs(s.Process.User.AdditionalGids, gids)
		return nil
	}
}

// mergeGIDs is the sorted union of two lists of group IDs.
func mergeGIDs(a, b []uint32) []uint32 {
	out := slices.Concat(a, b)
	slices.Sort(out)
	return slices.Compact(out)
}

// withCapabilities changes the default capability set as the CRI does: adding "ALL" first gives
// every capability the agent holds, dropping "ALL" then clears the set, and the single names are
// added and dropped last, so that drop [ALL] with add [NET_BIND_SERVICE] keeps only that one.
func withCapabilities(add, drop []string) oci.SpecOpts {
	var opts []oci.SpecOpts
	if slices.Contains(add, pods.AllCapabilities) {
		opts = append(opts, oci.WithAllCurrentCapabilities)
	}
	if slices.Contains(drop, pods.AllCapabilities) {
		opts = append(opts, oci.WithCapabilities(nil))
	}
	isAll := func(c string) bool { return c == pods.AllCapabilities }
	opts = append(opts,
		oci.WithAddedCapabilities(slices.DeleteFunc(slices.Clone(add), isAll)),
		oci.WithDroppedCapabilities(slices.DeleteFunc(slices.Clone(drop), isAll)))
	return oci.Compose(opts...)
}
