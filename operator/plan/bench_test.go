package plan

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bosun-gitops/bosun/internal/resource"
	"github.com/bosun-gitops/bosun/operator/gitsync"
	"github.com/bosun-gitops/bosun/operator/store"
	repolayout "github.com/bosun-gitops/bosun/repo-layout"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// memReader is an in-memory gitsync.Reader: the benchmark measures planning, not etcd.
type memReader map[*resource.Resource]map[string]resource.Object

func (m memReader) put(res *resource.Resource, obj resource.Object) {
	if m[res] == nil {
		m[res] = map[string]resource.Object{}
	}
	m[res][obj.GetNamespace()+"/"+obj.GetName()] = obj
}

func (m memReader) Get(_ context.Context, res *resource.Resource, ns, name string) (resource.Object, error) {
	if o, ok := m[res][ns+"/"+name]; ok {
		return o.DeepCopyObject().(resource.Object), nil
	}
	return nil, apierrors.NewNotFound(res.GroupResource(), name)
}

func (m memReader) List(_ context.Context, res *resource.Resource, ns string, _ store.ListOptions) (*store.ListResult, error) {
	out := &store.ListResult{}
	for _, o := range m[res] {
		out.Items = append(out.Items, o.DeepCopyObject().(resource.Object))
	}
	return out, nil
}

func (m memReader) ListMetadata(_ context.Context, res *resource.Resource, ns string) ([]*metav1.PartialObjectMetadata, int64, error) {
	var out []*metav1.PartialObjectMetadata
	for _, o := range m[res] {
		out = append(out, &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{
			Name: o.GetName(), Namespace: o.GetNamespace(), Annotations: o.GetAnnotations(), ResourceVersion: o.GetResourceVersion()}})
	}
	return out, 0, nil
}

// writeRepo writes n objects (a Deployment and 9 ConfigMaps per file) with the given replicas.
func writeRepo(tb testing.TB, dir string, n, replicas int) {
	tb.Helper()
	os.MkdirAll(filepath.Join(dir, "apps"), 0o755)
	os.WriteFile(filepath.Join(dir, "apps", "ns.yaml"), []byte("apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n"), 0o644)
	for f := 0; f < n/10; f++ {
		var b strings.Builder
		fmt.Fprintf(&b, `apiVersion: apps/v1
kind: Deployment
metadata: {name: web-%d, namespace: shop}
spec:
  replicas: %d
  selector: {matchLabels: {app: web-%d}}
  template:
    metadata: {labels: {app: web-%d}}
    spec:
      containers: [{name: web, image: "registry.local/web:1.%d"}]
`, f, replicas, f, f, replicas)
		for i := range 9 {
			fmt.Fprintf(&b, "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm-%d-%d, namespace: shop}\ndata: {key: value-%d}\n", f, i, i)
		}
		os.WriteFile(filepath.Join(dir, "apps", fmt.Sprintf("f%03d.yaml", f)), []byte(b.String()), 0o644)
	}
}

// BenchmarkPlan1000 plans a directory of 1 000 objects against live objects of which a tenth
// changed (load, validate, diff against live, build the report): what `bosun plan` and a pull
// request plan cost.
func BenchmarkPlan1000(b *testing.B) {
	ctx := context.Background()
	dir := b.TempDir()
	writeRepo(b, dir, 1000, 1)
	live := memReader{}
	first, err := PlanDir(ctx, live, dir, ".")
	if err != nil || first.Summary.Create != 1002 {
		b.Fatalf("first plan: %v, %+v", err, first.Summary)
	}
	// Make what the first plan would create live, as a sync would.
	set, err := loadSet(dir)
	if err != nil {
		b.Fatal(err)
	}
	gp, err := gitsync.PlanSet(ctx, live, set, ".", "c1")
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range gp.Changes {
		live.put(c.Resource, c.Desired)
	}
	// Change every Deployment: 100 of the 1 000 objects.
	writeRepo(b, dir, 1000, 2)
	var total time.Duration
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		rep, err := PlanDir(ctx, live, dir, ".")
		total += time.Since(start)
		if err != nil {
			b.Fatal(err)
		}
		if rep.Summary.Update != 100 || rep.Unchanged != 902 {
			b.Fatalf("plan: %+v unchanged %d, want 100 updates and 902 unchanged", rep.Summary, rep.Unchanged)
		}
	}
	ms := float64(total.Microseconds()) / 1000 / float64(b.N)
	b.ReportMetric(ms, "ms/plan")
	fmt.Printf("bench: plan-1000 %.1f ms\n", ms)
}

func loadSet(dir string) (*repolayout.Set, error) { return repolayout.LoadDir(dir) }
