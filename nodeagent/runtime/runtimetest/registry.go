package runtimetest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/bosun-gitops/bosun/internal/childproc"
	"github.com/bosun-gitops/bosun/internal/testutil/images"
	"golang.org/x/crypto/bcrypt"
)

// RegistryOption configures StartRegistry.
type RegistryOption func(*registryOptions)

type registryOptions struct {
	user, password string
}

// WithBasicAuth makes the registry require HTTP basic auth (htpasswd) for user and password.
func WithBasicAuth(user, password string) RegistryOption {
	return func(o *registryOptions) { o.user, o.password = user, password }
}

// StartRegistry runs Debian's docker-registry (the CNCF distribution registry, which speaks the
// OCI distribution API) on 127.0.0.1 over plain HTTP with a temp storage dir and returns its
// "127.0.0.1:port". It is killed with its process group at cleanup. It skips the test when
// docker-registry is not installed.
func StartRegistry(t testing.TB, opts ...RegistryOption) (host string) {
	t.Helper()
	var o registryOptions
	for _, opt := range opts {
		opt(&o)
	}
	bin, err := exec.LookPath("docker-registry")
	if err != nil {
		t.Skip("skipping: docker-registry not installed (apt-get install docker-registry)")
	}
	dir := t.TempDir()
	host, err = freeLoopbackAddr()
	if err != nil {
		t.Fatalf("finding a free port: %v", err)
	}
	auth := ""
	if o.user != "" {
		hash, err := bcrypt.GenerateFromPassword([]byte(o.password), bcrypt.MinCost)
		if err != nil {
			t.Fatalf("hashing registry password: %v", err)
		}
		htpasswd := filepath.Join(dir, "htpasswd")
		if err := os.WriteFile(htpasswd, []byte(o.user+":"+string(hash)+"\n"), 0o600); err != nil {
			t.Fatalf("writing htpasswd: %v", err)
		}
		auth = fmt.Sprintf("auth:\n  htpasswd:\n    realm: bosun-test\n    path: %s\n", htpasswd)
	}
	config := fmt.Sprintf(`version: 0.1
log:
  level: info
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
http:
  addr: %s
%s`, filepath.Join(dir, "storage"), host, auth)
	configPath := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(configPath, []byte(config), 0o644); err != nil {
		t.Fatalf("writing registry config: %v", err)
	}
	logPath := filepath.Join(dir, "registry.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatalf("creating registry log: %v", err)
	}
	cmd := exec.Command(bin, "serve", configPath)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := childproc.Start(cmd); err != nil {
		t.Fatalf("starting docker-registry: %v", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-exited
		logFile.Close()
		if t.Failed() {
			printTail(t, "docker-registry", logPath, 40)
		}
	})

	deadline := time.Now().Add(15 * time.Second)
	for {
		select {
		case <-exited:
			printTail(t, "docker-registry", logPath, 40)
			t.Fatalf("docker-registry exited at start")
		default:
		}
		resp, err := http.Get("http://" + host + "/v2/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusUnauthorized {
				return host
			}
		}
		if time.Now().After(deadline) {
			printTail(t, "docker-registry", logPath, 40)
			t.Fatalf("docker-registry did not answer on %s within 15s: %v", host, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Credentials authenticate a push; nil means anonymous.
type Credentials struct {
	Username, Password string
}

// Push uploads img's blobs and manifest to the registry at host (plain HTTP) as name:tag using
// the OCI distribution API (monolithic blob uploads).
func Push(ctx context.Context, host, name, tag string, img *images.Image, creds *Credentials) error {
	base := "http://" + host + "/v2/" + name
	for _, b := range []images.Blob{img.Layer, img.Config} {
		if err := pushBlob(ctx, base, b, creds); err != nil {
			return fmt.Errorf("pushing %s blob %s: %w", name, b.Digest, err)
		}
	}
	_, err := do(ctx, http.MethodPut, base+"/manifests/"+tag, img.Manifest.MediaType, img.Manifest.Data, creds, http.StatusCreated)
	if err != nil {
		return fmt.Errorf("pushing %s:%s manifest: %w", name, tag, err)
	}
	return nil
}

func pushBlob(ctx context.Context, base string, b images.Blob, creds *Credentials) error {
	resp, err := do(ctx, http.MethodPost, base+"/blobs/uploads/", "", nil, creds, http.StatusAccepted)
	if err != nil {
		return err
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		return fmt.Errorf("upload location: %w", err)
	}
	loc = (&url.URL{Scheme: "http", Host: hostOf(base)}).ResolveReference(loc)
	q := loc.Query()
	q.Set("digest", b.Digest)
	loc.RawQuery = q.Encode()
	_, err = do(ctx, http.MethodPut, loc.String(), "application/octet-stream", b.Data, creds, http.StatusCreated)
	return err
}

func do(ctx context.Context, method, u, contentType string, body []byte, creds *Credentials, want int) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, u, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if creds != nil {
		req.SetBasicAuth(creds.Username, creds.Password)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != want {
		return nil, fmt.Errorf("%s %s: %s: %s", method, u, resp.Status, bytes.TrimSpace(msg))
	}
	return resp, nil
}

func hostOf(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return ""
	}
	return u.Host
}

func freeLoopbackAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}
