package apiserver_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
)

func testPod(name, node string, labels map[string]string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
		Spec: corev1.PodSpec{
			NodeName:   node,
			Containers: []corev1.Container{{Name: "main", Image: "busybox"}},
		},
	}
}

func names[T any](items []T, name func(*T) string) []string {
	out := []string{}
	for i := range items {
		out = append(out, name(&items[i]))
	}
	return out
}

func podNames(l *corev1.PodList) []string {
	return names(l.Items, func(p *corev1.Pod) string { return p.Namespace + "/" + p.Name })
}

func TestClientGoPods(t *testing.T) {
	ts := startServer(t)
	ctx := testCtx(t)
	ts.createNamespace(t, "a")
	ts.createNamespace(t, "b")
	pods := ts.client.CoreV1().Pods("a")

	for _, p := range []*corev1.Pod{
		testPod("web-1", "node-1", map[string]string{"app": "web"}),
		testPod("web-2", "node-2", map[string]string{"app": "web"}),
		testPod("db-1", "node-1", map[string]string{"app": "db"}),
	} {
		if _, err := pods.Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatalf("create %s: %v", p.Name, err)
		}
	}
	if _, err := ts.client.CoreV1().Pods("b").Create(ctx, testPod("other", "node-1", nil), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	got, err := pods.Get(ctx, "web-1", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get: %v", err)
	}
	if got.UID == "" || got.ResourceVersion == "" || got.Spec.NodeName != "node-1" {
		t.Errorf("get returned %+v", got.ObjectMeta)
	}

	for _, tc := range []struct {
		name string
		ns   string
		opts metav1.ListOptions
		want []string
	}{
		{"all in a", "a", metav1.ListOptions{}, []string{"a/db-1", "a/web-1", "a/web-2"}},
		{"cluster-wide", "", metav1.ListOptions{}, []string{"a/db-1", "a/web-1", "a/web-2", "b/other"}},
		{"label", "a", metav1.ListOptions{LabelSelector: "app=web"}, []string{"a/web-1", "a/web-2"}},
		{"label set", "a", metav1.ListOptions{LabelSelector: "app in (db),app!=web"}, []string{"a/db-1"}},
		{"field nodeName", "", metav1.ListOptions{FieldSelector: "spec.nodeName=node-1"}, []string{"a/db-1", "a/web-1", "b/other"}},
		{"field name", "a", metav1.ListOptions{FieldSelector: "metadata.name=web-2"}, []string{"a/web-2"}},
		{"field namespace", "", metav1.ListOptions{FieldSelector: "metadata.namespace=b"}, []string{"b/other"}},
		{"label and field", "a", metav1.ListOptions{LabelSelector: "app=web", FieldSelector: "spec.nodeName=node-1"}, []string{"a/web-1"}},
	} {
		t.Run("list "+tc.name, func(t *testing.T) {
			l, err := ts.client.CoreV1().Pods(tc.ns).List(ctx, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, podNames(l)); diff != "" {
				t.Errorf("names (-want +got):\n%s", diff)
			}
			if l.ResourceVersion == "" {
				t.Error("list has no resourceVersion")
			}
		})
	}

	t.Run("paging", func(t *testing.T) {
		var all []string
		opts := metav1.ListOptions{Limit: 2}
		for pages := 0; ; pages++ {
			if pages > 5 {
				t.Fatal("paging does not end")
			}
			l, err := ts.client.CoreV1().Pods("").List(ctx, opts)
			if err != nil {
				t.Fatal(err)
			}
			if len(l.Items) > 2 {
				t.Errorf("page has %d items, limit 2", len(l.Items))
			}
			all = append(all, podNames(l)...)
			if l.Continue == "" {
				break
			}
			opts.Continue = l.Continue
		}
		if diff := cmp.Diff([]string{"a/db-1", "a/web-1", "a/web-2", "b/other"}, all); diff != "" {
			t.Errorf("paged names (-want +got):\n%s", diff)
		}
	})

	t.Run("unsupported field selector", func(t *testing.T) {
		_, err := pods.List(ctx, metav1.ListOptions{FieldSelector: "spec.bogus=x"})
		if !apierrors.IsBadRequest(err) {
			t.Errorf("err = %v, want 400", err)
		}
	})

	t.Run("update and status", func(t *testing.T) {
		p, err := pods.Get(ctx, "web-1", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		p.Labels["tier"] = "front"
		p.Status.Phase = corev1.PodFailed // ignored: spec updates keep the stored status
		p, err = pods.Update(ctx, p, metav1.UpdateOptions{})
		if err != nil {
			t.Fatalf("update: %v", err)
		}
		if p.Labels["tier"] != "front" || p.Status.Phase != corev1.PodPending { // Pending since its creation
			t.Errorf("after update labels=%v phase=%q", p.Labels, p.Status.Phase)
		}
		p.Status.Phase = corev1.PodRunning
		p.Labels["ignored"] = "yes" // ignored: status updates keep the stored metadata
		p, err = pods.UpdateStatus(ctx, p, metav1.UpdateOptions{})
		if err != nil {
			t.Fatalf("update status: %v", err)
		}
		if p.Status.Phase != corev1.PodRunning || p.Labels["ignored"] != "" {
			t.Errorf("after status update labels=%v phase=%q", p.Labels, p.Status.Phase)
		}
		stale := p.DeepCopy()
		stale.ResourceVersion = "1"
		if _, err := pods.Update(ctx, stale, metav1.UpdateOptions{}); !apierrors.IsConflict(err) {
			t.Errorf("stale update: err = %v, want Conflict", err)
		}
		l, err := pods.List(ctx, metav1.ListOptions{FieldSelector: "status.phase=Running"})
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]string{"a/web-1"}, podNames(l)); diff != "" {
			t.Errorf("running pods (-want +got):\n%s", diff)
		}
	})

	t.Run("patch", func(t *testing.T) {
		for _, tc := range []struct {
			pt    types.PatchType
			patch string
			check func(*corev1.Pod) string
		}{
			{types.MergePatchType, `{"metadata":{"labels":{"merge":"yes"}}}`,
				func(p *corev1.Pod) string { return p.Labels["merge"] }},
			{types.JSONPatchType, `[{"op":"add","path":"/metadata/labels/json","value":"yes"}]`,
				func(p *corev1.Pod) string { return p.Labels["json"] }},
			{types.StrategicMergePatchType, `{"spec":{"containers":[{"name":"main","image":"busybox:2"}]}}`,
				func(p *corev1.Pod) string {
					if len(p.Spec.Containers) == 1 && p.Spec.Containers[0].Image == "busybox:2" {
						return "yes"
					}
					return fmt.Sprint(p.Spec.Containers)
				}},
		} {
			p, err := pods.Patch(ctx, "web-2", tc.pt, []byte(tc.patch), metav1.PatchOptions{})
			if err != nil {
				t.Fatalf("%s: %v", tc.pt, err)
			}
			if got := tc.check(p); got != "yes" {
				t.Errorf("%s: patched object wrong: %s", tc.pt, got)
			}
		}
		p, err := pods.Patch(ctx, "web-2", types.MergePatchType, []byte(`{"status":{"phase":"Succeeded"}}`), metav1.PatchOptions{}, "status")
		if err != nil {
			t.Fatalf("status patch: %v", err)
		}
		if p.Status.Phase != corev1.PodSucceeded || p.Labels["merge"] != "yes" {
			t.Errorf("after status patch phase=%q labels=%v", p.Status.Phase, p.Labels)
		}
		_, err = pods.Patch(ctx, "web-2", types.JSONPatchType, []byte(`[{"op":"test","path":"/metadata/name","value":"nope"}]`), metav1.PatchOptions{})
		if apierrors.ReasonForError(err) != metav1.StatusReasonInvalid {
			t.Errorf("failing JSON patch test: err = %v, want Invalid", err)
		}
		_, err = pods.Patch(ctx, "web-2", types.MergePatchType, []byte(`{"metadata":{"resourceVersion":"1","labels":{"x":"y"}}}`), metav1.PatchOptions{})
		if !apierrors.IsConflict(err) {
			t.Errorf("patch with stale resourceVersion: err = %v, want Conflict", err)
		}
	})

	t.Run("dry run", func(t *testing.T) {
		dry := metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}
		if _, err := pods.Create(ctx, testPod("ghost", "", nil), dry); err != nil {
			t.Fatalf("dry-run create: %v", err)
		}
		if _, err := pods.Get(ctx, "ghost", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("dry-run create stored the pod: %v", err)
		}
		if err := pods.Delete(ctx, "db-1", metav1.DeleteOptions{DryRun: []string{metav1.DryRunAll}}); err != nil {
			t.Fatalf("dry-run delete: %v", err)
		}
		if _, err := pods.Get(ctx, "db-1", metav1.GetOptions{}); err != nil {
			t.Errorf("dry-run delete removed the pod: %v", err)
		}
	})

	t.Run("create errors", func(t *testing.T) {
		_, err := ts.client.CoreV1().Pods("missing").Create(ctx, testPod("x", "", nil), metav1.CreateOptions{})
		if !apierrors.IsNotFound(err) || !strings.Contains(err.Error(), `namespaces "missing" not found`) {
			t.Errorf("create in missing namespace: err = %v, want 404 naming the namespace", err)
		}
		wrongNS := testPod("x", "", nil)
		wrongNS.Namespace = "b"
		if _, err := pods.Create(ctx, wrongNS, metav1.CreateOptions{}); !apierrors.IsBadRequest(err) {
			t.Errorf("namespace mismatch: err = %v, want 400", err)
		}
		if _, err := pods.Create(ctx, testPod("web-1", "", nil), metav1.CreateOptions{}); !apierrors.IsAlreadyExists(err) {
			t.Errorf("duplicate: err = %v, want AlreadyExists", err)
		}
		if _, err := pods.Get(ctx, "nope", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("get missing: err = %v, want NotFound", err)
		}
	})

	t.Run("delete", func(t *testing.T) {
		p, err := pods.Get(ctx, "db-1", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		err = pods.Delete(ctx, "db-1", metav1.DeleteOptions{Preconditions: &metav1.Preconditions{ResourceVersion: ptr.To("1")}})
		if !apierrors.IsConflict(err) {
			t.Errorf("delete with stale precondition: err = %v, want Conflict", err)
		}
		bg := metav1.DeletePropagationBackground
		err = pods.Delete(ctx, "db-1", metav1.DeleteOptions{
			PropagationPolicy: &bg,
			Preconditions:     &metav1.Preconditions{UID: &p.UID, ResourceVersion: &p.ResourceVersion},
		})
		if err != nil {
			t.Fatalf("delete: %v", err)
		}
		// A pod bound to a node is deleted gracefully: marked until its node (here the admin,
		// with a grace period of 0) deletes it for good.
		if p.Spec.NodeName != "" {
			marked, err := pods.Get(ctx, "db-1", metav1.GetOptions{})
			if err != nil || marked.DeletionTimestamp == nil || marked.DeletionGracePeriodSeconds == nil || *marked.DeletionGracePeriodSeconds <= 0 {
				t.Fatalf("bound pod after delete: %v, %v; want it marked for a graceful deletion", marked, err)
			}
			if err := pods.Delete(ctx, "db-1", metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)}); err != nil {
				t.Fatalf("delete with grace period 0: %v", err)
			}
		}
		if _, err := pods.Get(ctx, "db-1", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("after delete: err = %v, want NotFound", err)
		}
		if err := pods.Delete(ctx, "db-1", metav1.DeleteOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("second delete: err = %v, want NotFound", err)
		}
	})
}

