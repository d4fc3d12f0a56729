package informer

import (
	"context"
	"testing"

	"github.com/bosun-gitops/bosun/internal/resource"
	"github.com/bosun-gitops/bosun/operator/store/storetest"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"
)

func configMap(name string) *corev1.ConfigMap {
	return &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Namespace: "a", Name: name, Labels: map[string]string{"app": "x"},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "Pod", Name: "p", UID: "u1"}}},
		Data: map[string]string{"big": "data the garbage collector never reads"},
	}
}

// TestForMetadata: an informer only ForMetadata asked for caches metadata; one that For also
// asked for, before or after ForMetadata, is the shared typed informer; For after the factory
// started a metadata-only informer gets a typed one of its own.
func TestForMetadata(t *testing.T) {
	st := storetest.NewStore(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if _, err := st.Create(ctx, resource.ConfigMaps, configMap("c1")); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Create(ctx, resource.Secrets, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "a", Name: "s1"},
		Data: map[string][]byte{"key": []byte("secret")}}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Create(ctx, resource.Pods, pod("a", "p1")); err != nil {
		t.Fatal(err)
	}

	f := NewFactory(st, 0)
	cms := f.ForMetadata(resource.ConfigMaps)
	pods := f.ForMetadata(resource.Pods)
	if f.For(resource.Pods) != pods {
		t.Error("For after ForMetadata returned another pods informer, want the shared one")
	}
	secrets := f.For(resource.Secrets)
	if f.ForMetadata(resource.Secrets) != secrets {
		t.Error("ForMetadata after For returned another secrets informer, want the shared one")
	}
	added := make(chan any, 10)
	cms.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: func(obj any) { added <- obj }})
	f.Start(ctx)
	if !f.WaitForCacheSync(ctx) {
		t.Fatal("caches did not sync")
	}

	obj, ok, _ := cms.GetStore().GetByKey("a/c1")
	m, isMeta := obj.(*metav1.PartialObjectMetadata)
	if !ok || !isMeta {
		t.Fatalf("configmaps cache holds %T, want *metav1.PartialObjectMetadata", obj)
	}
	if m.Kind != "ConfigMap" || m.APIVersion != "v1" || m.Labels["app"] != "x" || len(m.OwnerReferences) != 1 || m.UID == "" || m.ResourceVersion == "" {
		t.Errorf("cached metadata = %+v, want kind, apiVersion, labels, owner references, uid and resourceVersion", m)
	}
	if obj := <-added; !isMetadata(obj) {
		t.Errorf("handler got %T, want *metav1.PartialObjectMetadata", obj)
	}
	if obj, _, _ := pods.GetStore().GetByKey("a/p1"); obj == nil {
		t.Error("pods cache misses a/p1")
	} else if _, ok := obj.(*corev1.Pod); !ok {
		t.Errorf("pods cache holds %T, want *corev1.Pod (For asked for it)", obj)
	}
	if obj, _, _ := secrets.GetStore().GetByKey("a/s1"); obj == nil {
		t.Error("secrets cache misses a/s1")
	} else if _, ok := obj.(*corev1.Secret); !ok {
		t.Errorf("secrets cache holds %T, want *corev1.Secret", obj)
	}

	// Updates and deletes go through the transform too.
	upd := configMap("c1")
	upd.Labels["app"] = "y"
	cur, err := st.Get(ctx, resource.ConfigMaps, "a", "c1")
	if err != nil {
		t.Fatal(err)
	}
	upd.ResourceVersion = cur.GetResourceVersion()
	if _, err := st.Update(ctx, resource.ConfigMaps, upd); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the label change in the metadata cache", func() bool {
		obj, ok, _ := cms.GetStore().GetByKey("a/c1")
		m, isMeta := obj.(*metav1.PartialObjectMetadata)
		return ok && isMeta && m.Labels["app"] == "y"
	})

	late := f.For(resource.ConfigMaps)
	if late == cms {
		t.Fatal("For after the metadata-only informer started returned it, want a typed informer")
	}
	if !f.WaitForCacheSync(ctx) {
		t.Fatal("the late informer did not sync")
	}
	if obj, _, _ := late.GetStore().GetByKey("a/c1"); obj == nil {
		t.Error("late configmaps cache misses a/c1")
	} else if cm, ok := obj.(*corev1.ConfigMap); !ok || cm.Data["big"] == "" {
		t.Errorf("late configmaps cache holds %T, want a *corev1.ConfigMap with its data", obj)
	}
	if f.For(resource.ConfigMaps) != late {
		t.Error("a second For returned another typed configmaps informer")
	}
}

func isMetadata(obj any) bool {
	_, ok := obj.(*metav1.PartialObjectMetadata)
	return ok
}

// TestLookup: Lookup serves typed objects from a synced informer, says "not cached" for kinds
// with no informer or a metadata-only one, and never creates an informer.
func TestLookup(t *testing.T) {
	st := storetest.NewStore(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if _, err := st.Create(ctx, resource.Pods, pod("a", "p1")); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Create(ctx, resource.ConfigMaps, configMap("c1")); err != nil {
		t.Fatal(err)
	}
	f := NewFactory(st, 0)
	f.For(resource.Pods)
	f.ForMetadata(resource.ConfigMaps)
	if _, cached := f.Lookup(resource.Pods, "a", "p1"); cached {
		t.Error("Lookup before the informer synced says cached")
	}
	f.Start(ctx)
	if !f.WaitForCacheSync(ctx) {
		t.Fatal("caches did not sync")
	}
	if obj, cached := f.Lookup(resource.Pods, "a", "p1"); !cached || obj == nil {
		t.Errorf("Lookup(pod a/p1) = %v, %v; want the pod, cached", obj, cached)
	} else if _, typed := obj.(*corev1.Pod); !typed {
		t.Errorf("Lookup(pod a/p1) returned %T, want *corev1.Pod", obj)
	}
	if obj, cached := f.Lookup(resource.Pods, "a", "missing"); !cached || obj != nil {
		t.Errorf("Lookup(pod a/missing) = %v, %v; want nil, cached", obj, cached)
	}
	if _, cached := f.Lookup(resource.ConfigMaps, "a", "c1"); cached {
		t.Error("Lookup of a metadata-only kind says cached")
	}
	if _, cached := f.Lookup(resource.Services, "a", "s"); cached {
		t.Error("Lookup of a kind without an informer says cached")
	}
	f.mu.Lock()
	_, created := f.informers[resource.Services]
	f.mu.Unlock()
	if created {
		t.Error("Lookup created an informer")
	}
}
