package plan

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bosun-gitops/bosun/internal/resource"
	"github.com/bosun-gitops/bosun/operator/gitsync"
	repolayout "github.com/bosun-gitops/bosun/repo-layout"
	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata")

func ptr[T any](v T) *T { return &v }

func web(replicas int32, image string, annotations map[string]string) *appsv1.Deployment {
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop", Annotations: annotations, ResourceVersion: "17", Generation: 2},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr(replicas),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: image}}},
			},
		},
	}
}

func managedAnn(hash, commit string) map[string]string {
	return map[string]string{resource.AnnotationSource: "apps/web.yaml", resource.AnnotationSourceLine: "1",
		resource.AnnotationAppliedHash: hash, resource.AnnotationCommit: commit}
}

func secret(value string) *corev1.Secret {
	return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: "shop"},
		Data: map[string][]byte{"password": []byte(value)}}
}

// samplePlan covers every action: a create, an update of a workload (replicas and image), an
// update of a Secret (values masked) and a prune.
func samplePlan() *gitsync.Plan {
	return &gitsync.Plan{
		Commit:    "0123456789abcdef0123456789abcdef01234567",
		Unchanged: 4,
		Changes: []gitsync.Change{
			{Action: gitsync.ActionCreate, Resource: resource.ConfigMaps, Namespace: "shop", Name: "settings", File: "apps/base.yaml", Line: 5,
				Desired: &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "settings", Namespace: "shop"}, Data: map[string]string{"a": "b"}}},
			{Action: gitsync.ActionUpdate, Resource: resource.Deployments, Namespace: "shop", Name: "web", File: "apps/web.yaml", Line: 1,
				Live:    web(3, "web:1.2", managedAnn("old", "c1")),
				Desired: web(5, "web:1.3", managedAnn("new", "c2"))},
			{Action: gitsync.ActionUpdate, Resource: resource.Secrets, Namespace: "shop", Name: "db", File: "apps/db.yaml", Line: 1,
				Live: secret("hunter2"), Desired: secret("correct-horse")},
			{Action: gitsync.ActionDelete, Resource: resource.Services, Namespace: "shop", Name: "old",
				Live: &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "old", Namespace: "shop",
					Annotations: map[string]string{resource.AnnotationSource: "apps/old.yaml"}}}},
		},
	}
}

func invalidPlan() *gitsync.Plan {
	return &gitsync.Plan{Commit: "fedcba9876543210", Errors: repolayout.ErrorList{
		{File: "apps/bad.yaml", Line: 4, Field: "data[bad key!]", Reason: "a valid config key must consist of alphanumeric characters"},
		{File: "machines/m.yaml", Line: 1, Reason: "address: required"},
	}}
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	p := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if diff := cmp.Diff(string(want), got); diff != "" {
		t.Errorf("%s (-want +got):\n%s", name, diff)
	}
}

func TestGolden(t *testing.T) {
	tests := []struct {
		name string
		plan *gitsync.Plan
	}{
		{"changes", samplePlan()},
		{"invalid", invalidPlan()},
		{"nochange", &gitsync.Plan{Commit: "abc", Unchanged: 9}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rep, err := Build(tt.plan)
			if err != nil {
				t.Fatal(err)
			}
			golden(t, tt.name+".txt", rep.Text())
			golden(t, tt.name+".md", rep.Markdown(0))
		})
	}
}

func TestReport(t *testing.T) {
	rep, err := Build(samplePlan())
	if err != nil {
		t.Fatal(err)
	}
	if got, want := rep.ExitCode(), ExitChanges; got != want {
		t.Errorf("exit code %d, want %d", got, want)
	}
	var webItem Item
	for _, it := range rep.Items {
		if it.Name == "web" {
			webItem = it
		}
	}
	if diff := cmp.Diff([]string{"3 → 5 replicas", "image web:1.2 → web:1.3", "pods are replaced (pod template changed)"}, webItem.Consequences); diff != "" {
		t.Errorf("consequences (-want +got):\n%s", diff)
	}
	wantDiff := []FieldDiff{
		{Path: "metadata.annotations." + resource.AnnotationAppliedHash, Old: "old", New: "new"},
		{Path: "spec.replicas", Old: "3", New: "5"},
		{Path: "spec.template.spec.containers[0].image", Old: "web:1.2", New: "web:1.3"},
	}
	// The applied hash is noise to users: it is filtered.
	wantDiff = wantDiff[1:]
	if diff := cmp.Diff(wantDiff, webItem.Diff); diff != "" {
		t.Errorf("field diff (-want +got):\n%s", diff)
	}
	for _, s := range []string{"hunter2", "correct-horse", "aHVudGVyMg", "Y29ycmVjdC1ob3JzZQ"} {
		if strings.Contains(rep.Text(), s) || strings.Contains(rep.Markdown(0), s) {
			t.Errorf("a Secret value (%s) shows in the plan", s)
		}
	}
	inv, _ := Build(invalidPlan())
	if inv.ExitCode() != ExitInvalid {
		t.Errorf("invalid plan exit code %d, want %d", inv.ExitCode(), ExitInvalid)
	}
	none, _ := Build(&gitsync.Plan{})
	if none.ExitCode() != ExitNoChanges {
		t.Errorf("empty plan exit code %d, want %d", none.ExitCode(), ExitNoChanges)
	}
}

func TestMarkdownTruncation(t *testing.T) {
	p := &gitsync.Plan{Commit: "abc"}
	for i := range 500 {
		name := fmt.Sprintf("web-%03d", i)
		live, desired := web(1, "web:1", managedAnn("a", "c")), web(2, "web:2", managedAnn("b", "c"))
		live.Name, desired.Name = name, name
		p.Changes = append(p.Changes, gitsync.Change{Action: gitsync.ActionUpdate, Resource: resource.Deployments,
			Namespace: "shop", Name: name, File: "apps/web.yaml", Line: 1 + i*20, Live: live, Desired: desired})
	}
	rep, err := Build(p)
	if err != nil {
		t.Fatal(err)
	}
	for _, max := range []int{2000, 20000, 60000} {
		md := rep.Markdown(max)
		if len(md) > max {
			t.Errorf("max %d: comment is %d bytes", max, len(md))
		}
		for _, want := range []string{CommentMarker, "valid, 500 changes", "more objects not shown", "web-000"} {
			if !strings.Contains(md, want) {
				t.Errorf("max %d: comment lacks %q", max, want)
			}
		}
	}
	full := rep.Markdown(0)
	if !strings.Contains(full, "web-499") || !strings.Contains(full, "```diff") {
		t.Error("an unbounded comment lacks the last object or the field diffs")
	}
	// Errors are truncated too.
	inv := &gitsync.Plan{}
	for i := range 300 {
		inv.Errors = append(inv.Errors, repolayout.Error{File: "a.yaml", Line: i + 1, Reason: strings.Repeat("x", 50)})
	}
	ir, _ := Build(inv)
	if md := ir.Markdown(3000); len(md) > 3000 || !strings.Contains(md, "more errors") {
		t.Errorf("truncated error comment: %d bytes, has 'more errors': %v", len(md), strings.Contains(md, "more errors"))
	}
}
