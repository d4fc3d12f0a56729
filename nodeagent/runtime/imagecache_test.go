package runtime_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/containerd/errdefs"
	"github.com/google/go-cmp/cmp"

	"github.com/bosun-gitops/bosun/internal/testutil/images"
	"github.com/bosun-gitops/bosun/nodeagent/pods"
	"github.com/bosun-gitops/bosun/nodeagent/runtime"
)

// TestEnsureImageCacheFollowsContainerd checks that the defaults EnsureImage caches for present
// images never outlive what they were read from: a name re-pointed at another image reads the
// new config, and an image whose unpacked snapshot was removed behind its record is unpacked
// again after the container create that found it missing.
func TestEnsureImageCacheFollowsContainerd(t *testing.T) {
	r, _, ref := withImage(t)
	ctx := context.Background()
	first, err := r.EnsureImage(ctx, ref, pods.PullNever, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(images.DefaultCmd(), first.Cmd); diff != "" {
		t.Fatalf("first Cmd (-want +got):\n%s", diff)
	}

	t.Run("re-pointed name", func(t *testing.T) {
		rebuilt := importRebuilt(t, r, ref)
		got, err := r.EnsureImage(ctx, ref, pods.PullNever, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got.Digest != rebuilt.Manifest.Digest || !cmp.Equal(got.Cmd, []string{"echo", "rebuilt"}) {
			t.Errorf("after re-pointing %s: digest %s Cmd %q; want %s [echo rebuilt]", ref, got.Digest, got.Cmd, rebuilt.Manifest.Digest)
		}
	})

	t.Run("snapshot removed", func(t *testing.T) {
		img, err := r.Client().GetImage(ctx, ref)
		if err != nil {
			t.Fatal(err)
		}
		diffIDs, err := img.RootFS(ctx)
		if err != nil || len(diffIDs) != 1 {
			t.Fatalf("rootfs = %v, %v; want the one busybox layer", diffIDs, err)
		}
		// A one-layer image's chain ID is its layer's diff ID. Already gone would do as well: a
		// missing snapshot behind the image's record is the state this subtest needs.
		if err := r.Client().SnapshotService("overlayfs").Remove(ctx, diffIDs[0].String()); err != nil && !errdefs.IsNotFound(err) {
			t.Fatalf("removing the image's snapshot: %v", err)
		}
		spec := podSpec(t.TempDir(), ref, "app", "true")
		if _, err := r.EnsureImage(ctx, ref, pods.PullNever, nil, nil); err != nil {
			t.Fatal(err)
		}
		if err := r.CreateContainer(ctx, spec); err == nil {
			t.Fatal("CreateContainer succeeded without the image's snapshot")
		}
		if _, err := r.EnsureImage(ctx, ref, pods.PullNever, nil, nil); err != nil {
			t.Fatalf("EnsureImage after a failed create: %v", err)
		}
		if err := r.CreateContainer(ctx, spec); err != nil {
			t.Fatalf("CreateContainer after EnsureImage unpacked again: %v", err)
		}
		t.Cleanup(func() { _ = r.RemoveContainer(context.Background(), spec.ID) })
	})
}

// TestImageStopSignal checks that a container records its image's STOPSIGNAL (which
// StopContainer sends) whether the image's defaults come from EnsureImage's cache or not.
func TestImageStopSignal(t *testing.T) {
	r, _, ref := withImage(t)
	ctx := context.Background()
	base, err := images.BuildBusybox(ref)
	if err != nil {
		t.Fatal(err)
	}
	usr1, err := base.WithConfig(map[string]any{"StopSignal": "SIGUSR1"})
	if err != nil {
		t.Fatal(err)
	}
	importImage(t, r, usr1)
	for _, ensured := range []bool{false, true} {
		if ensured {
			if _, err := r.EnsureImage(ctx, ref, pods.PullNever, nil, nil); err != nil {
				t.Fatal(err)
			}
		}
		spec := podSpec(t.TempDir(), ref, fmt.Sprintf("app%v", ensured), "sleep", "60")
		if err := r.CreateContainer(ctx, spec); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = r.RemoveContainer(context.Background(), spec.ID) })
		ctr, err := r.Client().LoadContainer(ctx, spec.ID)
		if err != nil {
			t.Fatal(err)
		}
		labels, err := ctr.Labels(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if got := labels["io.containerd.image.config.stop-signal"]; got != "SIGUSR1" {
			t.Errorf("EnsureImage first %v: stop-signal label %q, want SIGUSR1 (labels %v)", ensured, got, labels)
		}
	}
}

// importImage imports img into r's containerd through an OCI archive, as ImportDir would.
func importImage(t *testing.T, r *runtime.Runtime, img *images.Image) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "image.tar")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := img.WriteOCIArchive(f); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := r.ImportArchive(context.Background(), path); err != nil {
		t.Fatal(err)
	}
}

