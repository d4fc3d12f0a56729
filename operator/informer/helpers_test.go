package informer

import (
	"github.com/bosun-gitops/bosun/operator/store"
	"k8s.io/apimachinery/pkg/labels"
)

func everything() labels.Selector { return labels.Everything() }

func storeDelete() store.DeleteOptions { return store.DeleteOptions{} }
