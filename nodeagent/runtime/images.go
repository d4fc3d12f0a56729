package runtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/containerd/containerd"
	"github.com/containerd/containerd/content"
	"github.com/containerd/containerd/errdefs"
	"github.com/containerd/containerd/images"
	"github.com/containerd/containerd/reference/docker"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/bosun-gitops/bosun/nodeagent/pods"
)

// EnsureImage makes ref present and unpacked according to policy and returns its defaults.
func (r *Runtime) EnsureImage(ctx context.Context, ref string, policy pods.PullPolicy, auth []pods.RegistryAuth, progress func(string)) (pods.ImageInfo, error) {
	name, err := NormalizeRef(ref)
	if err != nil {
		return pods.ImageInfo{}, err
	}
	if progress == nil {
		progress = func(string) {}
	}
	if policy != pods.PullAlways {
		// Fast path without the pull lock: a present, unpacked image (the common case) needs
		// no serialization, which matters when many pods of one image start at once. An image
		// seen unpacked before, whose name still points at the same digest, costs one lookup.
		if img, err := r.client.GetImage(ctx, name); err == nil {
			if info, ok := r.currentKnown(img); ok {
				return info, nil
			}
			if ok, err := img.IsUnpacked(ctx, r.cfg.Snapshotter); err == nil && ok {
				return r.rememberImage(ctx, img)
			}
		}
	}
	lock := r.pullLock(name)
	lock.Lock()
	defer lock.Unlock()

	if policy != pods.PullAlways {
		img, err := r.client.GetImage(ctx, name)
		switch {
		case err == nil:
			if err := r.unpackOwned(ctx, img); err != nil {
				return pods.ImageInfo{}, err
			}
			return r.rememberImage(ctx, img)
		case !errdefs.IsNotFound(err):
			return pods.ImageInfo{}, fmt.Errorf("looking up image %s: %w", name, err)
		case policy == pods.PullNever:
			return pods.ImageInfo{}, fmt.Errorf("image %s: %w", name, ErrImageNotPresent)
		}
	}
	img, err := r.pull(ctx, name, auth, progress)
	if err != nil {
		return pods.ImageInfo{}, err
	}
	return r.rememberImage(ctx, img)
}

// knownImage is an image EnsureImage found present and unpacked: containerd's record of it then
// (the digest its name pointed at) and its defaults.
type knownImage struct {
	record images.Image
	info   pods.ImageInfo
}

// lastKnown returns the image EnsureImage last found under name, without asking containerd.
func (r *Runtime) lastKnown(name string) (knownImage, bool) {
	r.knownMu.Lock()
	defer r.knownMu.Unlock()
	k, ok := r.known[name]
	return k, ok
}

// currentKnown returns the cached defaults of img when its name still points at the digest they
// were read from: a re-tagged or re-pulled name reads its config again, a deleted image is not
// found by GetImage in the first place.
func (r *Runtime) currentKnown(img containerd.Image) (pods.ImageInfo, bool) {
	k, ok := r.lastKnown(img.Name())
	if !ok || k.record.Target.Digest != img.Target().Digest {
		return pods.ImageInfo{}, false
	}
	return k.info, true
}

// rememberImage reads the defaults of a present, unpacked image and caches them for
// currentKnown and lastKnown.
func (r *Runtime) rememberImage(ctx context.Context, img containerd.Image) (pods.ImageInfo, error) {
	info, err := imageInfo(ctx, img)
	if err != nil {
		return info, err
	}
	r.knownMu.Lock()
	r.known[img.Name()] = knownImage{record: img.Metadata(), info: info}
	r.knownMu.Unlock()
	return info, nil
}

// forgetImage drops name from the cache, after a container of it could not be created (its
// snapshots may have been removed behind containerd's image record).
func (r *Runtime) forgetImage(name string) {
	r.knownMu.Lock()
	delete(r.known, name)
	r.knownMu.Unlock()
}

// NormalizeRef turns a Kubernetes image reference ("busybox", "reg:5000/app:v1") into the fully
// qualified name containerd stores ("docker.io/library/busybox:latest").
func NormalizeRef(ref string) (string, error) {
	named, err := docker.ParseDockerRef(ref)
	if err != nil {
		return "", fmt.Errorf("%w %q: %v", pods.ErrInvalidImageName, ref, err)
	}
	return named.String(), nil
}

