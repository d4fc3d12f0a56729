//go:build e2e

package forge

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// giteaServer is a real Gitea on 127.0.0.1 with sqlite, started from the binary `make gitea`
// caches.
type giteaServer struct {
	t     *testing.T
	bin   string
	dir   string
	ini   string
	URL   string
	User  string
	Pass  string
	Token string
	log   *bytes.Buffer
}

func giteaBinary(t *testing.T) (bin, src string) {
	bin = os.Getenv("GITEA_BIN")
	if bin == "" {
		home, _ := os.UserHomeDir()
		bin = filepath.Join(home, ".cache/bosun/gitea-1.26.0/gitea")
	}
	if _, err := os.Stat(bin); err != nil {
		t.Skipf("Gitea binary %s not found: run `make gitea` (or `make e2e-forge`)", bin)
	}
	src = os.Getenv("GITEA_SRC")
	if src == "" {
		src = filepath.Join(filepath.Dir(bin), "src")
	}
	return bin, src
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

func startGitea(t *testing.T) *giteaServer {
	t.Helper()
	bin, src := giteaBinary(t)
	dir := t.TempDir()
	port := freePort(t)
	g := &giteaServer{t: t, bin: bin, dir: dir, ini: filepath.Join(dir, "app.ini"),
		URL: fmt.Sprintf("http://127.0.0.1:%d", port), User: "bosun", Pass: "bosun-e2e-Passw0rd", log: &bytes.Buffer{}}
	ini := fmt.Sprintf(`APP_NAME = bosun-e2e
RUN_MODE = prod
RUN_USER = root
WORK_PATH = %[1]s
I_AM_BEING_UNSAFE_RUNNING_AS_ROOT = true

[server]
PROTOCOL = http
HTTP_ADDR = 127.0.0.1
HTTP_PORT = %[2]d
ROOT_URL = %[3]s/
OFFLINE_MODE = true
DISABLE_SSH = true
START_SSH_SERVER = false
LFS_START_SERVER = false
STATIC_ROOT_PATH = %[4]s
APP_DATA_PATH = %[1]s/data

[database]
DB_TYPE = sqlite3
PATH = %[1]s/gitea.db

[security]
INSTALL_LOCK = true
SECRET_KEY = bosun-e2e-secret-key
INTERNAL_TOKEN = eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJuYmYiOjE3MDAwMDAwMDB9.bosun-e2e-internal

[service]
DISABLE_REGISTRATION = true
REQUIRE_SIGNIN_VIEW = false

[repository]
ROOT = %[1]s/repos
DEFAULT_BRANCH = main

[webhook]
ALLOWED_HOST_LIST = loopback
SKIP_TLS_VERIFY = true
DELIVER_TIMEOUT = 10

[log]
MODE = console
LEVEL = Info

[mailer]
ENABLED = false

[cron]
ENABLED = false

[queue]
; in-memory queues: a push reaches the webhook without the level queue's polling delay
TYPE = channel

[indexer]
ISSUE_INDEXER_TYPE = db
REPO_INDEXER_ENABLED = false
`, dir, port, g.URL, src)
	if err := os.WriteFile(g.ini, []byte(ini), 0o600); err != nil {
		t.Fatal(err)
	}
	g.run("migrate")
	g.run("admin", "user", "create", "--username", g.User, "--password", g.Pass, "--email", "bosun@localhost",
		"--admin", "--must-change-password=false")

	cmd := exec.Command(bin, "web", "--config", g.ini, "--work-path", dir)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GITEA_WORK_DIR="+dir, "HOME="+dir)
	cmd.Stdout, cmd.Stderr = g.log, g.log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		cmd.Wait()
		if t.Failed() {
			p := filepath.Join(os.TempDir(), "bosun-e2e-forge-gitea.log")
			os.WriteFile(p, g.log.Bytes(), 0o644)
			t.Logf("gitea log (full log in %s):\n%s", p, tail(g.log.String(), 40))
		}
	})
	eventually(t, 60*time.Second, "gitea serving", func() error {
		resp, err := http.Get(g.URL + "/api/v1/version")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		return nil
	})
	var tok struct {
		SHA1 string `json:"sha1"`
	}
	g.apiBasic(http.MethodPost, "/api/v1/users/"+g.User+"/tokens", map[string]any{"name": "bosun-e2e", "scopes": []string{"all"}}, &tok)
	if tok.SHA1 == "" {
		t.Fatal("gitea returned no token")
	}
	g.Token = tok.SHA1
	return g
}

