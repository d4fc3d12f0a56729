// Package images builds small OCI image archives offline from Debian's busybox-static, for tests
// and for the example image of `make run`. No registry and no network are involved: the archive is
// an OCI image layout (oci-layout, index.json, blobs/) in a tar stream that containerd imports.
package images

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"
)

// BusyboxPath is where Debian's busybox-static installs the static binary.
const BusyboxPath = "/bin/busybox"

// Media types and annotations used in the archive.
const (
	MediaTypeManifest = "application/vnd.oci.image.manifest.v1+json"
	MediaTypeConfig   = "application/vnd.oci.image.config.v1+json"
	MediaTypeLayer    = "application/vnd.oci.image.layer.v1.tar+gzip"
	MediaTypeIndex    = "application/vnd.oci.image.index.v1+json"
	// AnnotationImageName is the annotation containerd's importer reads the image name from.
	AnnotationImageName = "io.containerd.image.name"
	annotationRefName   = "org.opencontainers.image.ref.name"
)

// IndexHTML is the page the image serves from /www/index.html.
const IndexHTML = "<html><body><h1>Hello from Bosun</h1></body></html>\n"

// DefaultCmd is the image's default command: busybox httpd serving /www on port 80.
var defaultCmd = []string{"httpd", "-f", "-v", "-p", "80", "-h", "/www"}

// DefaultCmd returns the image's default command (busybox httpd on port 80 serving /www).
func DefaultCmd() []string { return append([]string(nil), defaultCmd...) }

// applets get a symlink to /bin/busybox in the image.
var applets = []string{
	"sh", "ash", "httpd", "nc", "sleep", "cat", "wget", "echo", "ls", "env", "id", "hostname",
	"ps", "kill", "true", "false", "mkdir", "rm", "touch", "head", "tail", "dd", "yes", "printf",
	"test", "grep", "sed", "awk", "ip", "ifconfig", "date", "tr", "wc", "mount", "cp", "mv", "ln",
	"chmod", "uname", "pwd", "whoami", "seq", "stat", "df", "free", "top", "netstat", "ping",
	"nslookup", "timeout", "readlink", "tee", "xargs", "find", "basename", "dirname", "expr",
}

// Blob is one content-addressed blob of an image.
type Blob struct {
	MediaType string
	Digest    string // "sha256:<hex>"
	Data      []byte
}

// Image is a built image: its blobs (layer, config, manifest) ready to be written as an OCI
// archive or pushed to a registry.
type Image struct {
	Ref      string
	Layer    Blob
	Config   Blob
	Manifest Blob
}

// BuildBusybox builds the busybox image named ref in memory.
func BuildBusybox(ref string) (*Image, error) {
	bin, err := os.ReadFile(BusyboxPath)
	if err != nil {
		return nil, fmt.Errorf("reading busybox (install Debian's busybox-static): %w", err)
	}
	layerTar, err := busyboxLayer(bin)
	if err != nil {
		return nil, fmt.Errorf("building busybox layer: %w", err)
	}
	var gz bytes.Buffer
	zw, err := gzip.NewWriterLevel(&gz, gzip.BestSpeed)
	if err != nil {
		return nil, err
	}
	if _, err := zw.Write(layerTar); err != nil {
		return nil, fmt.Errorf("compressing busybox layer: %w", err)
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("compressing busybox layer: %w", err)
	}
	img := &Image{Ref: ref, Layer: newBlob(MediaTypeLayer, gz.Bytes())}

	config := map[string]any{
		"created":      "2024-01-01T00:00:00Z",
		"architecture": runtime.GOARCH,
		"os":           "linux",
		"config": map[string]any{
			"Env":          []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
			"Cmd":          defaultCmd,
			"WorkingDir":   "/",
			"ExposedPorts": map[string]any{"80/tcp": map[string]any{}},
		},
		"rootfs": map[string]any{"type": "layers", "diff_ids": []string{digestOf(layerTar)}},
		"history": []map[string]any{{
			"created": "2024-01-01T00:00:00Z", "created_by": "bosun internal/testutil/images",
		}},
	}
	if err := img.setConfig(config); err != nil {
		return nil, err
	}
	return img, nil
}

// setConfig sets the image's config blob and the manifest naming it and the layer.
func (img *Image) setConfig(config map[string]any) error {
	configJSON, err := json.Marshal(config)
	if err != nil {
		return err
	}
	img.Config = newBlob(MediaTypeConfig, configJSON)
	manifestJSON, err := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     MediaTypeManifest,
		"config":        descriptor(img.Config, nil),
		"layers":        []any{descriptor(img.Layer, nil)},
	})
	if err != nil {
		return err
	}
	img.Manifest = newBlob(MediaTypeManifest, manifestJSON)
	return nil
}

// WithCmd returns a copy of the image whose config has cmd as its Cmd: the same layer under
// another config and manifest digest, as a rebuilt tag would be.
func (img *Image) WithCmd(cmd ...string) (*Image, error) {
	return img.WithConfig(map[string]any{"Cmd": cmd})
}

// WithConfig returns a copy of the image with the given fields of its config's "config" object
// ("Cmd", "StopSignal", ...) set, under new config and manifest digests.
func (img *Image) WithConfig(fields map[string]any) (*Image, error) {
	var config map[string]any
	if err := json.Unmarshal(img.Config.Data, &config); err != nil {
		return nil, err
	}
	for k, v := range fields {
		config["config"].(map[string]any)[k] = v
	}
	out := &Image{Ref: img.Ref, Layer: img.Layer}
	if err := out.setConfig(config); err != nil {
		return nil, err
	}
	return out, nil
}

