//go:build e2evm

package vm_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	bosunv1 "github.com/bosun-gitops/bosun/repo-layout/v1alpha1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// clients are the API clients of the operator's admin kubeconfig.
type clients struct {
	kube *kubernetes.Clientset
	dyn  dynamic.Interface
}

var machinesGVR = schema.GroupVersionResource{Group: "bosun.dev", Version: "v1alpha1", Resource: "machines"}

func newClients(t *testing.T, ctx context.Context, dataDir string) clients {
	t.Helper()
	path := filepath.Join(dataDir, "admin.kubeconfig")
	waitFor(t, ctx, "the admin kubeconfig", func() (bool, string) {
		_, err := os.Stat(path)
		return err == nil, fmt.Sprint(err)
	})
	cfg, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		t.Fatal(err)
	}
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return clients{kube: kube, dyn: dyn}
}

// machine gets one Machine; exists is false when it is gone.
func (c clients) machine(ctx context.Context, name string) (m bosunv1.Machine, exists bool, err error) {
	u, err := c.dyn.Resource(machinesGVR).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		if apierrors.IsNotFound(err) {
			return m, false, nil
		}
		return m, false, err
	}
	err = runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &m)
	return m, err == nil, err
}

// waitFor polls cond every 500 ms until it holds or ctx ends; the failure names what and the last
// state cond described.
func waitFor(t *testing.T, ctx context.Context, what string, cond func() (bool, string)) {
	t.Helper()
	last := ""
	for {
		ok, state := cond()
		if ok {
			return
		}
		last = state
		select {
		case <-ctx.Done():
			t.Fatalf("waiting for %s: %v; last state: %s", what, ctx.Err(), last)
		case <-time.After(500 * time.Millisecond):
		}
	}
}
