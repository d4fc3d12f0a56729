package controllers

import (
	"context"
	"fmt"

	"github.com/bosun-gitops/bosun/internal/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// OwnerGetter reads an object from the store, not from an informer's cache.
type OwnerGetter interface {
	Get(ctx context.Context, res *resource.Resource, namespace, name string) (resource.Object, error)
}

// AdoptionCheck guards the adoptions of one reconcile, as Kubernetes' ControllerRefManager with
// RecheckDeletionTimestamp: before the first adoption it reads the owner from the store, and
// refuses every adoption of the reconcile if the owner is gone, was replaced by another object
// of the same name (another UID) or is being deleted. The cache the reconcile decided from may
// be behind on any of these, and an orphan adopted by a dying owner would be deleted with it.
// It reads at most once, and only when something is to be adopted. Not safe for concurrent use:
// one reconcile, one check.
type AdoptionCheck struct {
	store OwnerGetter
	res   *resource.Resource
	owner metav1.Object

	checked bool
	err     error
}

// NewAdoptionCheck returns the check for owner, an object of res as the cache holds it.
func NewAdoptionCheck(store OwnerGetter, res *resource.Resource, owner metav1.Object) *AdoptionCheck {
	return &AdoptionCheck{store: store, res: res, owner: owner}
}

// CanAdopt returns nil if the owner may adopt, else why not; the answer of the first call holds
// for the rest of the reconcile.
func (c *AdoptionCheck) CanAdopt(ctx context.Context) error {
	if !c.checked {
		c.checked = true
		c.err = c.recheck(ctx)
	}
	return c.err
}

func (c *AdoptionCheck) recheck(ctx context.Context) error {
	ns, name := c.owner.GetNamespace(), c.owner.GetName()
	fresh, err := c.store.Get(ctx, c.res, ns, name)
	if err != nil {
		// %v, not %w: callers take a NotFound from an adoption for "the orphan is gone" and go
		// on, which for a missing owner would mean creating pods for it.
		return fmt.Errorf("rechecking %s %s/%s before adopting: %v", c.res.Kind, ns, name, err)
	}
	if fresh.GetUID() != c.owner.GetUID() {
		return fmt.Errorf("original %s %s/%s is gone: got uid %s, wanted %s", c.res.Kind, ns, name, fresh.GetUID(), c.owner.GetUID())
	}
	if ts := fresh.GetDeletionTimestamp(); ts != nil {
		return fmt.Errorf("%s %s/%s has just been deleted at %s", c.res.Kind, ns, name, ts.UTC().Format("2006-01-02T15:04:05Z"))
	}
	return nil
}