// WriteBusybox writes an OCI image archive of the busybox image named ref (for example
// "bosun.local/busybox:latest") to w; `ctr import` and containerd's Go client import it.
func WriteBusybox(w io.Writer, ref string) error {
	img, err := BuildBusybox(ref)
	if err != nil {
		return err
	}
	return img.WriteOCIArchive(w)
}

// WriteOCIArchive writes the image as an OCI image layout in a tar stream; index.json names the
// manifest with the io.containerd.image.name annotation.
func (img *Image) WriteOCIArchive(w io.Writer) error {
	index := map[string]any{
		"schemaVersion": 2,
		"mediaType":     MediaTypeIndex,
		"manifests": []any{descriptor(img.Manifest, map[string]string{
			AnnotationImageName: img.Ref,
			annotationRefName:   refTag(img.Ref),
		})},
	}
	indexJSON, err := json.Marshal(index)
	if err != nil {
		return err
	}
	tw := tar.NewWriter(w)
	files := []struct {
		name string
		data []byte
	}{
		{"oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)},
		{"index.json", indexJSON},
	}
	for _, b := range []Blob{img.Layer, img.Config, img.Manifest} {
		files = append(files, struct {
			name string
			data []byte
		}{"blobs/sha256/" + b.Digest[len("sha256:"):], b.Data})
	}
	if err := tw.WriteHeader(dirHeader("blobs/", 0o755)); err != nil {
		return err
	}
	if err := tw.WriteHeader(dirHeader("blobs/sha256/", 0o755)); err != nil {
		return err
	}
	for _, f := range files {
		if err := tw.WriteHeader(fileHeader(f.name, 0o644, len(f.data))); err != nil {
			return fmt.Errorf("writing %s: %w", f.name, err)
		}
		if _, err := tw.Write(f.data); err != nil {
			return fmt.Errorf("writing %s: %w", f.name, err)
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("writing image archive: %w", err)
	}
	return nil
}

// Busybox writes the busybox image archive <dir>/<name>.tar and returns its path and image
// reference ("bosun.test/<name>:latest"). It skips the test when busybox-static is missing.
func Busybox(t testing.TB, dir, name string) (tarPath, ref string) {
	t.Helper()
	if _, err := os.Stat(BusyboxPath); err != nil {
		t.Skipf("skipping: %s missing (apt-get install busybox-static)", BusyboxPath)
	}
	ref = "bosun.test/" + name + ":latest"
	tarPath = filepath.Join(dir, name+".tar")
	f, err := os.Create(tarPath)
	if err != nil {
		t.Fatalf("creating image archive: %v", err)
	}
	defer f.Close()
	if err := WriteBusybox(f, ref); err != nil {
		t.Fatalf("writing busybox image: %v", err)
	}
	if err := f.Close(); err != nil {
		t.Fatalf("writing busybox image: %v", err)
	}
	return tarPath, ref
}

// busyboxLayer is the uncompressed layer: /bin/busybox, applet symlinks, /www/index.html, a
// minimal /etc and the directories runc mounts over.
func busyboxLayer(bin []byte) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, d := range []string{"bin/", "etc/", "www/", "tmp/", "proc/", "sys/", "dev/", "root/", "var/", "usr/", "usr/bin/"} {
		mode := int64(0o755)
		if d == "tmp/" {
			mode = 0o1777
		}
		if err := tw.WriteHeader(dirHeader(d, mode)); err != nil {
			return nil, err
		}
	}
	if err := tw.WriteHeader(fileHeader("bin/busybox", 0o755, len(bin))); err != nil {
		return nil, err
	}
	if _, err := tw.Write(bin); err != nil {
		return nil, err
	}
	for _, a := range applets {
		h := &tar.Header{Typeflag: tar.TypeSymlink, Name: "bin/" + a, Linkname: "busybox", Mode: 0o777, ModTime: epoch}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
	}
	files := []struct {
		name, data string
	}{
		{"www/index.html", IndexHTML},
		{"etc/passwd", "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n"},
		{"etc/group", "root:x:0:\nnogroup:x:65534:\n"},
	}
	for _, f := range files {
		if err := tw.WriteHeader(fileHeader(f.name, 0o644, len(f.data))); err != nil {
			return nil, err
		}
		if _, err := io.WriteString(tw, f.data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// epoch keeps the archive byte-for-byte reproducible.
var epoch = time.Unix(1704067200, 0).UTC()

func dirHeader(name string, mode int64) *tar.Header {
	return &tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: mode, ModTime: epoch}
}

func fileHeader(name string, mode int64, size int) *tar.Header {
	return &tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(size), ModTime: epoch}
}

func newBlob(mediaType string, data []byte) Blob {
	return Blob{MediaType: mediaType, Digest: digestOf(data), Data: data}
}

func digestOf(data []byte) string {
	sum := sha256.Sum256(data)
	return "sha256:" + hex.EncodeToString(sum[:])
}

func descriptor(b Blob, annotations map[string]string) map[string]any {
	d := map[string]any{"mediaType": b.MediaType, "digest": b.Digest, "size": len(b.Data)}
	if len(annotations) > 0 {
		d["annotations"] = annotations
	}
	return d
}

// refTag is the tag part of ref ("latest" when it has none).
func refTag(ref string) string {
	for i := len(ref) - 1; i >= 0; i-- {
		switch ref[i] {
		case ':':
			return ref[i+1:]
		case '/':
			return "latest"
		}
	}
	return "latest"
}
