package apiserver_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/bosun-gitops/bosun/internal/resource"
	"github.com/bosun-gitops/bosun/operator/apiserver"
	"github.com/bosun-gitops/bosun/operator/store"
	"github.com/bosun-gitops/bosun/operator/store/storetest"
	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// testServer is an API server on a real embedded etcd, reached through the admin kubeconfig it
// wrote.
type testServer struct {
	srv     *apiserver.Server
	store   *store.Store
	dataDir string
	config  *rest.Config
	client  kubernetes.Interface
}

func startServer(t *testing.T) *testServer {
	t.Helper()
	st := storetest.NewStore(t)
	dir := t.TempDir()
	return startServerOn(t, st, dir)
}

func startServerOn(t *testing.T, st *store.Store, dir string) *testServer {
	t.Helper()
	return startServerWith(t, st, dir, nil)
}

func startServerWith(t *testing.T, st *store.Store, dir string, edit func(*apiserver.Config)) *testServer {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cfg := apiserver.Config{Listen: "127.0.0.1:0", DataDir: dir, Store: st, Logger: storetest.Logger(t)}
	if edit != nil {
		edit(&cfg)
	}
	srv, err := apiserver.New(ctx, cfg)
	if err != nil {
		cancel()
		t.Fatalf("New: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	select {
	case <-srv.Ready():
	case err := <-done:
		t.Fatalf("Run ended before ready: %v", err)
	}
	restCfg, err := clientcmd.BuildConfigFromFlags("", srv.AdminKubeconfigPath())
	if err != nil {
		t.Fatalf("loading admin kubeconfig: %v", err)
	}
	cs, err := kubernetes.NewForConfig(restCfg)
	if err != nil {
		t.Fatalf("clientset: %v", err)
	}
	return &testServer{srv: srv, store: st, dataDir: dir, config: restCfg, client: cs}
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func (ts *testServer) createNamespace(t *testing.T, name string) {
	t.Helper()
	_, err := ts.client.CoreV1().Namespaces().Create(testCtx(t), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating namespace %s: %v", name, err)
	}
}

// rawGet requests path with an optional bearer token and client certificate, trusting the CA.
func (ts *testServer) rawGet(t *testing.T, path, token string, cert *tls.Certificate) *http.Response {
	t.Helper()
	tlsCfg, err := rest.TLSConfigFor(&rest.Config{TLSClientConfig: rest.TLSClientConfig{CAData: ts.config.CAData}})
	if err != nil {
		t.Fatal(err)
	}
	if cert != nil {
		tlsCfg.Certificates = []tls.Certificate{*cert}
	}
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: tlsCfg}}
	req, _ := http.NewRequestWithContext(testCtx(t), http.MethodGet, ts.srv.URL()+path, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func TestFirstStartWritesAdminFilesAndRestartReusesThem(t *testing.T) {
	st := storetest.NewStore(t)
	dir := t.TempDir()
	ts := startServerOn(t, st, dir)
	info, err := os.Stat(ts.srv.AdminKubeconfigPath())
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != 0o600 {
		t.Errorf("admin.kubeconfig mode = %v, want 0600", info.Mode().Perm())
	}
	first, err := clientcmd.LoadFromFile(ts.srv.AdminKubeconfigPath())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ts.client.CoreV1().Namespaces().List(testCtx(t), metav1.ListOptions{}); err != nil {
		t.Fatalf("listing with the admin kubeconfig: %v", err)
	}
	// A second server on the same data dir keeps the CA and token (and the new URL works).
	ts2 := startServerOn(t, st, dir)
	second, err := clientcmd.LoadFromFile(ts2.srv.AdminKubeconfigPath())
	if err != nil {
		t.Fatal(err)
	}
	if first.AuthInfos["admin"].Token != second.AuthInfos["admin"].Token {
		t.Error("admin token changed across restarts")
	}
	if string(first.Clusters["bosun"].CertificateAuthorityData) != string(second.Clusters["bosun"].CertificateAuthorityData) {
		t.Error("CA changed across restarts")
	}
	if _, err := ts2.client.CoreV1().Namespaces().List(testCtx(t), metav1.ListOptions{}); err != nil {
		t.Fatalf("listing after restart: %v", err)
	}
	hash, err := os.ReadFile(dir + "/admin-token.sha256")
	if err != nil {
		t.Fatal(err)
	}
	if string(hash) == first.AuthInfos["admin"].Token || len(hash) < 64 {
		t.Errorf("admin-token.sha256 does not hold a hash: %q", hash)
	}
}

func TestDiscoveryWithClientGo(t *testing.T) {
	ts := startServer(t)
	groups, lists, err := ts.client.Discovery().ServerGroupsAndResources()
	if err != nil {
		t.Fatalf("discovery: %v", err)
	}
	var gotGroups []string
	for _, g := range groups {
		gotGroups = append(gotGroups, g.Name)
	}
	if diff := cmp.Diff([]string{"", "apps", "coordination.k8s.io", "bosun.dev"}, gotGroups); diff != "" {
		t.Errorf("groups (-want +got):\n%s", diff)
	}
	served := map[string]bool{}
	for _, l := range lists {
		for _, r := range l.APIResources {
			served[l.GroupVersion+" "+r.Name] = true
		}
	}
	for _, res := range resource.All {
		if !served[res.APIVersion()+" "+res.Resource] {
			t.Errorf("discovery lacks %s %s", res.APIVersion(), res.Resource)
		}
		if res.HasStatus && !served[res.APIVersion()+" "+res.Resource+"/status"] {
			t.Errorf("discovery lacks %s %s/status", res.APIVersion(), res.Resource)
		}
	}
	v, err := ts.client.Discovery().ServerVersion()
	if err != nil || v.Major != "1" {
		t.Errorf("version: %v %+v", err, v)
	}
	// kubectl asks for aggregated discovery or tables first; plain JSON is what it gets.
	req, _ := http.NewRequest(http.MethodGet, ts.srv.URL()+"/api/v1/namespaces", nil)
	req.Header.Set("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io,application/json")
	req.Header.Set("Authorization", "Bearer "+ts.config.BearerToken)
	rt, err := rest.TransportFor(&rest.Config{TLSClientConfig: rest.TLSClientConfig{CAData: ts.config.CAData}})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := rt.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var list corev1.NamespaceList
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil || list.Kind != "NamespaceList" {
		t.Errorf("table-preferring list: %v kind %q", err, list.Kind)
	}
}

func TestWatchSendInitialEvents(t *testing.T) {
	ts := startServer(t)
	ctx := testCtx(t)
	ts.createNamespace(t, "a")
	if _, err := ts.client.CoreV1().Pods("a").Create(ctx, testPod("p", "", nil), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	body, err := ts.client.CoreV1().RESTClient().Get().AbsPath("/api/v1/namespaces/a/pods").
		Param("watch", "true").Param("sendInitialEvents", "true").Param("allowWatchBookmarks", "true").
		Param("resourceVersionMatch", "NotOlderThan").Stream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer body.Close()
	dec := json.NewDecoder(body)
	var got []string
	for range 2 {
		var ev struct {
			Type   string
			Object corev1.Pod
		}
		if err := dec.Decode(&ev); err != nil {
			t.Fatal(err)
		}
		got = append(got, fmt.Sprintf("%s %s %s", ev.Type, ev.Object.Name, ev.Object.Annotations[metav1.InitialEventsAnnotationKey]))
		if ev.Object.ResourceVersion == "" {
			t.Errorf("%s event without resourceVersion", ev.Type)
		}
	}
	if diff := cmp.Diff([]string{"ADDED p ", "BOOKMARK  true"}, got); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
}