func (r *Runtime) pullLock(name string) *sync.Mutex {
	r.pullMu.Lock()
	defer r.pullMu.Unlock()
	l, ok := r.pullLocks[name]
	if !ok {
		l = &sync.Mutex{}
		r.pullLocks[name] = l
	}
	return l
}

// pull fetches name through the configured resolver and unpacks it, reporting byte progress per
// blob. Errors carry the registry's own message.
func (r *Runtime) pull(ctx context.Context, name string, auth []pods.RegistryAuth, progress func(string)) (containerd.Image, error) {
	start := time.Now()
	progress(fmt.Sprintf("pulling %s", name))
	tracker := newPullTracker(progress)
	pollCtx, stopPoll := context.WithCancel(ctx)
	pollDone := make(chan struct{})
	go func() {
		defer close(pollDone)
		tracker.poll(pollCtx, r.client.ContentStore())
	}()
	img, err := r.client.Pull(ctx, name,
		containerd.WithResolver(r.resolver(auth)),
		containerd.WithPullUnpack,
		containerd.WithPullSnapshotter(r.cfg.Snapshotter),
		containerd.WithImageHandler(images.HandlerFunc(tracker.handle)))
	stopPoll()
	<-pollDone
	if err != nil {
		msg := r.registryMessage(ctx, name, auth)
		if msg != "" {
			return nil, fmt.Errorf("pulling %s: %w: registry says: %s", name, err, msg)
		}
		return nil, fmt.Errorf("pulling %s: %w", name, err)
	}
	tracker.finish(ctx, r.client.ContentStore())
	progress(fmt.Sprintf("pulled %s (%s) in %s", name, img.Target().Digest, time.Since(start).Round(time.Millisecond)))
	r.log.Info("pulled image", "image", name, "digest", img.Target().Digest, "duration", time.Since(start))
	return img, nil
}

// pullTracker turns content store statuses into progress lines like `ctr pull` shows:
// "layer sha256:0123456789ab: 1.2 MiB / 2.0 MiB" while downloading and "... done" at the end.
type pullTracker struct {
	progress func(string)
	mu       sync.Mutex
	blobs    []ocispec.Descriptor // in the order the handler saw them
	seen     map[string]bool
	reported map[string]int64 // ref -> last offset reported
}

func newPullTracker(progress func(string)) *pullTracker {
	return &pullTracker{progress: progress, seen: map[string]bool{}, reported: map[string]int64{}}
}

func (p *pullTracker) handle(_ context.Context, desc ocispec.Descriptor) ([]ocispec.Descriptor, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.seen[desc.Digest.String()] {
		p.seen[desc.Digest.String()] = true
		p.blobs = append(p.blobs, desc)
	}
	return nil, nil
}

func (p *pullTracker) poll(ctx context.Context, cs content.Store) {
	ticker := time.NewTicker(250 * time.Millisecond)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
		statuses, err := cs.ListStatuses(ctx)
		if err != nil {
			continue
		}
		sort.Slice(statuses, func(i, j int) bool { return statuses[i].Ref < statuses[j].Ref })
		for _, s := range statuses {
			p.mu.Lock()
			last, ok := p.reported[s.Ref]
			if !ok || s.Offset != last {
				p.reported[s.Ref] = s.Offset
				p.mu.Unlock()
				p.progress(fmt.Sprintf("%s: %s / %s", shortRef(s.Ref), humanBytes(s.Offset), humanBytes(s.Total)))
				continue
			}
			p.mu.Unlock()
		}
	}
}

// finish reports every blob of the image with its size once the pull is complete.
func (p *pullTracker) finish(ctx context.Context, cs content.Store) {
	p.mu.Lock()
	blobs := append([]ocispec.Descriptor(nil), p.blobs...)
	p.mu.Unlock()
	for _, d := range blobs {
		if _, err := cs.Info(ctx, d.Digest); err != nil {
			continue // another platform's manifest, not fetched
		}
		p.progress(fmt.Sprintf("%s %s: %s / %s done", blobKind(d.MediaType), shortDigest(d.Digest.String()), humanBytes(d.Size), humanBytes(d.Size)))
	}
}

