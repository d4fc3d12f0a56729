package operator

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bosun-gitops/bosun/internal/testutil"
)

func TestValidateDebugListen(t *testing.T) {
	for _, tc := range []struct {
		addr string
		ok   bool
	}{
		{"", true},
		{"127.0.0.1:6060", true},
		{"127.0.0.1:0", true},
		{"[::1]:6060", true},
		{"localhost:6060", true},
		{"0.0.0.0:6060", false},
		{":6060", false},
		{"192.0.2.1:6060", false},
		{"example.com:6060", false},
		{"127.0.0.1", false},
	} {
		err := validateDebugListen(tc.addr)
		if (err == nil) != tc.ok {
			t.Errorf("validateDebugListen(%q) = %v, want ok=%v", tc.addr, err, tc.ok)
		}
	}
}

// TestDebugEndpointAndRuntimeMetrics: with --debug-listen the operator serves Go profiles on
// loopback; /metrics on the API server carries the Go runtime's and the process's metrics next to
// the API server's and Git sync's.
func TestDebugEndpointAndRuntimeMetrics(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a whole operator")
	}
	repo := testutil.NewGitRepo(t)
	repo.Write(map[string]string{"README.md": "test repository\n"})
	repo.CommitAndPush("empty")
	c := startCluster(t, repo, filepath.Join(t.TempDir(), "data"), func(cfg *Config) { cfg.DebugListen = "127.0.0.1:0" })

	addr := c.op.DebugAddr()
	if addr == nil {
		t.Fatal("DebugAddr() = nil with DebugListen set")
	}
	for _, path := range []string{"/debug/pprof/", "/debug/pprof/heap", "/debug/pprof/goroutine?debug=1"} {
		resp, err := http.Get("http://" + addr.String() + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || len(body) == 0 {
			t.Errorf("GET %s: %d, %d bytes; want 200 with a body", path, resp.StatusCode, len(body))
		}
	}

	c.eventually(60*time.Second, "runtime, process, API server and Git sync metrics", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		body, err := c.client.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
		if err != nil {
			return err
		}
		for _, name := range []string{"go_goroutines", "go_memstats_heap_inuse_bytes", "process_resident_memory_bytes",
			"bosun_apiserver_requests_total", "bosun_gitsync_syncs_total"} {
			if !strings.Contains(string(body), "\n"+name) {
				return fmt.Errorf("/metrics has no %s", name)
			}
		}
		return nil
	})
}

// TestDebugEndpointOffByDefault: without DebugListen no profiling endpoint listens.
func TestDebugEndpointOffByDefault(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a whole operator")
	}
	c := newTestCluster(t)
	if addr := c.op.DebugAddr(); addr != nil {
		t.Errorf("DebugAddr() = %v without DebugListen, want nil", addr)
	}
}
