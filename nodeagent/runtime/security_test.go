package runtime

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/containerd/containerd/containers"
	"github.com/containerd/containerd/namespaces"
	"github.com/containerd/containerd/oci"
	"github.com/containerd/containerd/pkg/cap"
	"github.com/google/go-cmp/cmp"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/bosun-gitops/bosun/nodeagent/pods"
)

// fakeRootfs is an image root filesystem with the users and groups securityOpts reads.
func fakeRootfs(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	files := map[string]string{
		"etc/passwd": "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n",
		"etc/group":  "root:x:0:\nwheel:x:10:root\nstaff:x:50:app\napp:x:1000:\n",
	}
	for name, data := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// securitySpec is the OCI spec containerd's defaults become with imageUser (the user the image's
// config would set) and securityOpts(spec) applied, on a root filesystem of fakeRootfs.
func securitySpec(t *testing.T, imageUser string, spec pods.ContainerSpec) *specs.Spec {
	t.Helper()
	ctx := namespaces.WithNamespace(context.Background(), "test")
	opts := []oci.SpecOpts{oci.WithRootFSPath(fakeRootfs(t))}
	if imageUser != "" {
		opts = append(opts, oci.WithUser(imageUser))
	}
	s, err := oci.GenerateSpec(ctx, nil, &containers.Container{ID: "c"}, append(opts, securityOpts(spec)...)...)
	if err != nil {
		t.Fatalf("generating the spec: %v", err)
	}
	return s
}

func int64p(v int64) *int64 { return &v }

// defaultCaps is containerd's default capability set, the one a container gets unless told.
func defaultCaps(t *testing.T) []string {
	return securitySpec(t, "", pods.ContainerSpec{}).Process.Capabilities.Effective
}

func TestSecurityOptsCapabilities(t *testing.T) {
	current, err := cap.Current()
	if err != nil {
		t.Fatal(err)
	}
	defaults := defaultCaps(t)
	if !slices.Contains(defaults, "CAP_CHOWN") || slices.Contains(defaults, "CAP_NET_ADMIN") {
		t.Fatalf("containerd's defaults changed: %v", defaults)
	}
	without := func(caps []string, c string) []string {
		return slices.DeleteFunc(slices.Clone(caps), func(x string) bool { return x == c })
	}
	tests := []struct {
		name      string
		add, drop []string
		want      []string
	}{
		{"defaults", nil, nil, defaults},
		{"add one", []string{"CAP_NET_ADMIN"}, nil, append(slices.Clone(defaults), "CAP_NET_ADMIN")},
		{"drop one", nil, []string{"CAP_CHOWN"}, without(defaults, "CAP_CHOWN")},
		{"drop all", nil, []string{pods.AllCapabilities}, nil},
		{"drop all, add one back", []string{"CAP_NET_BIND_SERVICE"}, []string{pods.AllCapabilities}, []string{"CAP_NET_BIND_SERVICE"}},
		{"add all", []string{pods.AllCapabilities}, nil, current},
		{"add all, drop one", []string{pods.AllCapabilities}, []string{"CAP_CHOWN"}, without(current, "CAP_CHOWN")},
		{"add all, drop all", []string{pods.AllCapabilities}, []string{pods.AllCapabilities}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := securitySpec(t, "", pods.ContainerSpec{Security: pods.Security{AddCapabilities: tt.add, DropCapabilities: tt.drop}})
			caps := s.Process.Capabilities
			for set, got := range map[string][]string{"bounding": caps.Bounding, "effective": caps.Effective, "permitted": caps.Permitted} {
				if diff := cmp.Diff(sorted(tt.want), sorted(got)); diff != "" {
					t.Errorf("%s capabilities (-want +got):\n%s", set, diff)
				}
			}
			if len(caps.Ambient) > 0 {
				t.Errorf("ambient capabilities %v, want none", caps.Ambient)
			}
		})
	}
}

func sorted(ss []string) []string {
	out := slices.Clone(ss)
	slices.Sort(out)
	if len(out) == 0 {
		return nil
	}
	return out
}

func TestSecurityOptsPrivileged(t *testing.T) {
	current, err := cap.Current()
	if err != nil {
		t.Fatal(err)
	}
	plain := securitySpec(t, "", pods.ContainerSpec{})
	if len(plain.Linux.MaskedPaths) == 0 || sysfsOptions(plain) == nil || !slices.Contains(sysfsOptions(plain), "ro") {
		t.Fatalf("containerd's defaults changed: masked paths %v, sysfs options %v", plain.Linux.MaskedPaths, sysfsOptions(plain))
	}
	// Privileged wins over capabilities, as in the CRI: the capabilities apply first.
	s := securitySpec(t, "", pods.ContainerSpec{Security: pods.Security{Privileged: true, DropCapabilities: []string{pods.AllCapabilities}}})
	if diff := cmp.Diff(sorted(current), sorted(s.Process.Capabilities.Effective)); diff != "" {
		t.Errorf("privileged capabilities, want the agent's (-want +got):\n%s", diff)
	}
	if len(s.Linux.MaskedPaths)+len(s.Linux.ReadonlyPaths) > 0 {
		t.Errorf("privileged: masked paths %v, read-only paths %v; want none", s.Linux.MaskedPaths, s.Linux.ReadonlyPaths)
	}
	if opts := sysfsOptions(s); !slices.Contains(opts, "rw") || slices.Contains(opts, "ro") {
		t.Errorf("privileged: /sys options %v, want rw", opts)
	}
	allowAll := []specs.LinuxDeviceCgroup{{Allow: true, Access: "rwm"}}
	if diff := cmp.Diff(allowAll, s.Linux.Resources.Devices); diff != "" {
		t.Errorf("privileged device cgroup (-want +got):\n%s", diff)
	}
	if !hasDevice(s, "/dev/null") {
		t.Errorf("privileged: the node's devices are not in the container: %v", s.Linux.Devices)
	}
	if s.Linux.Seccomp != nil || s.Process.ApparmorProfile != "" || s.Process.SelinuxLabel != "" {
		t.Errorf("privileged: seccomp %v, apparmor %q, selinux %q; want no confinement", s.Linux.Seccomp, s.Process.ApparmorProfile, s.Process.SelinuxLabel)
	}
	if s.Process.NoNewPrivileges || s.Root.Readonly {
		t.Errorf("privileged alone: no_new_privs %v, read-only root %v", s.Process.NoNewPrivileges, s.Root.Readonly)
	}
}