func blobKind(mediaType string) string {
	switch {
	case strings.Contains(mediaType, "layer") || strings.Contains(mediaType, "rootfs"):
		return "layer"
	case strings.Contains(mediaType, "config"):
		return "config"
	case strings.Contains(mediaType, "index") || strings.Contains(mediaType, "list"):
		return "index"
	default:
		return "manifest"
	}
}

// shortRef shortens a content ingest ref ("layer-sha256:abc...") for display.
func shortRef(ref string) string {
	kind, dgst, ok := strings.Cut(ref, "-")
	if !ok {
		return ref
	}
	return kind + " " + shortDigest(dgst)
}

func shortDigest(d string) string {
	if len(d) > len("sha256:")+12 {
		return d[:len("sha256:")+12]
	}
	return d
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	default:
		return fmt.Sprintf("%d B", n)
	}
}

// unpackOwned unpacks img even when its layers are unpacked already (an earlier image under the
// same name shares them): Unpack is what labels this image's config as the snapshot's owner.
// Until then only the name's previous config held the snapshot, and containerd's garbage
// collector, woken by the import re-pointing the name, may remove it between Unpack's check and
// its label; the second Unpack then makes it again, now owned.
func (r *Runtime) unpackOwned(ctx context.Context, img containerd.Image) error {
	for range 3 {
		if err := img.Unpack(ctx, r.cfg.Snapshotter); err != nil {
			return fmt.Errorf("unpacking %s: %w", img.Name(), err)
		}
		ok, err := img.IsUnpacked(ctx, r.cfg.Snapshotter)
		if err != nil {
			return fmt.Errorf("checking image %s: %w", img.Name(), err)
		}
		if ok {
			return nil
		}
	}
	return fmt.Errorf("unpacking %s: its snapshot was removed three times while unpacking", img.Name())
}

// imageInfo reads the image's config for its process defaults.
func imageInfo(ctx context.Context, img containerd.Image) (pods.ImageInfo, error) {
	desc, err := img.Config(ctx)
	if err != nil {
		return pods.ImageInfo{}, fmt.Errorf("reading config of image %s: %w", img.Name(), err)
	}
	blob, err := content.ReadBlob(ctx, img.ContentStore(), desc)
	if err != nil {
		return pods.ImageInfo{}, fmt.Errorf("reading config of image %s: %w", img.Name(), err)
	}
	var cfg ocispec.Image
	if err := json.Unmarshal(blob, &cfg); err != nil {
		return pods.ImageInfo{}, fmt.Errorf("decoding config of image %s: %w", img.Name(), err)
	}
	return pods.ImageInfo{
		Ref:        img.Name(),
		Digest:     img.Target().Digest.String(),
		Entrypoint: cfg.Config.Entrypoint,
		Cmd:        cfg.Config.Cmd,
		Env:        cfg.Config.Env,
		WorkingDir: cfg.Config.WorkingDir,
		User:       cfg.Config.User,
		StopSignal: cfg.Config.StopSignal,
	}, nil
}

// ImportDir imports every <ImportDir>/*.tar (OCI image layouts or `docker save` archives) and
// unpacks the images. Importing the same archive again changes nothing.
func (r *Runtime) ImportDir(ctx context.Context) error {
	paths, err := filepath.Glob(filepath.Join(r.cfg.ImportDir, "*.tar"))
	if err != nil {
		return fmt.Errorf("listing %s: %w", r.cfg.ImportDir, err)
	}
	var errs []error
	for _, p := range paths {
		names, err := r.ImportArchive(ctx, p)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		r.log.Info("imported offline images", "archive", p, "images", names)
	}
	return errors.Join(errs...)
}

// ImportArchive imports one OCI or Docker image archive and unpacks its images; it returns the
// image names.
func (r *Runtime) ImportArchive(ctx context.Context, path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("importing %s: %w", path, err)
	}
	defer f.Close()
	imgs, err := r.client.Import(ctx, f)
	if err != nil {
		return nil, fmt.Errorf("importing %s: %w", path, err)
	}
	var names []string
	for _, i := range imgs {
		if err := r.unpackOwned(ctx, containerd.NewImage(r.client, i)); err != nil {
			return nil, fmt.Errorf("importing %s: %w", path, err)
		}
		names = append(names, i.Name)
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("importing %s: the archive names no image (io.containerd.image.name annotation or RepoTags)", path)
	}
	return names, nil
}
