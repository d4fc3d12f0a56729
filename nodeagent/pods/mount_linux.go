package pods

import (
	"errors"
	"fmt"
	"strconv"

	"golang.org/x/sys/unix"
)

// sysMounter mounts with mount(2).
type sysMounter struct{}

func (sysMounter) MountTmpfs(dir string, sizeBytes int64) error {
	if mounted, err := isMountPoint(dir); err == nil && mounted {
		return nil
	}
	opts := "mode=0777"
	if sizeBytes > 0 {
		opts += ",size=" + strconv.FormatInt(sizeBytes, 10)
	}
	if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, opts); err != nil {
		return fmt.Errorf("mounting tmpfs on %s: %w", dir, err)
	}
	return nil
}

func (sysMounter) Unmount(dir string) error {
	err := unix.Unmount(dir, unix.MNT_DETACH)
	if err == nil || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) {
		return nil
	}
	return fmt.Errorf("unmounting %s: %w", dir, err)
}

// isMountPoint reports whether dir is on another device than its parent.
func isMountPoint(dir string) (bool, error) {
	var st, parent unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		return false, err
	}
	if err := unix.Stat(dir+"/..", &parent); err != nil {
		return false, err
	}
	return st.Dev != parent.Dev, nil
}