func sysfsOptions(s *specs.Spec) []string {
	for _, m := range s.Mounts {
		if m.Type == "sysfs" {
			return m.Options
		}
	}
	return nil
}

func hasDevice(s *specs.Spec, path string) bool {
	for _, d := range s.Linux.Devices {
		if d.Path == path {
			return true
		}
	}
	return false
}

func TestSecurityOptsRootAndPrivileges(t *testing.T) {
	plain := securitySpec(t, "", pods.ContainerSpec{})
	if plain.Root.Readonly || plain.Process.NoNewPrivileges {
		t.Errorf("defaults: read-only root %v, no_new_privs %v; want neither", plain.Root.Readonly, plain.Process.NoNewPrivileges)
	}
	s := securitySpec(t, "", pods.ContainerSpec{Security: pods.Security{ReadOnlyRootFilesystem: true}})
	if !s.Root.Readonly || s.Process.NoNewPrivileges {
		t.Errorf("readOnlyRootFilesystem: read-only root %v, no_new_privs %v", s.Root.Readonly, s.Process.NoNewPrivileges)
	}
	s = securitySpec(t, "", pods.ContainerSpec{Security: pods.Security{NoNewPrivileges: true}})
	if s.Root.Readonly || !s.Process.NoNewPrivileges {
		t.Errorf("allowPrivilegeEscalation false: read-only root %v, no_new_privs %v", s.Root.Readonly, s.Process.NoNewPrivileges)
	}
}

// TestSecurityOptsSeccomp checks seccompProfile: RuntimeDefault gets containerd's default
// profile (what the CRI applies), while the default and privileged containers run unconfined.
func TestSecurityOptsSeccomp(t *testing.T) {
	if s := securitySpec(t, "", pods.ContainerSpec{}); s.Linux != nil && s.Linux.Seccomp != nil {
		t.Errorf("default: seccomp %+v, want none (unconfined, as Kubernetes)", s.Linux.Seccomp.DefaultAction)
	}
	s := securitySpec(t, "", pods.ContainerSpec{Security: pods.Security{SeccompRuntimeDefault: true}})
	if s.Linux == nil || s.Linux.Seccomp == nil || s.Linux.Seccomp.DefaultAction != specs.ActErrno || len(s.Linux.Seccomp.Syscalls) == 0 {
		t.Fatalf("RuntimeDefault: seccomp %+v, want containerd's default profile", s.Linux.Seccomp)
	}
	if s := securitySpec(t, "", pods.ContainerSpec{Security: pods.Security{SeccompRuntimeDefault: true, Privileged: true}}); s.Linux != nil && s.Linux.Seccomp != nil {
		t.Error("privileged with RuntimeDefault: want unconfined, as the CRI does")
	}
}

func TestSecurityOptsUser(t *testing.T) {
	tests := []struct {
		name      string
		imageUser string
		uid, gid  *int64
		groups    []int64
		want      specs.User
	}{
		{name: "image default", want: specs.User{}},
		{name: "image user", imageUser: "app", want: specs.User{UID: 1000, GID: 1000, AdditionalGids: []uint32{1000}}},
		{name: "runAsUser takes the group and groups of /etc/passwd and /etc/group",
			uid: int64p(1000), want: specs.User{UID: 1000, GID: 1000, AdditionalGids: []uint32{50, 1000}}},
		{name: "runAsUser not in /etc/passwd has group 0",
			uid: int64p(4242), want: specs.User{UID: 4242, GID: 0, AdditionalGids: []uint32{0}}},
		{name: "runAsUser and runAsGroup",
			uid: int64p(1000), gid: int64p(2000), want: specs.User{UID: 1000, GID: 2000, AdditionalGids: []uint32{50, 2000}}},
		{name: "runAsGroup alone keeps the image's user",
			imageUser: "app", gid: int64p(3000), want: specs.User{UID: 1000, GID: 3000, AdditionalGids: []uint32{50, 3000}}},
		{name: "runAsGroup alone on an image running as root",
			gid: int64p(3000), want: specs.User{UID: 0, GID: 3000, AdditionalGids: []uint32{10, 3000}}},
		{name: "supplementalGroups",
			uid: int64p(1000), groups: []int64{7, 50, 9}, want: specs.User{UID: 1000, GID: 1000, AdditionalGids: []uint32{7, 9, 50, 1000}}},
		{name: "supplementalGroups with the image's user",
			imageUser: "app", groups: []int64{7}, want: specs.User{UID: 1000, GID: 1000, AdditionalGids: []uint32{7, 1000}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := securitySpec(t, tt.imageUser, pods.ContainerSpec{UID: tt.uid, GID: tt.gid, Security: pods.Security{SupplementalGroups: tt.groups}})
			if diff := cmp.Diff(tt.want, s.Process.User); diff != "" {
				t.Errorf("user (-want +got):\n%s", diff)
			}
		})
	}
}