func TestClientGoDeploymentsNodesLeases(t *testing.T) {
	ts := startServer(t)
	ctx := testCtx(t)
	ts.createNamespace(t, "default")
	ts.createNamespace(t, "kube-node-lease")

	deps := ts.client.AppsV1().Deployments("default")
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Labels: map[string]string{"app": "web"}},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](2),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "nginx"}}},
			},
		},
	}
	d, err := deps.Create(ctx, d, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create deployment: %v", err)
	}
	d.Spec.Replicas = ptr.To[int32](3)
	if d, err = deps.Update(ctx, d, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("update deployment: %v", err)
	}
	if d.Generation != 2 {
		t.Errorf("generation = %d, want 2", d.Generation)
	}
	d.Status.Replicas = 3
	d.Status.ObservedGeneration = 2
	if d, err = deps.UpdateStatus(ctx, d, metav1.UpdateOptions{}); err != nil || d.Status.Replicas != 3 {
		t.Fatalf("update deployment status: %v (replicas %d)", err, d.Status.Replicas)
	}
	patch := `{"spec":{"template":{"spec":{"containers":[{"name":"web","image":"nginx:2"}]}}}}`
	if d, err = deps.Patch(ctx, "web", types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatalf("patch deployment: %v", err)
	}
	if img := d.Spec.Template.Spec.Containers[0].Image; img != "nginx:2" || d.Status.Replicas != 3 {
		t.Errorf("after patch image=%s status.replicas=%d", img, d.Status.Replicas)
	}
	l, err := deps.List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
	if err != nil || len(l.Items) != 1 {
		t.Fatalf("list deployments: %v %v", err, l)
	}
	if err := deps.Delete(ctx, "web", metav1.DeleteOptions{}); err != nil {
		t.Fatalf("delete deployment: %v", err)
	}

	nodes := ts.client.CoreV1().Nodes()
	n, err := nodes.Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-1"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create node: %v", err)
	}
	n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}
	if n, err = nodes.UpdateStatus(ctx, n, metav1.UpdateOptions{}); err != nil || len(n.Status.Conditions) != 1 {
		t.Fatalf("update node status: %v", err)
	}
	if _, err := nodes.Patch(ctx, "node-1", types.MergePatchType, []byte(`{"spec":{"unschedulable":true}}`), metav1.PatchOptions{}); err != nil {
		t.Fatalf("patch node: %v", err)
	}
	nl, err := nodes.List(ctx, metav1.ListOptions{FieldSelector: "spec.unschedulable=true"})
	if err != nil || len(nl.Items) != 1 {
		t.Fatalf("list nodes: %v %v", err, nl)
	}

	leases := ts.client.CoordinationV1().Leases("kube-node-lease")
	lease, err := leases.Create(ctx, &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Name: "node-1"},
		Spec:       coordinationv1.LeaseSpec{HolderIdentity: ptr.To("node-1"), LeaseDurationSeconds: ptr.To[int32](40)},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create lease: %v", err)
	}
	now := metav1.NowMicro()
	lease.Spec.RenewTime = &now
	if lease, err = leases.Update(ctx, lease, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("renew lease: %v", err)
	}
	if lease.Spec.RenewTime == nil {
		t.Error("renewTime lost")
	}
	if err := leases.Delete(ctx, "node-1", metav1.DeleteOptions{}); err != nil {
		t.Fatalf("delete lease: %v", err)
	}
}
