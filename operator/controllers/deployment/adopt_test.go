package deployment

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/bosun-gitops/bosun/internal/resource"
	"github.com/bosun-gitops/bosun/operator/controllers/controllertest"
	"github.com/bosun-gitops/bosun/operator/store"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// getCountingStore counts the Deployment reads.
type getCountingStore struct {
	*store.Store
	gets atomic.Int32
}

func (s *getCountingStore) Get(ctx context.Context, res *resource.Resource, namespace, name string) (resource.Object, error) {
	if res == resource.Deployments {
		s.gets.Add(1)
	}
	return s.Store.Get(ctx, res, namespace, name)
}

// cachedEnv returns a controller whose caches hold only what the test adds to them, with a
// Deployment "web" and two orphan ReplicaSets it selects, in the store and in the caches.
func cachedEnv(t *testing.T) (*controllertest.Env, *Controller, *getCountingStore, *appsv1.Deployment) {
	t.Helper()
	env := controllertest.New(t, nil)
	c, err := New(env.Context)
	if err != nil {
		t.Fatal(err)
	}
	dc := c.(*Controller)
	counting := &getCountingStore{Store: env.Store}
	dc.store = counting
	lbl := map[string]string{"app": "web"}
	tmpl := corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: lbl},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "web:1"}}}}
	d := env.MustCreate(resource.Deployments, &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "web"},
		Spec:       appsv1.DeploymentSpec{Replicas: ptr.To[int32](2), Selector: &metav1.LabelSelector{MatchLabels: lbl}, Template: tmpl},
	}).(*appsv1.Deployment)
	if err := dc.deployments.GetIndexer().Add(d); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"web-old-1", "web-old-2"} {
		rs := env.MustCreate(resource.ReplicaSets, &appsv1.ReplicaSet{
			ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name, Labels: lbl},
			Spec:       appsv1.ReplicaSetSpec{Replicas: ptr.To[int32](0), Selector: &metav1.LabelSelector{MatchLabels: lbl}, Template: tmpl},
		})
		if err := dc.replicaSets.GetIndexer().Add(rs); err != nil {
			t.Fatal(err)
		}
	}
	return env, dc, counting, d
}

func orphanReplicaSets(env *controllertest.Env) (orphans, all int) {
	for _, o := range env.List(resource.ReplicaSets, "default") {
		all++
		if len(o.GetOwnerReferences()) == 0 {
			orphans++
		}
	}
	return orphans, all
}

// TestNoAdoptionByADeploymentGoneFromTheStore: the cache still shows the Deployment as it was;
// the store has deleted it, replaced it, or is deleting it. Its orphan ReplicaSets stay orphans
// and no ReplicaSet is created for it.
func TestNoAdoptionByADeploymentGoneFromTheStore(t *testing.T) {
	for _, tc := range []struct {
		name  string
		store func(t *testing.T, env *controllertest.Env)
	}{
		{"deleted", func(t *testing.T, env *controllertest.Env) {
			if _, err := env.Store.Delete(env.Ctx, resource.Deployments, "default", "web", store.DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
		}},
		{"replaced", func(t *testing.T, env *controllertest.Env) {
			d := getDeployment(t, env)
			if _, err := env.Store.Delete(env.Ctx, resource.Deployments, "default", "web", store.DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
			d.UID, d.ResourceVersion = "", ""
			env.MustCreate(resource.Deployments, d)
		}},
		{"being deleted", func(t *testing.T, env *controllertest.Env) {
			if _, err := env.Store.Delete(env.Ctx, resource.Deployments, "default", "web",
				store.DeleteOptions{PropagationPolicy: ptr.To(metav1.DeletePropagationForeground)}); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env, dc, counting, _ := cachedEnv(t)
			tc.store(t, env)
			_, err := dc.reconcile(env.Ctx, "default/web")
			if err == nil {
				t.Fatal("reconcile succeeded; want the adoption refused")
			}
			t.Logf("reconcile: %v", err)
			if orphans, all := orphanReplicaSets(env); orphans != 2 || all != 2 {
				t.Errorf("%d replica sets, %d of them orphans; want the 2 orphans left alone and none created", all, orphans)
			}
			if n := counting.gets.Load(); n != 1 {
				t.Errorf("%d deployment reads for two orphans, want 1", n)
			}
		})
	}
	t.Run("deployment as cached", func(t *testing.T) {
		env, dc, _, _ := cachedEnv(t)
		if _, err := dc.reconcile(env.Ctx, "default/web"); err != nil {
			t.Fatal(err)
		}
		if orphans, _ := orphanReplicaSets(env); orphans != 0 {
			t.Errorf("%d orphan replica sets left, want both adopted", orphans)
		}
	})
}

func getDeployment(t *testing.T, env *controllertest.Env) *appsv1.Deployment {
	t.Helper()
	o, err := env.Store.Get(env.Ctx, resource.Deployments, "default", "web")
	if err != nil {
		t.Fatal(err)
	}
	return o.(*appsv1.Deployment)
}
