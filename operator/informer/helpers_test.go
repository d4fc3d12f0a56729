package informer

import (
	"github.com/bosun-gitops/bosun/operator/store"
	"k8s.io/apimachinery/pkg/labels"
)

func everything() labels.Selector { return labels.Everything() }

// storeDelete deletes at once (grace period 0): no node is there to stop the tests' bound pods.
func storeDelete() store.DeleteOptions { return store.DeleteOptions{GracePeriodSeconds: new(int64(0))} }