func (g *giteaServer) run(args ...string) {
	g.t.Helper()
	cmd := exec.Command(g.bin, append(args, "--config", g.ini, "--work-path", g.dir)...)
	cmd.Dir = g.dir
	cmd.Env = append(os.Environ(), "GITEA_WORK_DIR="+g.dir, "HOME="+g.dir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		g.t.Fatalf("gitea %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func (g *giteaServer) do(method, path string, in, out any, basic bool) (int, error) {
	var body io.Reader
	if in != nil {
		b, _ := json.Marshal(in)
		body = bytes.NewReader(b)
	}
	req, _ := http.NewRequestWithContext(context.Background(), method, g.URL+path, body)
	req.Header.Set("Content-Type", "application/json")
	if basic {
		req.SetBasicAuth(g.User, g.Pass)
	} else {
		req.Header.Set("Authorization", "token "+g.Token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		return resp.StatusCode, fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, data)
	}
	if out != nil && len(data) > 0 {
		if err := json.Unmarshal(data, out); err != nil {
			return resp.StatusCode, fmt.Errorf("%s %s: %w", method, path, err)
		}
	}
	return resp.StatusCode, nil
}

func (g *giteaServer) apiBasic(method, path string, in, out any) {
	g.t.Helper()
	if _, err := g.do(method, path, in, out, true); err != nil {
		g.t.Fatal(err)
	}
}

func (g *giteaServer) api(method, path string, in, out any) {
	g.t.Helper()
	if _, err := g.do(method, path, in, out, false); err != nil {
		g.t.Fatal(err)
	}
}

// cloneURL is the repository's http URL with the token as credentials (for the git CLI).
func (g *giteaServer) cloneURL(repo string) string {
	return strings.Replace(g.URL, "http://", "http://"+g.User+":"+g.Token+"@", 1) + "/" + repo + ".git"
}

type commitStatus struct {
	Context     string `json:"context"`
	State       string `json:"status"`
	Description string `json:"description"`
}

// statuses returns the latest status per context of sha (Gitea's combined status).
func (g *giteaServer) statuses(repo, sha string) (map[string]commitStatus, error) {
	var combined struct {
		Statuses []commitStatus `json:"statuses"`
	}
	if _, err := g.do(http.MethodGet, fmt.Sprintf("/api/v1/repos/%s/commits/%s/status", repo, sha), nil, &combined, false); err != nil {
		return nil, err
	}
	out := map[string]commitStatus{}
	for _, s := range combined.Statuses { // the latest status of each context
		out[s.Context] = s
	}
	return out, nil
}

type comment struct {
	ID   int64  `json:"id"`
	Body string `json:"body"`
}

func (g *giteaServer) comments(repo string, number int) ([]comment, error) {
	var list []comment
	_, err := g.do(http.MethodGet, fmt.Sprintf("/api/v1/repos/%s/issues/%d/comments", repo, number), nil, &list, false)
	return list, err
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
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s: not within %s: %v", what, timeout, err)
}

var gitEnv = []string{
	"GIT_AUTHOR_NAME=E2E", "GIT_AUTHOR_EMAIL=e2e@localhost",
	"GIT_COMMITTER_NAME=E2E", "GIT_COMMITTER_EMAIL=e2e@localhost",
	"GIT_CONFIG_NOSYSTEM=1", "GIT_TERMINAL_PROMPT=0",
}

func git(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), gitEnv...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

func writeFile(t *testing.T, dir, rel, content string) {
	t.Helper()
	p := filepath.Join(dir, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}
