package pods

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Data volumes (configMap, secret, downwardAPI, projected) are written the way the kubelet's
// AtomicWriter writes them, so that a container never sees half of an update:
//
//	<volume>/..2026_11_27_10_00_00.123456789/   the files of one version
//	<volume>/..data -> ..2026_11_27_10_00_00.123456789
//	<volume>/<name> -> ..data/<name>            one link per top-level file or directory
//
// An update writes a new version directory, swaps ..data with one rename, fixes the top-level
// links and removes the old version. Programs that watch ..data see one event per update.
const (
	dataDirName    = "..data"
	dataDirTmpName = "..data_tmp"
)

// writeAtomic makes dir hold exactly files, switching from the previous version in one rename;
// nothing is written when the files, their contents and modes are unchanged.
func writeAtomic(dir string, files map[string]dataFile) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	oldVersion, _ := os.Readlink(filepath.Join(dir, dataDirName))
	if oldVersion != "" && sameFiles(filepath.Join(dir, oldVersion), files) {
		return linkTopLevel(dir, files)
	}
	version, err := os.MkdirTemp(dir, time.Now().UTC().Format("..2006_01_02_15_04_05."))
	if err != nil {
		return fmt.Errorf("creating a version directory: %w", err)
	}
	if err := os.Chmod(version, 0o755); err != nil {
		return err
	}
	for rel, f := range files {
		path := filepath.Join(version, rel)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(path, f.data, f.mode); err != nil {
			return err
		}
		if err := os.Chmod(path, f.mode); err != nil { // not subject to the umask
			return err
		}
	}
	tmp := filepath.Join(dir, dataDirTmpName)
	_ = os.Remove(tmp)
	if err := os.Symlink(filepath.Base(version), tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(dir, dataDirName)); err != nil {
		return fmt.Errorf("switching %s to the new version: %w", dir, err)
	}
	if err := linkTopLevel(dir, files); err != nil {
		return err
	}
	// Older versions, and stray version directories of an interrupted write.
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		n := e.Name()
		if e.IsDir() && strings.HasPrefix(n, "..") && n != filepath.Base(version) {
			if err := os.RemoveAll(filepath.Join(dir, n)); err != nil {
				return err
			}
		}
	}
	return nil
}

// sameFiles reports whether version holds exactly files with the same contents and modes.
func sameFiles(version string, files map[string]dataFile) bool {
	seen := 0
	err := filepath.WalkDir(version, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(version, path)
		f, ok := files[rel]
		if !ok {
			return fs.ErrExist
		}
		st, err := os.Stat(path)
		if err != nil || st.Mode().Perm() != f.mode.Perm() {
			return fs.ErrExist
		}
		b, err := os.ReadFile(path)
		if err != nil || !bytes.Equal(b, f.data) {
			return fs.ErrExist
		}
		seen++
		return nil
	})
	return err == nil && seen == len(files)
}

// linkTopLevel makes dir's user-visible entries exactly one ..data link per top-level name of
// files; anything else there (links of removed keys, files of the layout before versions) goes.
func linkTopLevel(dir string, files map[string]dataFile) error {
	want := map[string]bool{}
	for rel := range files {
		want[strings.SplitN(rel, "/", 2)[0]] = true
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		n := e.Name()
		if strings.HasPrefix(n, "..") {
			continue
		}
		path := filepath.Join(dir, n)
		if want[n] && e.Type()&fs.ModeSymlink != 0 {
			if target, _ := os.Readlink(path); target == filepath.Join(dataDirName, n) {
				delete(want, n)
				continue
			}
		}
		if err := os.RemoveAll(path); err != nil {
			return err
		}
	}
	for n := range want {
		if err := os.Symlink(filepath.Join(dataDirName, n), filepath.Join(dir, n)); err != nil {
			return err
		}
	}
	return nil
}
