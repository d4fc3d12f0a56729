package operator

import (
	"context"
	"fmt"

	"github.com/bosun-gitops/bosun/internal/resource"
	"github.com/bosun-gitops/bosun/operator/store"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// systemNamespaces exist in every cluster, as in Kubernetes: objects without a namespace land in
// default, and node leases live in kube-node-lease.
var systemNamespaces = []string{
	metav1.NamespaceDefault, metav1.NamespaceSystem, metav1.NamespacePublic, corev1.NamespaceNodeLease,
}

// ensureSystemNamespaces creates the system namespaces that do not exist yet.
func ensureSystemNamespaces(ctx context.Context, st *store.Store) error {
	for _, name := range systemNamespaces {
		_, err := st.Create(ctx, resource.Namespaces, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}})
		if err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("creating namespace %s: %w", name, err)
		}
	}
	return nil
}

// leaderLeaseName is the Lease in kube-system that shows which operator leads, as
// kube-controller-manager's lease does. Election itself happens in etcd; the Lease is for people.
const leaderLeaseName = "bosun-operator"

// recordLeader writes this operator's identity into the leader Lease.
func recordLeader(ctx context.Context, st *store.Store, identity string) error {
	now := metav1.NewMicroTime(nowFunc())
	obj, err := st.Get(ctx, resource.Leases, metav1.NamespaceSystem, leaderLeaseName)
	if apierrors.IsNotFound(err) {
		lease := &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Namespace: metav1.NamespaceSystem, Name: leaderLeaseName},
			Spec: coordinationv1.LeaseSpec{HolderIdentity: &identity, AcquireTime: &now, RenewTime: &now,
				LeaseDurationSeconds: ptrInt32(leaseTTLSeconds)},
		}
		_, err = st.Create(ctx, resource.Leases, lease)
		return err
	}
	if err != nil {
		return err
	}
	lease := obj.(*coordinationv1.Lease).DeepCopy()
	if lease.Spec.HolderIdentity == nil || *lease.Spec.HolderIdentity != identity {
		transitions := int32(1)
		if lease.Spec.LeaseTransitions != nil {
			transitions = *lease.Spec.LeaseTransitions + 1
		}
		lease.Spec.LeaseTransitions = &transitions
		lease.Spec.AcquireTime = &now
	}
	lease.Spec.HolderIdentity = &identity
	lease.Spec.RenewTime = &now
	lease.Spec.LeaseDurationSeconds = ptrInt32(leaseTTLSeconds)
	_, err = st.Update(ctx, resource.Leases, lease)
	return err
}

func ptrInt32(v int32) *int32 { return &v }
