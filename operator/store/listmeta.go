package store

import (
	"context"
	"fmt"
	"strconv"

	"github.com/bosun-gitops/bosun/internal/resource"
	clientv3 "go.etcd.io/etcd/client/v3"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// listMetadataChunk bounds one etcd read of ListMetadata.
const listMetadataChunk = 1000

// ListMetadata returns the metadata of every object of res in namespace ("" = all namespaces,
// and always for cluster-scoped kinds), in key order, read at one revision, which it returns.
// It decodes only metadata: for callers that need the names, annotations and resourceVersions
// of many objects (Git sync's inventory), it costs a fraction of List.
func (s *Store) ListMetadata(ctx context.Context, res *resource.Resource, namespace string) ([]*metav1.PartialObjectMetadata, int64, error) {
	prefix := s.listPrefix(res, namespace)
	end := clientv3.GetPrefixRangeEnd(prefix)
	gvk := res.GroupVersionKind()
	var out []*metav1.PartialObjectMetadata
	start, rev := prefix, int64(0)
	for {
		opts := []clientv3.OpOption{clientv3.WithRange(end), clientv3.WithLimit(listMetadataChunk)}
		if rev > 0 {
			opts = append(opts, clientv3.WithRev(rev))
		}
		resp, err := s.client.Get(ctx, start, opts...)
		if err != nil {
			return nil, 0, etcdError(fmt.Sprintf("listing %s", res), err)
		}
		if rev == 0 {
			rev = resp.Header.Revision
			out = make([]*metav1.PartialObjectMetadata, 0, resp.Count)
		}
		for _, kv := range resp.Kvs {
			m := &metav1.PartialObjectMetadata{}
			if err := decodeMetadata(kv.Value, &m.ObjectMeta); err != nil {
				return nil, 0, apierrors.NewInternalError(fmt.Errorf("decoding stored %s: %w", res, err))
			}
			m.SetGroupVersionKind(gvk)
			m.ResourceVersion = strconv.FormatInt(kv.ModRevision, 10)
			out = append(out, m)
		}
		if !resp.More || len(resp.Kvs) == 0 {
			return out, rev, nil
		}
		start = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
}