// importRebuilt re-points ref at a rebuilt busybox (the same layer, Cmd [echo rebuilt]) and
// returns that image.
func importRebuilt(t *testing.T, r *runtime.Runtime, ref string) *images.Image {
	t.Helper()
	base, err := images.BuildBusybox(ref)
	if err != nil {
		t.Fatal(err)
	}
	rebuilt, err := base.WithCmd("echo", "rebuilt")
	if err != nil {
		t.Fatal(err)
	}
	importImage(t, r, rebuilt)
	return rebuilt
}

// TestContainerImageIDIsItsOwn checks that a container's status names the image it was created
// from, not what its image's name points at after a re-tag.
func TestContainerImageIDIsItsOwn(t *testing.T) {
	r, _, ref := withImage(t)
	ctx := context.Background()
	first, err := r.EnsureImage(ctx, ref, pods.PullNever, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	spec := podSpec(t.TempDir(), ref, "app", "sleep", "60")
	if err := r.CreateContainer(ctx, spec); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.RemoveContainer(context.Background(), spec.ID) })
	rebuilt := importRebuilt(t, r, ref)
	st, err := r.ContainerStatus(ctx, spec.ID)
	if err != nil {
		t.Fatal(err)
	}
	if st.ImageID != first.Digest {
		t.Errorf("imageID after %s was re-pointed = %s, want the container's own %s (not %s)", ref, st.ImageID, first.Digest, rebuilt.Manifest.Digest)
	}
}

// TestStartContainerCreatedByAnotherRuntime starts a container that an earlier Runtime (an agent
// before its restart) created: the start reads the container back, its log path included.
func TestStartContainerCreatedByAnotherRuntime(t *testing.T) {
	r1, socket, ref := withImage(t)
	ctx := context.Background()
	spec := podSpec(t.TempDir(), ref, "app", "sh", "-c", "echo started by r2; exec sleep 60")
	if err := r1.CreateContainer(ctx, spec); err != nil {
		t.Fatal(err)
	}
	if err := r1.Close(); err != nil {
		t.Fatal(err)
	}
	r2 := newRuntime(t, socket, runtime.Config{})
	t.Cleanup(func() { _ = r2.RemoveContainer(context.Background(), spec.ID) })
	if _, err := r2.StartContainer(ctx, spec.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := r2.StartContainer(ctx, spec.ID); err != nil {
		t.Errorf("starting a running container: %v", err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		data, _ := os.ReadFile(spec.LogPath)
		if strings.Contains(string(data), "started by r2") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no log from the container started by the second runtime: %q", data)
		}
		time.Sleep(20 * time.Millisecond)
	}
	st, err := r2.ContainerStatus(ctx, spec.ID)
	if err != nil {
		t.Fatal(err)
	}
	if st.State != pods.StateRunning || st.StartedAt.IsZero() {
		t.Errorf("status %+v, want running with a start time", st)
	}
}
