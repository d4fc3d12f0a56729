package pods

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestRotateLogs(t *testing.T) {
	dataDir := t.TempDir()
	write := func(uid, c, name, content string) string {
		t.Helper()
		p := filepath.Join(LogDir(dataDir, uid, c), name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	read := func(p string) string {
		b, err := os.ReadFile(p)
		if err != nil {
			return "<" + err.Error() + ">"
		}
		return string(b)
	}
	big := strings.Repeat("x", 100) + "\n"
	// Pod u1: run 0 (big, finished) and run 1 (big, current) of container app; a small sidecar.
	old0 := write("u1", "app", "0.log", big)
	cur := write("u1", "app", "1.log", big)
	small := write("u1", "side", "0.log", "small\n")
	// Pod u2: a current log with four rotations already.
	full := write("u2", "app", "3.log", "newest "+big)
	for i := 1; i <= 4; i++ {
		write("u2", "app", fmt.Sprintf("3.log.%d", i), fmt.Sprintf("rotation %d\n", i))
	}
	// The shim's view of u1's current file: opened for appending before the rotation.
	shim, err := os.OpenFile(cur, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer shim.Close()

	n, err := rotateLogs(dataDir, 64, 5)
	if err != nil || n != 2 {
		t.Fatalf("rotateLogs = %d, %v; want 2 files rotated", n, err)
	}
	if _, err := shim.WriteString("after\n"); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		old0:         big, // a finished run's file is left alone
		cur:          "after\n",
		cur + ".1":   big,
		small:        "small\n",
		full:         "",
		full + ".1":  "newest " + big,
		full + ".2":  "rotation 1\n",
		full + ".3":  "rotation 2\n",
		full + ".4":  "rotation 3\n",
		full + ".5":  "<open " + full + ".5: no such file or directory>",
		cur + ".2":   "<open " + cur + ".2: no such file or directory>",
		small + ".1": "<open " + small + ".1: no such file or directory>",
	}
	got := map[string]string{}
	for p := range want {
		got[p] = read(p)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("log files after rotation (-want +got):\n%s", diff)
	}
	if leftovers, _ := filepath.Glob(filepath.Join(dataDir, "pods", "*", "logs", "*", "*.tmp")); len(leftovers) > 0 {
		t.Errorf("temporary files left: %v", leftovers)
	}

	// A run's logs removed with their rotations.
	if err := removeRunLogs(full); err != nil {
		t.Fatal(err)
	}
	if left, _ := filepath.Glob(full + "*"); len(left) != 0 {
		t.Errorf("after removeRunLogs: %v left", left)
	}
}
