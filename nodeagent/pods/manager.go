package pods

import (
	"fmt"
	"path/filepath"
	"strconv"
)

// Log files live under the agent's data dir, one file per container restart, so that
// `bosun logs --previous` can read the last run:
//
//	<data-dir>/pods/<pod-uid>/logs/<container>/<restart-count>.log
const logsDirName = "logs"

// PodDir is the directory holding everything of one pod on this node (volumes, logs, hosts files).
func PodDir(dataDir, podUID string) string {
	return filepath.Join(dataDir, "pods", podUID)
}

// LogDir is the directory holding a container's log files.
func LogDir(dataDir, podUID, container string) string {
	return filepath.Join(PodDir(dataDir, podUID), logsDirName, container)
}

// LogPath is the log file of one run of a container.
func LogPath(dataDir, podUID, container string, restartCount int32) string {
	return filepath.Join(LogDir(dataDir, podUID, container), strconv.Itoa(int(restartCount))+".log")
}

// ContainerID names a container run uniquely on this node.
func ContainerID(podUID, container string, restartCount int32) string {
	return fmt.Sprintf("%s-%s-%d", podUID, container, restartCount)
}
