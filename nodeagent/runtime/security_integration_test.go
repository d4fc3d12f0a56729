package runtime_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/bosun-gitops/bosun/nodeagent/pods"
)

// TestSecurityContextOnContainerd runs busybox containers with each security setting on the real
// containerd and runc and reads what the process got from the kernel.
func TestSecurityContextOnContainerd(t *testing.T) {
	r, _, ref := withImage(t)
	hostCapEff := capEff(t, mustRead(t, "/proc/self/status"))
	const showStatus = `grep -E '^(CapEff|NoNewPrivs|Seccomp):' /proc/self/status; grep ' /sys ' /proc/mounts; id`

	// run runs script in a container of spec's settings and returns its output.
	n := 0
	run := func(t *testing.T, script string, edit func(*pods.ContainerSpec)) string {
		t.Helper()
		n++
		spec := podSpec(t.TempDir(), ref, "sec"+strconv.Itoa(n), "sh", "-c", script)
		edit(&spec)
		st := runToExit(t, r, spec)
		out := mustRead(t, spec.LogPath)
		if st.ExitCode != 0 {
			t.Fatalf("container exited %d; output:\n%s", st.ExitCode, out)
		}
		return out
	}
	const (
		capChown          = 1 << 0
		capNetBindService = 1 << 10
		capNetAdmin       = 1 << 12
	)

	defaults := run(t, showStatus, func(*pods.ContainerSpec) {})
	t.Logf("defaults:\n%s", defaults)
	defaultCaps := capEff(t, defaults)
	if defaultCaps&capChown == 0 || defaultCaps&capNetAdmin != 0 {
		t.Fatalf("default CapEff %016x: want CAP_CHOWN and not CAP_NET_ADMIN", defaultCaps)
	}
	if !strings.Contains(defaults, "NoNewPrivs:\t0") {
		t.Errorf("defaults: want NoNewPrivs 0 (Kubernetes allows privilege escalation unless told):\n%s", defaults)
	}
	if !regexp.MustCompile(` /sys sysfs ro[ ,]`).MatchString(defaults) {
		t.Errorf("defaults: want /sys read-only:\n%s", defaults)
	}

	t.Run("capabilities", func(t *testing.T) {
		tests := []struct {
			name      string
			add, drop []string
			want      uint64
		}{
			{"drop ALL", nil, []string{pods.AllCapabilities}, 0},
			{"add NET_ADMIN", []string{"CAP_NET_ADMIN"}, nil, defaultCaps | capNetAdmin},
			{"drop ALL, add NET_BIND_SERVICE", []string{"CAP_NET_BIND_SERVICE"}, []string{pods.AllCapabilities}, capNetBindService},
			{"drop CHOWN", nil, []string{"CAP_CHOWN"}, defaultCaps &^ capChown},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				out := run(t, showStatus, func(s *pods.ContainerSpec) {
					s.Security.AddCapabilities, s.Security.DropCapabilities = tt.add, tt.drop
				})
				if got := capEff(t, out); got != tt.want {
					t.Errorf("CapEff %016x, want %016x", got, tt.want)
				}
			})
		}
	})

	t.Run("privileged", func(t *testing.T) {
		out := run(t, showStatus+`; test -e /dev/loop-control && echo host-devices`, func(s *pods.ContainerSpec) {
			s.Security.Privileged = true
		})
		if got := capEff(t, out); got != hostCapEff {
			t.Errorf("CapEff %016x, want the agent's %016x", got, hostCapEff)
		}
		if !regexp.MustCompile(` /sys sysfs rw[ ,]`).MatchString(out) {
			t.Errorf("want /sys writable:\n%s", out)
		}
		if _, err := os.Stat("/dev/loop-control"); err == nil && !strings.Contains(out, "host-devices") {
			t.Errorf("the node's /dev/loop-control is not in the container:\n%s", out)
		}
	})

	t.Run("seccompProfile RuntimeDefault", func(t *testing.T) {
		if !strings.Contains(defaults, "Seccomp:\t0") {
			t.Errorf("defaults: want no seccomp filter (Seccomp 0):\n%s", defaults)
		}
		out := run(t, showStatus, func(s *pods.ContainerSpec) { s.Security.SeccompRuntimeDefault = true })
		if !strings.Contains(out, "Seccomp:\t2") {
			t.Errorf("want the default profile's filter (Seccomp 2):\n%s", out)
		}
	})

	t.Run("allowPrivilegeEscalation false", func(t *testing.T) {
		out := run(t, showStatus, func(s *pods.ContainerSpec) { s.Security.NoNewPrivileges = true })
		if !strings.Contains(out, "NoNewPrivs:\t1") {
			t.Errorf("want NoNewPrivs 1:\n%s", out)
		}
	})

	t.Run("readOnlyRootFilesystem", func(t *testing.T) {
		hostDir := t.TempDir()
		out := run(t, `touch /x 2>/dev/null && echo root-writable || echo root-read-only; touch /data/y && echo mount-writable`,
			func(s *pods.ContainerSpec) {
				s.Security.ReadOnlyRootFilesystem = true
				s.Mounts = []pods.Mount{{HostPath: hostDir, ContainerPath: "/data"}}
			})
		if out != "root-read-only\nmount-writable\n" {
			t.Errorf("output %q, want the root read-only and the volume writable", out)
		}
		if _, err := os.Stat(filepath.Join(hostDir, "y")); err != nil {
			t.Errorf("the write to the volume did not reach the host: %v", err)
		}
	})

	t.Run("users and groups", func(t *testing.T) {
		tests := []struct {
			name     string
			uid, gid *int64
			groups   []int64
			want     string
		}{
			{"image default", nil, nil, nil, "uid=0(root) gid=0(root) groups=0(root)"},
			{"runAsUser takes its group from /etc/passwd", ptr(65534), nil, nil, "uid=65534(nobody) gid=65534(nogroup) groups=65534(nogroup)"},
			{"runAsUser and runAsGroup", ptr(65534), ptr(2000), nil, "uid=65534(nobody) gid=2000 groups=2000"},
			{"runAsGroup alone keeps the image's user", nil, ptr(3000), nil, "uid=0(root) gid=3000 groups=3000"},
			{"supplementalGroups", ptr(65534), nil, []int64{1234, 5}, "uid=65534(nobody) gid=65534(nogroup) groups=5,1234,65534(nogroup)"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				out := run(t, "id", func(s *pods.ContainerSpec) {
					s.UID, s.GID, s.Security.SupplementalGroups = tt.uid, tt.gid, tt.groups
				})
				if got := strings.TrimSpace(out); got != tt.want {
					t.Errorf("id = %q, want %q", got, tt.want)
				}
			})
		}
	})
}

func ptr(v int64) *int64 { return &v }

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// capEff reads the CapEff line of a /proc/<pid>/status text.
func capEff(t *testing.T, status string) uint64 {
	t.Helper()
	m := regexp.MustCompile(`(?m)^CapEff:\s*([0-9a-f]+)$`).FindStringSubmatch(status)
	if m == nil {
		t.Fatalf("no CapEff line in %q", status)
	}
	v, err := strconv.ParseUint(m[1], 16, 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}
