package namespace_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/bosun-gitops/bosun/internal/resource"
	"github.com/bosun-gitops/bosun/operator/controllers"
	"github.com/bosun-gitops/bosun/operator/controllers/controllertest"
	"github.com/bosun-gitops/bosun/operator/controllers/namespace"
	"github.com/bosun-gitops/bosun/operator/store"
	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func content(env *controllertest.Env, ns string) []resource.Object {
	var out []resource.Object
	for _, res := range resource.All {
		if res.Namespaced && res != resource.Events {
			out = append(out, env.List(res, ns)...)
		}
	}
	return out
}

func TestNamespaceDeletion(t *testing.T) {
	env := controllertest.New(t, nil)
	for _, ns := range []string{"team", "other"} {
		env.MustCreate(resource.Namespaces, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})
		meta := metav1.ObjectMeta{Namespace: ns, Name: "x"}
		env.MustCreate(resource.Pods, &corev1.Pod{ObjectMeta: meta, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "i"}}}})
		env.MustCreate(resource.ConfigMaps, &corev1.ConfigMap{ObjectMeta: meta})
		env.MustCreate(resource.Secrets, &corev1.Secret{ObjectMeta: meta})
		env.MustCreate(resource.Services, &corev1.Service{ObjectMeta: meta})
		env.MustCreate(resource.Deployments, &appsv1.Deployment{ObjectMeta: meta})
		env.MustCreate(resource.Leases, &coordinationv1.Lease{ObjectMeta: meta})
	}
	// An object held by a finalizer of its own keeps the namespace Terminating.
	env.MustCreate(resource.ConfigMaps, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "team", Name: "held", Finalizers: []string{"test.bosun.dev/hold"}}})
	env.Start(map[string]controllers.Constructor{namespace.Name: namespace.New})

	env.Eventually(20*time.Second, "namespaces get the finalizer and phase Active", func() error {
		for _, o := range env.List(resource.Namespaces, "") {
			ns := o.(*corev1.Namespace)
			if len(ns.Finalizers) != 1 || ns.Finalizers[0] != namespace.Finalizer || len(ns.Spec.Finalizers) != 1 || ns.Status.Phase != corev1.NamespaceActive {
				return fmt.Errorf("%s: finalizers %v, spec %v, phase %q", ns.Name, ns.Finalizers, ns.Spec.Finalizers, ns.Status.Phase)
			}
		}
		return nil
	})
	if _, err := env.Store.Delete(env.Ctx, resource.Namespaces, "", "team", store.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	env.Eventually(20*time.Second, "content deleted but the held object, namespace Terminating", func() error {
		left := content(env, "team")
		if len(left) != 1 || left[0].GetName() != "held" {
			var names []string
			for _, o := range left {
				names = append(names, fmt.Sprintf("%T %s", o, o.GetName()))
			}
			return fmt.Errorf("left: %v", names)
		}
		obj, err := env.Store.Get(env.Ctx, resource.Namespaces, "", "team")
		if err != nil {
			return err
		}
		ns := obj.(*corev1.Namespace)
		if ns.Status.Phase != corev1.NamespaceTerminating || len(ns.Status.Conditions) == 0 {
			return fmt.Errorf("phase %q, conditions %+v", ns.Status.Phase, ns.Status.Conditions)
		}
		return nil
	})
	held := env.List(resource.ConfigMaps, "team")[0]
	held.SetFinalizers(nil)
	if _, err := env.Store.Update(env.Ctx, resource.ConfigMaps, held); err != nil {
		t.Fatal(err)
	}
	env.Eventually(20*time.Second, "namespace gone", func() error {
		if _, err := env.Store.Get(env.Ctx, resource.Namespaces, "", "team"); !apierrors.IsNotFound(err) {
			return fmt.Errorf("still there: %v", err)
		}
		if left := content(env, "team"); len(left) != 0 {
			return fmt.Errorf("%d objects left", len(left))
		}
		return nil
	})
	if n := len(content(env, "other")); n != 6 {
		t.Fatalf("namespace other has %d objects, want 6", n)
	}
}
