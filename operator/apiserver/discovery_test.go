package apiserver

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/bosun-gitops/bosun/internal/resource"
	"github.com/google/go-cmp/cmp"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

func TestGroupList(t *testing.T) {
	var got []string
	for _, g := range groupList().Groups {
		got = append(got, g.Name+" "+g.PreferredVersion.GroupVersion)
	}
	want := []string{"apps apps/v1", "coordination.k8s.io coordination.k8s.io/v1", "bosun.dev bosun.dev/v1alpha1"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("groups (-want +got):\n%s", diff)
	}
}

func TestResourceList(t *testing.T) {
	for _, tc := range []struct {
		gv   schema.GroupVersion
		want []metav1.APIResource
	}{
		{schema.GroupVersion{Group: "coordination.k8s.io", Version: "v1"}, []metav1.APIResource{
			{Name: "leases", SingularName: "lease", Namespaced: true, Kind: "Lease", Verbs: resourceVerbs},
		}},
		{schema.GroupVersion{Group: "bosun.dev", Version: "v1alpha1"}, []metav1.APIResource{
			{Name: "clusters", SingularName: "cluster", Kind: "Cluster", Verbs: resourceVerbs},
			{Name: "machines", SingularName: "machine", Kind: "Machine", Verbs: resourceVerbs, ShortNames: []string{"mach"}},
			{Name: "machines/status", Kind: "Machine", Verbs: statusVerbs},
			{Name: "gitsyncs", SingularName: "gitsync", Kind: "GitSync", Verbs: resourceVerbs, ShortNames: []string{"sync"}},
			{Name: "gitsyncs/status", Kind: "GitSync", Verbs: statusVerbs},
		}},
	} {
		t.Run(tc.gv.String(), func(t *testing.T) {
			l := resourceList(tc.gv)
			if l == nil {
				t.Fatal("no resource list")
			}
			if l.GroupVersion != tc.gv.String() || l.Kind != "APIResourceList" {
				t.Errorf("groupVersion %q kind %q", l.GroupVersion, l.Kind)
			}
			if diff := cmp.Diff(tc.want, l.APIResources); diff != "" {
				t.Errorf("resources (-want +got):\n%s", diff)
			}
		})
	}
	core := resourceList(schema.GroupVersion{Version: "v1"})
	var coreNames []string
	for _, r := range core.APIResources {
		coreNames = append(coreNames, r.Name)
	}
	wantCore := []string{"namespaces", "namespaces/status", "pods", "pods/status", "replicationcontrollers",
		"replicationcontrollers/status", "services", "services/status", "configmaps", "secrets", "nodes",
		"nodes/status", "endpoints", "events"}
	if diff := cmp.Diff(wantCore, coreNames); diff != "" {
		t.Errorf("core resources (-want +got):\n%s", diff)
	}
	if resourceList(schema.GroupVersion{Group: "apps", Version: "v2"}) != nil {
		t.Error("apps/v2 should not be served")
	}
}

func TestStatusFor(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want metav1.Status
	}{
		{"not found", apierrors.NewNotFound(resource.Pods.GroupResource(), "web"), metav1.Status{
			TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"},
			Status:   metav1.StatusFailure, Code: 404, Reason: metav1.StatusReasonNotFound,
			Message: `pods "web" not found`,
			Details: &metav1.StatusDetails{Name: "web", Kind: "pods"},
		}},
		{"plain error", errors.New("disk on fire"), metav1.Status{
			TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"},
			Status:   metav1.StatusFailure, Code: 500, Reason: metav1.StatusReasonInternalError,
			Message: "Internal error occurred: disk on fire",
			Details: &metav1.StatusDetails{Causes: []metav1.StatusCause{{Message: "disk on fire"}}},
		}},
		{"git rule", gitRule(resource.Deployments, &metav1.ObjectMeta{Name: "web", Annotations: map[string]string{
			resource.AnnotationSource: "apps/web.yaml"}}), metav1.Status{
			TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"},
			Status:   metav1.StatusFailure, Code: 409, Reason: metav1.StatusReasonConflict,
			Message: `deployments.apps "web" is managed by Git: edit apps/web.yaml in the repository and push`,
			Details: &metav1.StatusDetails{Name: "web", Group: "apps", Kind: "deployments"},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, statusFor(tc.err)); diff != "" {
				t.Errorf("status (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseRequest(t *testing.T) {
	type want struct {
		Resource, Namespace, Name, Subresource, Verb string
		Discovery, NotFound                          bool
	}
	for _, tc := range []struct {
		method, path string
		want         want
	}{
		{"GET", "/api", want{Discovery: true}},
		{"GET", "/apis/apps", want{Discovery: true}},
		{"GET", "/apis/apps/v1", want{Discovery: true}},
		{"GET", "/api/v1/pods", want{Resource: "pods", Verb: "list"}},
		{"GET", "/api/v1/pods?watch=true", want{Resource: "pods", Verb: "watch"}},
		{"GET", "/api/v1/watch/namespaces/a/pods/p", want{Resource: "pods", Namespace: "a", Name: "p", Verb: "watch"}},
		{"GET", "/api/v1/namespaces/a/pods/p", want{Resource: "pods", Namespace: "a", Name: "p", Verb: "get"}},
		{"PUT", "/api/v1/namespaces/a/pods/p/status", want{Resource: "pods", Namespace: "a", Name: "p", Subresource: "status", Verb: "update"}},
		{"GET", "/api/v1/namespaces/a", want{Resource: "namespaces", Name: "a", Verb: "get"}},
		{"PUT", "/api/v1/namespaces/a/status", want{Resource: "namespaces", Name: "a", Subresource: "status", Verb: "update"}},
		{"POST", "/apis/apps/v1/namespaces/a/deployments", want{Resource: "deployments", Namespace: "a", Verb: "create"}},
		{"PATCH", "/api/v1/nodes/n1/status", want{Resource: "nodes", Name: "n1", Subresource: "status", Verb: "patch"}},
		{"DELETE", "/apis/bosun.dev/v1alpha1/machines/m", want{Resource: "machines", Name: "m", Verb: "delete"}},
		{"GET", "/apis/apps/v1/pods", want{NotFound: true}},
		{"GET", "/api/v1/namespaces/a/pods/p/status/extra", want{Resource: "pods", Namespace: "a", Name: "p", Subresource: "status", NotFound: true}},
		{"GET", "/nope", want{NotFound: true}},
	} {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			ri, notFound := parseRequest(httptest.NewRequest(tc.method, tc.path, nil))
			got := want{Namespace: ri.Namespace, Name: ri.Name, Subresource: ri.Subresource, Verb: ri.Verb,
				Discovery: ri.Discovery, NotFound: notFound}
			if ri.Resource != nil {
				got.Resource = ri.Resource.Resource
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestWriteErrorShape(t *testing.T) {
	rec := httptest.NewRecorder()
	writeError(rec, apierrors.NewAlreadyExists(resource.Nodes.GroupResource(), "n1"))
	if rec.Code != http.StatusConflict || rec.Header().Get("Content-Type") != "application/json" {
		t.Errorf("code %d content type %q", rec.Code, rec.Header().Get("Content-Type"))
	}
	want := `{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"nodes \"n1\" already exists","reason":"AlreadyExists","details":{"name":"n1","kind":"nodes"},"code":409}` + "\n"
	if diff := cmp.Diff(want, rec.Body.String()); diff != "" {
		t.Errorf("body (-want +got):\n%s", diff)
	}
}
