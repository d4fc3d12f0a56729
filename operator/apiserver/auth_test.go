package apiserver_test

import (
	"crypto/tls"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/bosun-gitops/bosun/internal/pki"
	"github.com/bosun-gitops/bosun/internal/resource"
	"github.com/bosun-gitops/bosun/operator/store"
	bosunv1 "github.com/bosun-gitops/bosun/repo-layout/v1alpha1"
	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
)

// nodeClient is a clientset authenticated with a client certificate for node name.
func (ts *testServer) nodeClient(t *testing.T, name string) (kubernetes.Interface, *tls.Certificate) {
	t.Helper()
	certPEM, keyPEM, err := ts.srv.CA().IssueClient("system:node:"+name, []string{"system:nodes"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &rest.Config{
		Host: ts.srv.URL(),
		TLSClientConfig: rest.TLSClientConfig{
			CAData: ts.config.CAData, CertData: certPEM, KeyData: keyPEM,
		},
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return cs, &pair
}

func TestNodeAuthorization(t *testing.T) {
	ts := startServer(t)
	ctx := testCtx(t)
	ts.createNamespace(t, "a")
	ts.createNamespace(t, "kube-node-lease")
	admin := ts.client
	for _, n := range []string{"node-1", "node-2"} {
		if _, err := admin.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range []string{"used", "unused"} {
		if _, err := admin.CoreV1().Secrets("a").Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: s}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	mine := testPod("mine", "node-1", nil)
	mine.Spec.Volumes = []corev1.Volume{{Name: "s", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "used"}}}}
	for _, p := range []*corev1.Pod{mine, testPod("theirs", "node-2", nil)} {
		if _, err := admin.CoreV1().Pods("a").Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	node, _ := ts.nodeClient(t, "node-1")

	allowed := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Errorf("%s: %v, want allowed", what, err)
		}
	}
	forbidden := func(what string, err error) {
		t.Helper()
		if !apierrors.IsForbidden(err) {
			t.Errorf("%s: err = %v, want Forbidden", what, err)
		}
	}

	n, err := node.CoreV1().Nodes().Get(ctx, "node-1", metav1.GetOptions{})
	allowed("get own node", err)
	n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}
	_, err = node.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{})
	allowed("update own node status", err)
	other, err := node.CoreV1().Nodes().Get(ctx, "node-2", metav1.GetOptions{})
	allowed("get other node", err)
	other.Status.Conditions = n.Status.Conditions
	_, err = node.CoreV1().Nodes().UpdateStatus(ctx, other, metav1.UpdateOptions{})
	forbidden("update other node status", err)
	_, err = node.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-3"}}, metav1.CreateOptions{})
	forbidden("create another node", err)
	err = node.CoreV1().Nodes().Delete(ctx, "node-2", metav1.DeleteOptions{})
	forbidden("delete other node", err)

	_, err = node.CoordinationV1().Leases("kube-node-lease").Create(ctx, &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Name: "node-1"}, Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To("node-1")}}, metav1.CreateOptions{})
	allowed("create own lease", err)
	_, err = node.CoordinationV1().Leases("kube-node-lease").Create(ctx, &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Name: "node-2"}}, metav1.CreateOptions{})
	forbidden("create other lease", err)

	_, err = node.CoreV1().Pods("").List(ctx, metav1.ListOptions{FieldSelector: "spec.nodeName=node-1"})
	allowed("list pods", err)
	p, err := node.CoreV1().Pods("a").Get(ctx, "mine", metav1.GetOptions{})
	allowed("get bound pod", err)
	p.Status.Phase = corev1.PodRunning
	_, err = node.CoreV1().Pods("a").UpdateStatus(ctx, p, metav1.UpdateOptions{})
	allowed("update bound pod status", err)
	_, err = node.CoreV1().Pods("a").Patch(ctx, "theirs", types.MergePatchType, []byte(`{"status":{"phase":"Failed"}}`), metav1.PatchOptions{}, "status")
	forbidden("patch other node's pod status", err)
	p.Labels = map[string]string{"x": "y"}
	_, err = node.CoreV1().Pods("a").Update(ctx, p, metav1.UpdateOptions{})
	forbidden("update pod spec", err)

	_, err = node.CoreV1().Secrets("a").Get(ctx, "used", metav1.GetOptions{})
	allowed("get secret of a bound pod", err)
	_, err = node.CoreV1().Secrets("a").Get(ctx, "unused", metav1.GetOptions{})
	forbidden("get unrelated secret", err)
	_, err = node.CoreV1().Secrets("a").List(ctx, metav1.ListOptions{})
	forbidden("list secrets", err)

	_, err = node.CoreV1().Events("a").Create(ctx, &corev1.Event{
		ObjectMeta:     metav1.ObjectMeta{Name: "ev"},
		InvolvedObject: corev1.ObjectReference{Kind: "Pod", Namespace: "a", Name: "mine"}}, metav1.CreateOptions{})
	allowed("create event", err)
	_, err = node.CoreV1().ConfigMaps("a").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "cm"}}, metav1.CreateOptions{})
	forbidden("create configmap", err)

	// A node deletes for good the pods bound to it once it has stopped them, and only those.
	err = node.CoreV1().Pods("a").Delete(ctx, "theirs", metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)})
	forbidden("delete other node's pod", err)
	err = node.CoreV1().Pods("a").Delete(ctx, "mine", metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)})
	allowed("delete own pod", err)
}

