package apiserver

import (
	"bytes"
	"encoding/json"
	"net/http/httptest"
	"strconv"
	"testing"

	"github.com/bosun-gitops/bosun/internal/resource"
	"github.com/bosun-gitops/bosun/operator/store"
	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// typedList builds the typed <Kind>List of a store page: what writeList's output must equal.
func typedList(t *testing.T, res *resource.Resource, lr *store.ListResult) runtime.Object {
	t.Helper()
	list := res.NewList()
	items := make([]runtime.Object, len(lr.Items))
	for i, o := range lr.Items {
		items[i] = o
	}
	if err := meta.SetList(list, items); err != nil {
		t.Fatal(err)
	}
	lm, err := meta.ListAccessor(list)
	if err != nil {
		t.Fatal(err)
	}
	lm.SetResourceVersion(strconv.FormatInt(lr.ResourceVersion, 10))
	lm.SetContinue(lr.Continue)
	list.GetObjectKind().SetGroupVersionKind(res.GroupVersion().WithKind(res.ListKind))
	return list
}

// TestWriteList: the streamed list is byte for byte the encoding of the typed list, in JSON and
// in protobuf (as Kubernetes' protobuf serializer encodes it), empty lists and continue tokens
// included.
func TestWriteList(t *testing.T) {
	pod := func(name string) resource.Object {
		return &corev1.Pod{TypeMeta: metav1.TypeMeta{Kind: "Pod", APIVersion: "v1"},
			ObjectMeta: metav1.ObjectMeta{Namespace: "a", Name: name, ResourceVersion: "7", Labels: map[string]string{"app": "web"}},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox"}}},
			Status:     corev1.PodStatus{Phase: corev1.PodRunning}}
	}
	tests := []struct {
		name string
		res  *resource.Resource
		lr   *store.ListResult
	}{
		{"pods", resource.Pods, &store.ListResult{ResourceVersion: 42, Items: []resource.Object{pod("p1"), pod("p2"), pod("p3")}}},
		{"a page", resource.Pods, &store.ListResult{ResourceVersion: 42, Continue: "token", Items: []resource.Object{pod("p1")}}},
		{"empty", resource.Deployments, &store.ListResult{ResourceVersion: 9}},
		{"apps", resource.Deployments, &store.ListResult{ResourceVersion: 9, Items: []resource.Object{
			&appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: "a", Name: "web"}}}}},
	}
	c, err := newCodec()
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{codec: c}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want, err := json.Marshal(typedList(t, tt.res, tt.lr))
			if err != nil {
				t.Fatal(err)
			}
			rec := httptest.NewRecorder()
			s.writeList(rec, httptest.NewRequest("GET", "/", nil), tt.res, tt.lr)
			if rec.Code != 200 || rec.Header().Get("Content-Type") != "application/json" {
				t.Errorf("status %d, content type %q", rec.Code, rec.Header().Get("Content-Type"))
			}
			if diff := cmp.Diff(string(want)+"\n", rec.Body.String()); diff != "" {
				t.Errorf("streamed list differs from the typed list's encoding (-want +got):\n%s", diff)
			}

			var wantProto bytes.Buffer
			if err := c.proto.Encode(typedList(t, tt.res, tt.lr), &wantProto); err != nil {
				t.Fatal(err)
			}
			r := httptest.NewRequest("GET", "/", nil)
			r.Header.Set("Accept", "application/vnd.kubernetes.protobuf, application/json")
			rec = httptest.NewRecorder()
			s.writeList(rec, r, tt.res, tt.lr)
			if rec.Code != 200 || rec.Header().Get("Content-Type") != "application/vnd.kubernetes.protobuf" {
				t.Errorf("protobuf: status %d, content type %q", rec.Code, rec.Header().Get("Content-Type"))
			}
			if !bytes.Equal(wantProto.Bytes(), rec.Body.Bytes()) {
				t.Errorf("streamed protobuf list differs from the serializer's encoding of the typed list:\n got %q\nwant %q", rec.Body.Bytes(), wantProto.Bytes())
			}
		})
	}
}
