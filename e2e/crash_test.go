//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bosun-gitops/bosun/e2e/e2eutil"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
)

// TestOperatorKilledMidApply kills the whole operator — its embedded etcd with it — with SIGKILL
// while it applies a commit of 20 000 objects, restarts it on the same data dir, and checks
// that it converges: every object of the commit once, with its value and applied-hash, and the
// restart's sync having had objects left to create (the kill did interrupt the apply).
func TestOperatorKilledMidApply(t *testing.T) {
	bin := bosunBin(t)
	repo := newGitRepo(t, bin)
	repo.write(t, "crash/namespace.yaml", "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: crash\n")
	repo.commitAndPush(t, "the crash namespace")
	dataDir := filepath.Join(t.TempDir(), "data")
	listen := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	op := startOperator(t, bin, dataDir, "--repo", repo.bare, "--listen", listen, "--interval", "1h")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	clients := e2eutil.NewClients(t, ctx, dataDir)
	gvr := schema.GroupVersionResource{Group: "bosun.dev", Version: "v1alpha1", Resource: "gitsyncs"}
	applied := func(sha string) func() (bool, string) {
		return func() (bool, string) {
			u, err := clients.Dyn.Resource(gvr).Get(ctx, "default", metav1.GetOptions{})
			if err != nil {
				return false, err.Error()
			}
			got, _, _ := unstructured.NestedString(u.Object, "status", "applied", "sha")
			state, _, _ := unstructured.NestedString(u.Object, "status", "state")
			return got == sha && state == "Synced", "applied " + got + ", " + state
		}
	}
	e2eutil.WaitFor(t, ctx, "the first sync", 100*time.Millisecond, func() (bool, string) {
		_, err := clients.Kube.CoreV1().Namespaces().Get(ctx, "crash", metav1.GetOptions{})
		return err == nil, fmt.Sprint(err)
	})

	const files, perFile = 40, 500
	for f := range files {
		var b strings.Builder
		for i := range perFile {
			fmt.Fprintf(&b, "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-%d-%d\n  namespace: crash\ndata:\n  value: v-%d-%d\n", f, i, f, i)
		}
		repo.write(t, fmt.Sprintf("crash/cm-%02d.yaml", f), b.String())
	}
	big := repo.commitAndPush(t, "20 000 config maps")

	// Watch them appear and kill the operator once some, not all, are visible.
	w, err := clients.Kube.CoreV1().ConfigMaps("crash").Watch(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if out, errOut, code := cli(t, bin, dataDir, "sync", "--wait=false"); code != 0 {
		t.Fatalf("bosun sync: exit %d\n%s%s", code, out, errOut)
	}
	seen := 0
	for seen < 2000 {
		ev, ok := <-w.ResultChan()
		if !ok || ev.Type == watch.Error {
			t.Fatalf("watch ended after %d objects: %+v", seen, ev)
		}
		if ev.Type == watch.Added {
			seen++
		}
	}
	op.kill()
	w.Stop()
	t.Logf("killed the operator after the watch saw %d of %d objects", seen, files*perFile)

	startOperator(t, bin, dataDir, "--repo", repo.bare, "--listen", listen, "--interval", "1h")
	e2eutil.WaitFor(t, ctx, "the restarted operator to apply the commit", 200*time.Millisecond, applied(big))

	u, err := clients.Dyn.Resource(gvr).Get(ctx, "default", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	created, _, _ := unstructured.NestedInt64(u.Object, "status", "counts", "created")
	if created == 0 {
		t.Fatalf("the restart's sync created nothing: the apply had finished before the kill, the test did not exercise a crash (status %v)", u.Object["status"])
	}
	t.Logf("the restarted operator's sync created %d objects", created)
	list, err := clients.Kube.CoreV1().ConfigMaps("crash").List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]corev1.ConfigMap{}
	for _, cm := range list.Items {
		if _, dup := got[cm.Name]; dup {
			t.Errorf("config map %s listed twice", cm.Name)
		}
		got[cm.Name] = cm
	}
	if len(got) != files*perFile {
		t.Errorf("%d config maps after the restart, want %d", len(got), files*perFile)
	}
	bad := 0
	for f := range files {
		for i := range perFile {
			cm, ok := got[fmt.Sprintf("cm-%d-%d", f, i)]
			if !ok || cm.Data["value"] != fmt.Sprintf("v-%d-%d", f, i) || cm.Annotations["bosun.dev/applied-hash"] == "" || cm.Annotations["bosun.dev/commit"] != big {
				bad++
			}
		}
	}
	if bad > 0 {
		t.Errorf("%d config maps missing or not as commit %s declares them", bad, big[:7])
	}
}
