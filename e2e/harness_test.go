//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// bosunBin is the binary under test.
func bosunBin(t *testing.T) string {
	t.Helper()
	bin := os.Getenv("BOSUN_BIN")
	if bin == "" {
		t.Fatal("BOSUN_BIN is not set: run the end-to-end tests with `make e2e`")
	}
	return bin
}

// run runs a command and returns its stdout, stderr and exit code.
func run(t *testing.T, dir string, env []string, name string, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatalf("%s %v: %v", name, args, err)
		}
		code = ee.ExitCode()
	}
	return stdout.String(), stderr.String(), code
}

// mustRun fails the test unless the command exits 0.
func mustRun(t *testing.T, dir string, name string, args ...string) string {
	t.Helper()
	out, errOut, code := run(t, dir, gitIdentity, name, args...)
	if code != 0 {
		t.Fatalf("%s %s: exit %d\nstdout:\n%s\nstderr:\n%s", name, strings.Join(args, " "), code, out, errOut)
	}
	return out
}

var gitIdentity = []string{
	"GIT_AUTHOR_NAME=E2E", "GIT_AUTHOR_EMAIL=e2e@localhost",
	"GIT_COMMITTER_NAME=E2E", "GIT_COMMITTER_EMAIL=e2e@localhost",
}

// gitRepo is a bare repository the operator syncs from and a work tree that pushes to it.
type gitRepo struct {
	bare, work string
}

func newGitRepo(t *testing.T, bin string) *gitRepo {
	t.Helper()
	dir := t.TempDir()
	r := &gitRepo{bare: filepath.Join(dir, "fleet.git"), work: filepath.Join(dir, "fleet")}
	mustRun(t, dir, "git", "init", "--quiet", "--bare", "--initial-branch=main", r.bare)
	mustRun(t, dir, bin, "init", r.work)
	mustRun(t, r.work, "git", "init", "--quiet", "--initial-branch=main")
	mustRun(t, r.work, "git", "remote", "add", "origin", r.bare)
	r.commitAndPush(t, "starter repository")
	return r
}

func (r *gitRepo) commitAndPush(t *testing.T, msg string) string {
	t.Helper()
	mustRun(t, r.work, "git", "add", "-A")
	mustRun(t, r.work, "git", "commit", "--quiet", "--allow-empty", "-m", msg)
	mustRun(t, r.work, "git", "push", "--quiet", "origin", "main")
	return strings.TrimSpace(mustRun(t, r.work, "git", "rev-parse", "HEAD"))
}

func (r *gitRepo) write(t *testing.T, rel, content string) {
	t.Helper()
	p := filepath.Join(r.work, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// operatorProc is a `bosun operator` process in its own process group.
type operatorProc struct {
	cmd     *exec.Cmd
	dataDir string
	log     *bytes.Buffer
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func startOperator(t *testing.T, bin, dataDir string, args ...string) *operatorProc {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"operator", "--data-dir", dataDir, "--log-level", "debug"}, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	log := &bytes.Buffer{}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &operatorProc{cmd: cmd, dataDir: dataDir, log: log}
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			t.Logf("operator log:\n%s", tail(log.String(), 200))
		}
	})
	return p
}

func (p *operatorProc) kill() {
	if p.cmd.Process != nil && p.cmd.ProcessState == nil {
		syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		p.cmd.Wait()
	}
}

func tail(s string, lines int) string {
	parts := strings.Split(s, "\n")
	if len(parts) > lines {
		parts = parts[len(parts)-lines:]
	}
	return strings.Join(parts, "\n")
}

// eventually retries f until it returns nil or the timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for time.Now().Before(deadline) {
		if err = f(); err == nil {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("%s: not within %s: %v", what, timeout, err)
}

// cli runs the bosun CLI against an operator's admin kubeconfig.
func cli(t *testing.T, bin, dataDir string, args ...string) (string, string, int) {
	t.Helper()
	return run(t, "", nil, bin, append([]string{"--kubeconfig", filepath.Join(dataDir, "admin.kubeconfig")}, args...)...)
}

func errorf(format string, args ...any) error { return fmt.Errorf(format, args...) }
