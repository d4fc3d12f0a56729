//go:build e2evm

package vm_test

import (
	"crypto/sha256"
	"encoding/hex"
	"github.com/bosun-gitops/bosun/e2e/e2eutil"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// vmImage is a built VM image: a raw ext4 disk, the kernel and initrd to boot it with, and its
// pinned SSH host key.
type vmImage struct {
	dir     string
	hostKey string
}

func (i vmImage) disk() string   { return filepath.Join(i.dir, "disk.raw") }
func (i vmImage) kernel() string { return filepath.Join(i.dir, "vmlinuz") }
func (i vmImage) initrd() string { return filepath.Join(i.dir, "initrd.img") }

// imageDir is ~/.cache/bosun/vm-<version> (BOSUN_VM_CACHE replaces ~/.cache/bosun); the version
// is a digest of build-image.sh, so a changed recipe builds a new image.
func imageDir(t *testing.T, script []byte) string {
	t.Helper()
	cache := os.Getenv("BOSUN_VM_CACHE")
	if cache == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			t.Fatalf("locating the image cache: %v (set BOSUN_VM_CACHE)", err)
		}
		cache = filepath.Join(home, ".cache", "bosun")
	}
	sum := sha256.Sum256(script)
	return filepath.Join(cache, "vm-bookworm-"+hex.EncodeToString(sum[:])[:12])
}

// buildImage returns the cached image, building it with build-image.sh first when it is missing.
func buildImage(t *testing.T) vmImage {
	t.Helper()
	script, err := os.ReadFile("build-image.sh")
	if err != nil {
		t.Fatal(err)
	}
	dir := imageDir(t, script)
	if _, err := os.Stat(filepath.Join(dir, "host_key.pub")); err != nil {
		t.Logf("building the VM image into %s (debootstrap from the apt mirror; a few minutes, once)", dir)
		start := time.Now()
		cmd := exec.Command("bash", "build-image.sh", dir)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("build-image.sh %s: %v\n%s", dir, err, e2eutil.Tail(string(out), 60))
		}
		t.Logf("bench: vm-image-build %.1f s", time.Since(start).Seconds())
		// Images of earlier recipes are never used again.
		old, _ := filepath.Glob(filepath.Join(filepath.Dir(dir), "vm-bookworm-*"))
		for _, o := range old {
			if o != dir && !strings.HasSuffix(o, ".tmp") {
				t.Logf("removing the outdated VM image %s", o)
				_ = os.RemoveAll(o)
			}
		}
	}
	key, err := os.ReadFile(filepath.Join(dir, "host_key.pub"))
	if err != nil {
		t.Fatal(err)
	}
	// "ssh-ed25519 AAAA... comment" → the pinned form without the comment.
	f := strings.Fields(string(key))
	if len(f) < 2 {
		t.Fatalf("%s/host_key.pub: %q is not a public key line; remove %s to rebuild the image", dir, key, dir)
	}
	return vmImage{dir: dir, hostKey: f[0] + " " + f[1]}
}