func TestAuthenticationFailures(t *testing.T) {
	ts := startServer(t)
	otherCA, err := pki.NewCA("someone-else")
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := otherCA.IssueClient("system:node:evil", []string{"system:masters"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	foreign, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	admin := ts.config.BearerToken
	_, nodeCert := ts.nodeClient(t, "node-1")
	for _, tc := range []struct {
		name  string
		path  string
		token string
		cert  *tls.Certificate
		want  int
	}{
		{"anonymous healthz", "/healthz", "", nil, http.StatusOK},
		{"anonymous readyz", "/readyz", "", nil, http.StatusOK},
		{"anonymous livez", "/livez", "", nil, http.StatusOK},
		{"anonymous list", "/api/v1/pods", "", nil, http.StatusUnauthorized},
		{"anonymous discovery", "/api", "", nil, http.StatusUnauthorized},
		{"anonymous version", "/version", "", nil, http.StatusUnauthorized},
		{"anonymous metrics", "/metrics", "", nil, http.StatusUnauthorized},
		{"wrong token", "/api/v1/pods", "not-the-token", nil, http.StatusUnauthorized},
		{"wrong token with healthz", "/healthz", "not-the-token", nil, http.StatusOK},
		{"admin token", "/api/v1/pods", admin, nil, http.StatusOK},
		{"admin metrics", "/metrics", admin, nil, http.StatusOK},
		{"node metrics", "/metrics", "", nodeCert, http.StatusForbidden},
		{"node discovery", "/apis", "", nodeCert, http.StatusOK},
		{"node secrets", "/api/v1/secrets", "", nodeCert, http.StatusForbidden},
		{"unknown path", "/nope", admin, nil, http.StatusNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := ts.rawGet(t, tc.path, tc.token, tc.cert)
			if resp.StatusCode != tc.want {
				t.Errorf("GET %s = %d, want %d", tc.path, resp.StatusCode, tc.want)
			}
		})
	}
	t.Run("certificate from another CA", func(t *testing.T) {
		tlsCfg, err := rest.TLSConfigFor(&rest.Config{TLSClientConfig: rest.TLSClientConfig{CAData: ts.config.CAData}})
		if err != nil {
			t.Fatal(err)
		}
		tlsCfg.Certificates = []tls.Certificate{foreign}
		c := &http.Client{Transport: &http.Transport{TLSClientConfig: tlsCfg}}
		resp, err := c.Get(ts.srv.URL() + "/api/v1/pods")
		if err == nil {
			defer resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				t.Errorf("foreign certificate got %d", resp.StatusCode)
			}
		} else if !strings.Contains(err.Error(), "certificate") && !strings.Contains(err.Error(), "tls") {
			t.Errorf("foreign certificate: unexpected error %v", err)
		}
	})
}

