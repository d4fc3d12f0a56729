package machines

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/bosun-gitops/bosun/internal/testutil/images"
)

// RegistryPort is the port of the lab registry on the switch address.
const RegistryPort = 5000

// BusyboxRepo is the repository (and tag) under which the lab registry holds the busybox image
// of internal/testutil/images.
const BusyboxRepo = "bosun/busybox:latest"

// RegistryAddr is the lab registry ("192.168.77.253:5000"); it speaks plain HTTP, so pull from
// it with a plain-HTTP resolver.
func (l *Lab) RegistryAddr() string {
	return netip.AddrPortFrom(l.plan.switchAddr(), RegistryPort).String()
}

// BusyboxRef is the reference machines pull the busybox image by.
func (l *Lab) BusyboxRef() string { return l.RegistryAddr() + "/" + BusyboxRepo }

// HTTPClient returns a client whose connections start in the switch namespace; it reaches the
// registry and every machine.
func (l *Lab) HTTPClient() *http.Client {
	return &http.Client{Transport: &http.Transport{DialContext: l.DialContext}, Timeout: time.Minute}
}

// startRegistry runs Debian's docker-registry in the switch namespace and pushes busybox.
func (l *Lab) startRegistry(ctx context.Context) error {
	dir := filepath.Join(l.dir, "registry")
	for _, d := range []string{filepath.Join(dir, "storage"), filepath.Join(dir, "logs")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("registry dir: %w", err)
		}
	}
	config := fmt.Sprintf(`version: 0.1
log:
  level: info
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
http:
  addr: %s
`, filepath.Join(dir, "storage"), l.RegistryAddr())
	cfgPath := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(cfgPath, []byte(config), 0o644); err != nil {
		return fmt.Errorf("registry config: %w", err)
	}
	cmd := exec.Command("nsenter", "--net="+l.SwitchNetNS(), "--", "/usr/bin/docker-registry", "serve", cfgPath)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	p, err := startProcess(cmd, filepath.Join(dir, "logs", "registry.log"))
	if err != nil {
		return fmt.Errorf("registry: %w", err)
	}
	l.registry = p
	client := l.HTTPClient()
	base := "http://" + l.RegistryAddr()
	waitCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		req, _ := http.NewRequestWithContext(waitCtx, http.MethodGet, base+"/v2/", nil)
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		select {
		case <-p.Done():
			b, _ := os.ReadFile(p.LogPath())
			return fmt.Errorf("registry exited: %s", bytes.TrimSpace(b))
		case <-waitCtx.Done():
			return fmt.Errorf("waiting for registry: %w", waitCtx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
	img, err := images.BuildBusybox(l.BusyboxRef())
	if err != nil {
		return fmt.Errorf("building busybox image: %w", err)
	}
	repo, tag, _ := strings.Cut(BusyboxRepo, ":")
	if err := PushImage(ctx, client, base, repo, tag, img); err != nil {
		return fmt.Errorf("pushing busybox: %w", err)
	}
	return nil
}

// PushImage uploads an image's blobs and manifest to a registry with the distribution API
// (monolithic uploads).
func PushImage(ctx context.Context, client *http.Client, base, repo, tag string, img *images.Image) error {
	for _, b := range []images.Blob{img.Layer, img.Config} {
		if err := pushBlob(ctx, client, base, repo, b); err != nil {
			return err
		}
	}
	url := fmt.Sprintf("%s/v2/%s/manifests/%s", base, repo, tag)
	_, err := do(ctx, client, http.MethodPut, url, img.Manifest.MediaType, img.Manifest.Data, http.StatusCreated)
	if err != nil {
		return fmt.Errorf("manifest: %w", err)
	}
	return nil
}

func pushBlob(ctx context.Context, client *http.Client, base, repo string, b images.Blob) error {
	resp, err := do(ctx, client, http.MethodPost, fmt.Sprintf("%s/v2/%s/blobs/uploads/", base, repo), "", nil, http.StatusAccepted)
	if err != nil {
		return fmt.Errorf("starting upload of %s: %w", b.Digest, err)
	}
	loc := resp.Header.Get("Location")
	if !strings.HasPrefix(loc, "http") {
		loc = base + loc
	}
	sep := "?"
	if strings.Contains(loc, "?") {
		sep = "&"
	}
	if _, err := do(ctx, client, http.MethodPut, loc+sep+"digest="+b.Digest, "application/octet-stream", b.Data, http.StatusCreated); err != nil {
		return fmt.Errorf("uploading %s: %w", b.Digest, err)
	}
	return nil
}

func do(ctx context.Context, client *http.Client, method, url, contentType string, body []byte, want int) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	if resp.StatusCode != want {
		return nil, fmt.Errorf("%s %s: %s: %s", method, url, resp.Status, bytes.TrimSpace(msg))
	}
	return resp, nil
}
