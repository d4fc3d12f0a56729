package pods

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Container log rotation, as the kubelet's containerLogMaxSize and containerLogMaxFiles: every
// logRotatePeriod, the log file of each container's newest run that has grown past the size
// limit is rotated. The shim writes that file itself (opened with O_APPEND, so that the
// container's output does not depend on the agent), so it is rotated by copy and truncate: its
// content moves to <run>.log.1 (older rotations shift to .2, ... up to maxFiles-1, the oldest
// dropped) and then the file is emptied in place, the shim appending at its new end. What the
// container writes between the last copy and the truncation (the copy's close and rename) is
// lost.
// `bosun logs` serves the current file, as kubectl logs does.
const (
	DefaultContainerLogMaxSize  = 10 << 20
	DefaultContainerLogMaxFiles = 5
	logRotatePeriod             = 10 * time.Second
)

// runLogRotation runs rotateLogs every logRotatePeriod until ctx ends.
func (m *Manager) runLogRotation(ctx context.Context) {
	t := m.clock.NewTicker(logRotatePeriod)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C():
		}
		n, err := rotateLogs(m.cfg.DataDir, m.cfg.ContainerLogMaxSize, m.cfg.ContainerLogMaxFiles)
		if n > 0 {
			m.log.Info("rotated container logs", "files", n, "maxSize", m.cfg.ContainerLogMaxSize, "maxFiles", m.cfg.ContainerLogMaxFiles)
		}
		if err != nil {
			m.log.Warn("rotating container logs", "err", err)
		}
	}
}

// rotateLogs rotates the newest run's log file of every container under dataDir's pods that is
// larger than maxSize, keeping maxFiles files per run in all (maxFiles >= 2). It returns how many
// it rotated.
func rotateLogs(dataDir string, maxSize int64, maxFiles int) (int, error) {
	dirs, err := filepath.Glob(filepath.Join(dataDir, "pods", "*", logsDirName, "*"))
	if err != nil {
		return 0, err
	}
	rotated := 0
	var errs []error
	for _, dir := range dirs {
		run, ok := newestRun(dir)
		if !ok {
			continue
		}
		path := filepath.Join(dir, strconv.Itoa(int(run))+".log")
		st, err := os.Stat(path)
		if err != nil || st.Size() <= maxSize {
			continue
		}
		if err := rotateLog(path, maxFiles); err != nil {
			errs = append(errs, err)
			continue
		}
		rotated++
	}
	return rotated, errors.Join(errs...)
}

// newestRun is the highest run number with a log file in a container's log directory.
func newestRun(dir string) (int32, bool) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return 0, false
	}
	newest, found := int32(0), false
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), ".log")
		if !ok || e.IsDir() {
			continue
		}
		n, err := strconv.ParseInt(name, 10, 32)
		if err != nil || n < 0 {
			continue
		}
		if !found || int32(n) > newest {
			newest, found = int32(n), true
		}
	}
	return newest, found
}

// rotateLog shifts path.1 ... to path.2 ..., drops path.<maxFiles-1>, copies path to path.1
// and empties path in place.
func rotateLog(path string, maxFiles int) error {
	keep := max(maxFiles-1, 1) // rotated files besides the current one
	if err := os.Remove(fmt.Sprintf("%s.%d", path, keep)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	for i := keep - 1; i >= 1; i-- {
		if err := os.Rename(fmt.Sprintf("%s.%d", path, i), fmt.Sprintf("%s.%d", path, i+1)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	src, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer src.Close()
	tmp := path + ".1.tmp"
	dst, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	// Copy until the file stops growing, so that the truncation drops as little as possible.
	for range 3 {
		n, err := io.Copy(dst, src)
		if err != nil {
			dst.Close()
			return fmt.Errorf("rotating %s: %w", path, err)
		}
		if n == 0 {
			break
		}
	}
	if err := dst.Close(); err != nil {
		return fmt.Errorf("rotating %s: %w", path, err)
	}
	// The copy is in place before the truncation: a reader that finds the file truncated
	// reads what it had not read yet from path.1.
	if err := os.Rename(tmp, path+".1"); err != nil {
		return err
	}
	if err := src.Truncate(0); err != nil {
		return fmt.Errorf("rotating %s: %w", path, err)
	}
	return nil
}

// removeRunLogs removes a run's log file and its rotations.
func removeRunLogs(path string) error {
	err := os.Remove(path)
	rotations, _ := filepath.Glob(path + ".*")
	for _, r := range rotations {
		_ = os.Remove(r)
	}
	return err
}
