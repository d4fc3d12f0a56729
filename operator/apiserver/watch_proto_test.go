package apiserver_test

import (
	"net/http"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
)

// TestWatchEncodingFollowsAccept checks the Content-Type of watch streams: protobuf for
// Kubernetes' kinds when the client lists it before JSON (client-go's typed clients), JSON for
// everyone else and always for Bosun's kinds.
func TestWatchEncodingFollowsAccept(t *testing.T) {
	ts := startServer(t)
	ts.createNamespace(t, "a")
	checkContentTypes(t, ts, "?watch=true&timeoutSeconds=1", []contentTypeCase{
		{"typed client", "/api/v1/namespaces/a/configmaps", protoFirst, "application/vnd.kubernetes.protobuf;stream=watch", 200},
		{"typed client, apps group", "/apis/apps/v1/deployments", protoFirst, "application/vnd.kubernetes.protobuf;stream=watch", 200},
		{"JSON client", "/api/v1/namespaces/a/configmaps", "application/json", "application/json", 200},
		{"JSON first", "/api/v1/namespaces/a/configmaps", "application/json,application/vnd.kubernetes.protobuf", "application/json", 200},
		{"anything", "/api/v1/namespaces/a/configmaps", "*/*", "application/json", 200},
		{"no Accept header", "/api/v1/namespaces/a/configmaps", "", "application/json", 200},
		{"protobuf refused", "/api/v1/namespaces/a/configmaps", "application/vnd.kubernetes.protobuf;q=0,application/json", "application/json", 200},
		{"protobuf Table", "/api/v1/namespaces/a/configmaps", "application/vnd.kubernetes.protobuf;as=Table;v=v1;g=meta.k8s.io,application/json", "application/json", 200},
		{"Bosun kind", "/apis/bosun.dev/v1alpha1/gitsyncs", protoFirst, "application/json", 200},
	})
}

// protoFirst is the Accept header of client-go's typed clients.
const protoFirst = "application/vnd.kubernetes.protobuf,application/json"

// contentTypeCase is a GET of path with an Accept header, and the status and Content-Type its
// answer must have.
type contentTypeCase struct {
	name, path, accept, want string
	code                     int
}

// checkContentTypes sends each case's request, with query appended to its path, and checks
// the answer's status and Content-Type.
func checkContentTypes(t *testing.T, ts *testServer, query string, cases []contentTypeCase) {
	t.Helper()
	httpClient, err := rest.HTTPClientFor(ts.config)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequestWithContext(testCtx(t), http.MethodGet, ts.srv.URL()+tc.path+query, nil)
			if err != nil {
				t.Fatal(err)
			}
			if tc.accept != "" {
				req.Header.Set("Accept", tc.accept)
			}
			resp, err := httpClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.code {
				t.Fatalf("status %s, want %d", resp.Status, tc.code)
			}
			if got := resp.Header.Get("Content-Type"); got != tc.want {
				t.Errorf("Content-Type %q, want %q", got, tc.want)
			}
		})
	}
}

// TestWatchProtobufRoundTrip follows one ConfigMap through a typed client's watch (protobuf)
// and a JSON client's, including the initial events and their closing bookmark: both must
// see the same objects.
func TestWatchProtobufRoundTrip(t *testing.T) {
	ts := startServer(t)
	ctx := testCtx(t)
	ts.createNamespace(t, "a")
	jsonCfg := rest.CopyConfig(ts.config)
	jsonCfg.ContentType, jsonCfg.AcceptContentTypes = "application/json", "application/json"
	jsonClient, err := kubernetes.NewForConfig(jsonCfg)
	if err != nil {
		t.Fatal(err)
	}
	cms := ts.client.CoreV1().ConfigMaps("a")
	first, err := cms.Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "first", Labels: map[string]string{"app": "web"}, Annotations: map[string]string{"note": "<b>&é</b>"}},
		Data:       map[string]string{"settings.yaml": "log-level: info\n", "unicode": "日本語 🙂"},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}

	opts := metav1.ListOptions{SendInitialEvents: ptr.To(true), AllowWatchBookmarks: true, ResourceVersionMatch: metav1.ResourceVersionMatchNotOlderThan}
	var streams []watch.Interface
	for _, c := range []kubernetes.Interface{ts.client, jsonClient} {
		w, err := c.CoreV1().ConfigMaps("a").Watch(ctx, opts)
		if err != nil {
			t.Fatal(err)
		}
		defer w.Stop()
		streams = append(streams, w)
	}
	second := first.DeepCopy()
	second.Data["unicode"] = "changed"
	updated, err := cms.Update(ctx, second, metav1.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := cms.Delete(ctx, "first", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}

	want := []string{
		"ADDED first " + first.ResourceVersion + " " + first.Data["unicode"],
		"BOOKMARK   true", // no name, no resourceVersion shown
		"MODIFIED first " + updated.ResourceVersion + " changed",
		"DELETED first  changed",
	}
	var objects [2][]*corev1.ConfigMap
	for i, w := range streams {
		var got []string
		for range want {
			ev := nextEvent(t, w)
			cm, ok := ev.Object.(*corev1.ConfigMap)
			if !ok {
				t.Fatalf("stream %d: %s event holds %T: %v", i, ev.Type, ev.Object, ev.Object)
			}
			rv := cm.ResourceVersion
			if ev.Type == watch.Deleted || ev.Type == watch.Bookmark {
				rv = "" // the deletion's revision; the bookmark's is the list's
			}
			got = append(got, string(ev.Type)+" "+cm.Name+" "+rv+" "+
				map[bool]string{true: cm.Annotations[metav1.InitialEventsAnnotationKey], false: cm.Data["unicode"]}[ev.Type == watch.Bookmark])
			if ev.Type != watch.Bookmark {
				objects[i] = append(objects[i], cm)
			}
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("stream %d events (-want +got):\n%s", i, diff)
		}
	}
	if diff := cmp.Diff(objects[1], objects[0]); diff != "" {
		t.Errorf("objects seen by the JSON watch (-) and the protobuf watch (+):\n%s", diff)
	}
}