func TestGitRule(t *testing.T) {
	ts := startServer(t)
	ctx := testCtx(t)
	ts.createNamespace(t, "default")
	managed := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default", Annotations: map[string]string{
			resource.AnnotationSource: "apps/web/deployment.yaml",
			resource.AnnotationCommit: "abc1234def5678",
		}},
		Spec: appsv1.DeploymentSpec{
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "nginx"}}},
			},
		},
	}
	if _, err := ts.store.Create(ctx, resource.Deployments, managed); err != nil {
		t.Fatal(err)
	}
	deps := ts.client.AppsV1().Deployments("default")
	d, err := deps.Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	const wantMsg = `deployments.apps "web" is managed by Git: edit apps/web/deployment.yaml in the repository and push (commit abc1234)`
	refused := func(what string, err error) {
		t.Helper()
		if !apierrors.IsConflict(err) {
			t.Errorf("%s: err = %v, want 409 Conflict", what, err)
			return
		}
		if got := err.Error(); got != wantMsg {
			t.Errorf("%s: message\n got %s\nwant %s", what, got, wantMsg)
		}
	}
	changed := d.DeepCopy()
	changed.Spec.Replicas = ptr.To[int32](5)
	_, err = deps.Update(ctx, changed, metav1.UpdateOptions{})
	refused("update", err)
	_, err = deps.Patch(ctx, "web", types.MergePatchType, []byte(`{"spec":{"replicas":5}}`), metav1.PatchOptions{})
	refused("patch", err)
	unmanage := d.DeepCopy()
	delete(unmanage.Annotations, resource.AnnotationSource)
	_, err = deps.Update(ctx, unmanage, metav1.UpdateOptions{})
	refused("removing the annotation", err)
	refused("delete", deps.Delete(ctx, "web", metav1.DeleteOptions{}))

	d.Status.Replicas = 1
	d.Status.ObservedGeneration = 1
	if _, err := deps.UpdateStatus(ctx, d, metav1.UpdateOptions{}); err != nil {
		t.Errorf("status update of a Git-managed object: %v", err)
	}
	if _, err := deps.Patch(ctx, "web", types.MergePatchType, []byte(`{"status":{"readyReplicas":1}}`), metav1.PatchOptions{}, "status"); err != nil {
		t.Errorf("status patch of a Git-managed object: %v", err)
	}
	got, err := deps.Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got.Spec.Replicas != nil || got.Status.ReadyReplicas != 1 {
		t.Errorf("after refused writes: replicas=%v readyReplicas=%d", got.Spec.Replicas, got.Status.ReadyReplicas)
	}

	// A Git-managed pod that Git sync deleted (gracefully: it waits for its node) may be deleted
	// for good; a Git-managed pod that is not being deleted may not.
	pod := testPod("job", "node-1", nil)
	pod.Namespace, pod.Annotations = "default", map[string]string{resource.AnnotationSource: "apps/job.yaml"}
	if _, err := ts.store.Create(ctx, resource.Pods, pod); err != nil {
		t.Fatal(err)
	}
	pods := ts.client.CoreV1().Pods("default")
	if err := pods.Delete(ctx, "job", metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)}); !apierrors.IsConflict(err) {
		t.Errorf("deleting a Git-managed pod: %v, want 409 Conflict", err)
	}
	if _, err := ts.store.Delete(ctx, resource.Pods, "default", "job", store.DeleteOptions{}); err != nil {
		t.Fatal(err) // what Git sync's prune does
	}
	if err := pods.Delete(ctx, "job", metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)}); err != nil {
		t.Errorf("deleting for good a Git-managed pod that Git sync deleted: %v", err)
	}
	if _, err := pods.Get(ctx, "job", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("after its node's delete: %v, want NotFound", err)
	}
}

