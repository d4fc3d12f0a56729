// Package version reports the build's version, set at link time by the Makefile.
package version

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"runtime"
	"sync"
)

// Version is the release or `git describe` output, set with
// -ldflags "-X github.com/bosun-gitops/bosun/internal/version.Version=...".
var Version = "dev"

// String is the version with the platform, as `bosun version` prints it.
func String() string {
	return Version + " " + runtime.GOOS + "/" + runtime.GOARCH + " " + runtime.Version()
}

var binaryDigest = sync.OnceValues(func() (string, error) {
	exe, err := os.Executable()
	if err != nil {
		return "", err
	}
	f, err := os.Open(exe)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
})

// BinaryDigest is the SHA-256 of the running executable. Operator and agent compare it to tell
// whether an agent runs the operator's exact build.
func BinaryDigest() (string, error) { return binaryDigest() }
