package apiserver_test

import (
	"net/http"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// TestResponseEncodingFollowsAccept checks the Content-Type of answers to gets and lists:
// protobuf for Kubernetes' kinds when the client lists it before JSON, JSON for everyone else,
// for Bosun's kinds and for errors.
func TestResponseEncodingFollowsAccept(t *testing.T) {
	ts := startServer(t)
	ts.createNamespace(t, "a")
	if _, err := ts.client.CoreV1().ConfigMaps("a").Create(testCtx(t), &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "x"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	checkContentTypes(t, ts, "", []contentTypeCase{
		{"get, typed client", "/api/v1/namespaces/a/configmaps/x", protoFirst, "application/vnd.kubernetes.protobuf", 200},
		{"list, typed client", "/api/v1/namespaces/a/configmaps", protoFirst, "application/vnd.kubernetes.protobuf", 200},
		{"get, JSON client", "/api/v1/namespaces/a/configmaps/x", "application/json", "application/json", 200},
		{"list, JSON client", "/api/v1/namespaces/a/configmaps", "application/json", "application/json", 200},
		{"list, no Accept header", "/api/v1/namespaces/a/configmaps", "", "application/json", 200},
		{"get, protobuf Table", "/api/v1/namespaces/a/configmaps/x", "application/vnd.kubernetes.protobuf;as=Table;v=v1;g=meta.k8s.io,application/json", "application/json", 200},
		{"not found", "/api/v1/namespaces/a/configmaps/nope", protoFirst, "application/json", 404},
		{"Bosun kind", "/apis/bosun.dev/v1alpha1/gitsyncs", protoFirst, "application/json", 200},
	})
}

// TestProtobufResponsesRoundTrip drives pods through client-go's typed client, which asks for
// protobuf, and checks that every answer (create, get, paged list, update, patch, delete) holds
// what a JSON client reads.
func TestProtobufResponsesRoundTrip(t *testing.T) {
	ts := startServer(t)
	ctx := testCtx(t)
	ts.createNamespace(t, "a")

	var mu sync.Mutex
	seen := map[string]bool{} // response Content-Types of the typed client
	protoCfg := rest.CopyConfig(ts.config)
	protoCfg.WrapTransport = func(rt http.RoundTripper) http.RoundTripper {
		return roundTripFunc(func(r *http.Request) (*http.Response, error) {
			resp, err := rt.RoundTrip(r)
			if err == nil {
				mu.Lock()
				seen[resp.Header.Get("Content-Type")] = true
				mu.Unlock()
			}
			return resp, err
		})
	}
	protoClient, err := kubernetes.NewForConfig(protoCfg)
	if err != nil {
		t.Fatal(err)
	}
	jsonCfg := rest.CopyConfig(ts.config)
	jsonCfg.ContentType, jsonCfg.AcceptContentTypes = "application/json", "application/json"
	jsonClient, err := kubernetes.NewForConfig(jsonCfg)
	if err != nil {
		t.Fatal(err)
	}
	pods, jsonPods := protoClient.CoreV1().Pods("a"), jsonClient.CoreV1().Pods("a")
	same := func(what string, fromJSON, fromProto any) {
		t.Helper()
		if diff := cmp.Diff(fromJSON, fromProto); diff != "" {
			t.Errorf("%s: the JSON client (-) and the protobuf client (+) read different things:\n%s", what, diff)
		}
	}

	var created []*corev1.Pod
	for _, name := range []string{"web-1", "web-2", "web-3"} {
		p, err := pods.Create(ctx, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app": "web"}, Annotations: map[string]string{"note": "日本語 <&>"}},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox", Command: []string{"sleep", "1d"},
				Ports: []corev1.ContainerPort{{ContainerPort: 8080}}}}},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if p.Name != name || p.ResourceVersion == "" || p.UID == "" || p.Status.Phase != corev1.PodPending {
			t.Fatalf("create answered %s rv=%q uid=%q phase=%q", p.Name, p.ResourceVersion, p.UID, p.Status.Phase)
		}
		created = append(created, p)
	}
	got, err := pods.Get(ctx, "web-1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	same("create vs get", created[0], got)
	jsonGot, err := jsonPods.Get(ctx, "web-1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	same("get", jsonGot, got)

	// A paged list: the continue token and resourceVersion survive the protobuf list too.
	var protoItems, jsonItems []corev1.Pod
	for _, c := range []struct {
		client kubernetes.Interface
		items  *[]corev1.Pod
	}{{protoClient, &protoItems}, {jsonClient, &jsonItems}} {
		opts := metav1.ListOptions{Limit: 2, LabelSelector: "app=web"}
		for page := 0; ; page++ {
			l, err := c.client.CoreV1().Pods("a").List(ctx, opts)
			if err != nil {
				t.Fatal(err)
			}
			if l.ResourceVersion == "" || (page == 0) != (l.Continue != "") {
				t.Fatalf("page %d: resourceVersion %q, continue %q", page, l.ResourceVersion, l.Continue)
			}
			*c.items = append(*c.items, l.Items...)
			if l.Continue == "" {
				break
			}
			opts.Continue = l.Continue
		}
	}
	if len(protoItems) != 3 {
		t.Fatalf("the protobuf list has %d pods, want 3", len(protoItems))
	}
	// JSON list items carry their kind and apiVersion; protobuf ones cannot (the list's kind says it).
	for i := range jsonItems {
		jsonItems[i].TypeMeta = metav1.TypeMeta{}
	}
	same("list", jsonItems, protoItems)

	got.Labels["tier"] = "front"
	updated, err := pods.Update(ctx, got, metav1.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if updated.Labels["tier"] != "front" || updated.ResourceVersion == got.ResourceVersion {
		t.Errorf("update answered labels %v, resourceVersion %s (was %s)", updated.Labels, updated.ResourceVersion, got.ResourceVersion)
	}
	patched, err := pods.Patch(ctx, "web-1", types.MergePatchType, []byte(`{"metadata":{"labels":{"tier":"back"}}}`), metav1.PatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	jsonGot, err = jsonPods.Get(ctx, "web-1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	same("patch", jsonGot, patched)
	if err := pods.Delete(ctx, "web-2", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := pods.Get(ctx, "web-2", metav1.GetOptions{}); err == nil {
		t.Error("web-2 still there after its deletion")
	}

	mu.Lock()
	defer mu.Unlock()
	if !seen["application/vnd.kubernetes.protobuf"] {
		t.Errorf("the typed client never got a protobuf answer (Content-Types %v)", seen)
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