// TestReservedMetadata: Bosun's Git-sync annotations and preview label cannot be set or changed
// through the API (an object carrying them would be taken for a Git-managed one and pruned),
// while writes that leave them out, or send back what they read, go through.
func TestReservedMetadata(t *testing.T) {
	ts := startServer(t)
	ctx := testCtx(t)
	ts.createNamespace(t, "default")
	cms := ts.client.CoreV1().ConfigMaps("default")
	forbidden := func(what string, err error, key string) {
		t.Helper()
		if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), key) || !strings.Contains(err.Error(), "set by Bosun's Git sync") {
			t.Errorf("%s: err = %v, want 422 naming %s", what, err, key)
		}
	}
	_, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "forged",
		Annotations: map[string]string{resource.AnnotationSource: "apps/forged.yaml"}}}, metav1.CreateOptions{})
	forbidden("create with bosun.dev/source", err, resource.AnnotationSource)
	_, err = cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "forged",
		Labels: map[string]string{resource.LabelPreview: "7"}}}, metav1.CreateOptions{})
	forbidden("create with bosun.dev/preview", err, resource.LabelPreview)

	cm, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "mine",
		Annotations: map[string]string{"team": "a"}}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create without reserved metadata: %v", err)
	}
	cm.Annotations[resource.AnnotationCommit] = "abc"
	_, err = cms.Update(ctx, cm, metav1.UpdateOptions{})
	forbidden("update adding bosun.dev/commit", err, resource.AnnotationCommit)
	_, err = cms.Patch(ctx, "mine", types.MergePatchType, []byte(`{"metadata":{"annotations":{"bosun.dev/applied-hash":"x"}}}`), metav1.PatchOptions{})
	forbidden("patch adding bosun.dev/applied-hash", err, resource.AnnotationAppliedHash)

	// An object the store holds with a reserved mark (as Git sync writes it) may be sent back
	// unchanged by a client that only edits other fields; Git's own rule is tested above.
	marked := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "marked", Namespace: "default",
		Labels: map[string]string{resource.LabelPreview: "3"}}}
	if _, err := ts.store.Create(ctx, resource.ConfigMaps, marked); err != nil {
		t.Fatal(err)
	}
	got, err := cms.Get(ctx, "marked", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got.Data = map[string]string{"k": "v"}
	if _, err := cms.Update(ctx, got, metav1.UpdateOptions{}); err != nil {
		t.Errorf("update sending back an unchanged reserved label: %v", err)
	}
	got, _ = cms.Get(ctx, "marked", metav1.GetOptions{})
	got.Labels[resource.LabelPreview] = "4"
	_, err = cms.Update(ctx, got, metav1.UpdateOptions{})
	forbidden("update changing bosun.dev/preview", err, resource.LabelPreview)
}

func TestDynamicClientReadsMachine(t *testing.T) {
	ts := startServer(t)
	ctx := testCtx(t)
	m := &bosunv1.Machine{
		ObjectMeta: metav1.ObjectMeta{Name: "db-1", Labels: map[string]string{"disk": "ssd"}},
		Spec:       bosunv1.MachineSpec{Address: "192.0.2.10", Port: 22, User: "root"},
	}
	if _, err := ts.store.Create(ctx, resource.Machines, m); err != nil {
		t.Fatal(err)
	}
	dyn, err := dynamic.NewForConfig(ts.config)
	if err != nil {
		t.Fatal(err)
	}
	gvr := schema.GroupVersionResource{Group: "bosun.dev", Version: "v1alpha1", Resource: "machines"}
	u, err := dyn.Resource(gvr).Get(ctx, "db-1", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("dynamic get: %v", err)
	}
	if u.GetKind() != "Machine" || u.GetAPIVersion() != "bosun.dev/v1alpha1" {
		t.Errorf("kind %s apiVersion %s", u.GetKind(), u.GetAPIVersion())
	}
	addr, _, _ := unstructuredString(u.Object, "spec", "address")
	if addr != "192.0.2.10" {
		t.Errorf("spec.address = %q", addr)
	}
	l, err := dyn.Resource(gvr).List(ctx, metav1.ListOptions{LabelSelector: "disk=ssd"})
	if err != nil || len(l.Items) != 1 {
		t.Fatalf("dynamic list: %v %v", err, l)
	}
	if l.GetKind() != "MachineList" {
		t.Errorf("list kind = %s", l.GetKind())
	}
	// Status writes through the dynamic client work too.
	if err := setUnstructured(u.Object, "Ready", "status", "phase"); err != nil {
		t.Fatal(err)
	}
	if _, err := dyn.Resource(gvr).UpdateStatus(ctx, u, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("dynamic update status: %v", err)
	}
}

func unstructuredString(obj map[string]any, path ...string) (string, bool, error) {
	var cur any = obj
	for _, p := range path {
		m, ok := cur.(map[string]any)
		if !ok {
			return "", false, nil
		}
		cur = m[p]
	}
	s, ok := cur.(string)
	return s, ok, nil
}

func setUnstructured(obj map[string]any, value any, path ...string) error {
	cur := obj
	for _, p := range path[:len(path)-1] {
		next, ok := cur[p].(map[string]any)
		if !ok {
			next = map[string]any{}
			cur[p] = next
		}
		cur = next
	}
	cur[path[len(path)-1]] = value
	return nil
}
