package store

import "github.com/bosun-gitops/bosun/internal/resource"

// ObjectKey returns the etcd key of an object, for callers that guard a write of their own (such
// as an allocation claim) with a compare on the object's ModRevision in one transaction.
func (s *Store) ObjectKey(res *resource.Resource, namespace, name string) (string, error) {
	return s.objectKey(res, namespace, name)
}
