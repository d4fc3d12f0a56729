//go:build e2evm

package vm_test

import (
	"context"
	"testing"
	"time"

	"github.com/bosun-gitops/bosun/e2e/e2eutil"
	bosunv1 "github.com/bosun-gitops/bosun/repo-layout/v1alpha1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// clients are the API clients of the operator's admin kubeconfig.
type clients struct{ e2eutil.Clients }

func newClients(t *testing.T, ctx context.Context, dataDir string) clients {
	return clients{e2eutil.NewClients(t, ctx, dataDir)}
}

// machine gets one Machine; exists is false when it is gone.
func (c clients) machine(ctx context.Context, name string) (m bosunv1.Machine, exists bool, err error) {
	u, err := c.Dyn.Resource(e2eutil.MachinesGVR).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		if apierrors.IsNotFound(err) {
			return m, false, nil
		}
		return m, false, err
	}
	err = runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &m)
	return m, err == nil, err
}

// waitFor polls cond every 500 ms until it holds or ctx ends.
func waitFor(t *testing.T, ctx context.Context, what string, cond func() (bool, string)) {
	t.Helper()
	e2eutil.WaitFor(t, ctx, what, 500*time.Millisecond, cond)
}
