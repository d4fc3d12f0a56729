package store

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/bosun-gitops/bosun/internal/resource"
	clientv3 "go.etcd.io/etcd/client/v3"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

// continueToken is the opaque List continuation: the revision the first page was read at (so
// every page sees the same snapshot, as in Kubernetes) and the key to resume from.
type continueToken struct {
	Rev   int64  `json:"rv"`
	Start string `json:"start"`
}

func encodeContinue(rev int64, start string) string {
	data, _ := json.Marshal(continueToken{Rev: rev, Start: start})
	return base64.RawURLEncoding.EncodeToString(data)
}

func decodeContinue(s, prefix string) (continueToken, error) {
	var tok continueToken
	data, err := base64.RawURLEncoding.DecodeString(s)
	if err == nil {
		err = json.Unmarshal(data, &tok)
	}
	if err != nil || tok.Rev <= 0 || !strings.HasPrefix(tok.Start, prefix) {
		return continueToken{}, apierrors.NewBadRequest(fmt.Sprintf("invalid continue token %q: pass the token of the previous page of the same list", s))
	}
	return tok, nil
}

// List returns the objects of res in namespace ("" = all namespaces, and always for
// cluster-scoped kinds) that match the selectors, in key order. With a Limit it returns at most
// that many and a Continue token; the following pages are read at the first page's revision, so
// a page whose revision has been compacted fails with "410 Gone" (ResourceExpired).
func (s *Store) List(ctx context.Context, res *resource.Resource, namespace string, opts ListOptions) (*ListResult, error) {
	m, err := newMatcher(res, opts.LabelSelector, opts.FieldSelector)
	if err != nil {
		return nil, err
	}
	prefix := s.listPrefix(res, namespace)
	end := clientv3.GetPrefixRangeEnd(prefix)
	start, rev := prefix, int64(0)
	if opts.Continue != "" {
		tok, err := decodeContinue(opts.Continue, prefix)
		if err != nil {
			return nil, err
		}
		start, rev = tok.Start, tok.Rev
	}
	if opts.Limit < 0 {
		return nil, apierrors.NewBadRequest(fmt.Sprintf("invalid limit %d: must be 0 (no limit) or more", opts.Limit))
	}

	out := &ListResult{}
	// Read in chunks: the limit, or larger ones when a selector may drop objects.
	chunk := opts.Limit
	if chunk > 0 && !m.everything() && chunk < 256 {
		chunk = 256
	}
	for {
		getOpts := []clientv3.OpOption{clientv3.WithRange(end)}
		if rev > 0 {
			getOpts = append(getOpts, clientv3.WithRev(rev))
		}
		if chunk > 0 {
			getOpts = append(getOpts, clientv3.WithLimit(chunk))
		}
		resp, err := s.client.Get(ctx, start, getOpts...)
		if err != nil {
			return nil, etcdError(fmt.Sprintf("listing %s", res), err)
		}
		if rev == 0 {
			rev = resp.Header.Revision
		}
		for i, kv := range resp.Kvs {
			obj, err := decode(res, kv.Value, kv.ModRevision)
			if err != nil {
				return nil, err
			}
			if !m.matches(obj) {
				continue
			}
			out.Items = append(out.Items, obj)
			if opts.Limit > 0 && int64(len(out.Items)) == opts.Limit {
				if i < len(resp.Kvs)-1 || resp.More {
					out.Continue = encodeContinue(rev, string(kv.Key)+"\x00")
				}
				out.ResourceVersion = rev
				return out, nil
			}
		}
		if !resp.More || len(resp.Kvs) == 0 {
			break
		}
		start = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
	out.ResourceVersion = rev
	return out, nil
}

// listRaw reads every object of res in namespace at the current revision (for Watch's initial
// state).
func (s *Store) listRaw(ctx context.Context, res *resource.Resource, namespace string) ([]resource.Object, int64, error) {
	prefix := s.listPrefix(res, namespace)
	resp, err := s.client.Get(ctx, prefix, clientv3.WithPrefix())
	if err != nil {
		return nil, 0, etcdError(fmt.Sprintf("listing %s", res), err)
	}
	objs := make([]resource.Object, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		obj, err := decode(res, kv.Value, kv.ModRevision)
		if err != nil {
			return nil, 0, err
		}
		objs = append(objs, obj)
	}
	return objs, resp.Header.Revision, nil
}
