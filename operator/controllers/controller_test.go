package controllers_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bosun-gitops/bosun/internal/resource"
	"github.com/bosun-gitops/bosun/operator/controllers"
	"github.com/bosun-gitops/bosun/operator/controllers/controllertest"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"
)

// stamper is a toy controller: it marks every ConfigMap with data["seen"]="yes", failing the
// first reconcile of each key to exercise the retry path.
type stamper struct {
	c        *controllers.Context
	queue    *controllers.Queue
	informer cache.SharedIndexInformer
	failed   map[string]bool
	attempts atomic.Int32
}

func newStamper(c *controllers.Context) (controllers.Controller, error) {
	s := &stamper{c: c, informer: c.Informers.For(resource.ConfigMaps), failed: map[string]bool{}}
	s.queue = controllers.NewQueue("stamper", c.Logger, s.reconcile)
	s.informer.AddEventHandler(s.queue.Handler())
	return s, nil
}

func (s *stamper) Name() string { return "stamper" }

func (s *stamper) Run(ctx context.Context) error {
	s.queue.Run(ctx, 1) // one worker: failed is not locked
	return nil
}

func (s *stamper) reconcile(ctx context.Context, key string) (controllers.Result, error) {
	s.attempts.Add(1)
	if !s.failed[key] {
		s.failed[key] = true
		return controllers.Result{}, errors.New("first attempt fails")
	}
	obj, exists, err := s.informer.GetIndexer().GetByKey(key)
	if err != nil || !exists {
		return controllers.Result{}, err
	}
	cm := obj.(*corev1.ConfigMap).DeepCopy()
	if cm.Data["seen"] == "yes" {
		return controllers.Result{}, nil
	}
	if cm.Data == nil {
		cm.Data = map[string]string{}
	}
	cm.Data["seen"] = "yes"
	_, err = s.c.Store.Update(ctx, resource.ConfigMaps, cm)
	return controllers.Result{}, err
}

func TestQueueRetriesAndConverges(t *testing.T) {
	env := controllertest.New(t, nil)
	for i := range 5 {
		env.MustCreate(resource.ConfigMaps, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: fmt.Sprintf("cm%d", i)}})
	}
	env.Start(map[string]controllers.Constructor{"stamper": newStamper})
	env.MustCreate(resource.ConfigMaps, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "late"}})
	env.Eventually(30*time.Second, "all configmaps stamped", func() error {
		for _, o := range env.List(resource.ConfigMaps, "default") {
			if o.(*corev1.ConfigMap).Data["seen"] != "yes" {
				return fmt.Errorf("%s not stamped", o.GetName())
			}
		}
		return nil
	})
	obj, err := env.Store.Get(env.Ctx, resource.ConfigMaps, "default", "nope")
	if !apierrors.IsNotFound(err) || obj != nil {
		t.Fatalf("Get of a missing object = %v, %v", obj, err)
	}
}

func TestClusterDefaults(t *testing.T) {
	env := controllertest.New(t, nil)
	get := controllers.ClusterFromInformer(env.Context.Informers)
	env.Start(nil)
	if got := get().Spec.NodeMonitorGracePeriod.Duration; got != 40*time.Second {
		t.Fatalf("default grace period %s, want 40s", got)
	}
}
