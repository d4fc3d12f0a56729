package service

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"
	"k8s.io/apimachinery/pkg/types"
)

// Key prefixes of the claims, outside the object registry.
const (
	AllocationsPrefix = "/bosun/allocations/"
	ipClaimPrefix     = AllocationsPrefix + "serviceips/"
	portClaimPrefix   = AllocationsPrefix + "nodeports/"
)

// owner is the value of a claim: the Service it belongs to and the resourceVersion of the Service
// the claimer read before claiming (its write carries that version as a precondition).
type owner struct {
	Namespace string    `json:"namespace"`
	Name      string    `json:"name"`
	UID       types.UID `json:"uid"`
	BasedOn   int64     `json:"basedOn,string"`
}

func (o owner) same(p owner) bool {
	return o.Namespace == p.Namespace && o.Name == p.Name && o.UID == p.UID
}

func (o owner) String() string { return o.Namespace + "/" + o.Name }

// claim is one stored claim.
type claim struct {
	key    string
	owner  owner
	modRev int64
}

// claims keeps claims under one prefix.
type claims struct {
	kv     clientv3.KV
	prefix string
}

func (c *claims) key(item string) string { return c.prefix + item }

func (c *claims) item(key string) string { return strings.TrimPrefix(key, c.prefix) }

func decodeClaim(key string, value []byte, modRev int64) (claim, error) {
	var o owner
	if err := json.Unmarshal(value, &o); err != nil {
		return claim{}, fmt.Errorf("decoding claim %s: %w", key, err)
	}
	return claim{key: key, owner: o, modRev: modRev}, nil
}

// claim takes item for o unless another Service holds it. With rebase, a claim o already holds is
// rewritten with o.BasedOn, as the caller is about to write item into the Service. It returns the
// holder when item is taken.
func (c *claims) claim(ctx context.Context, item string, o owner, rebase bool) (holder owner, ok bool, err error) {
	key := c.key(item)
	val, err := json.Marshal(o)
	if err != nil {
		return owner{}, false, err
	}
	for range 5 {
		resp, err := c.kv.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
			Then(clientv3.OpPut(key, string(val))).Else(clientv3.OpGet(key)).Commit()
		if err != nil {
			return owner{}, false, fmt.Errorf("claiming %s: %w", key, err)
		}
		if resp.Succeeded {
			return o, true, nil
		}
		kvs := resp.Responses[0].GetResponseRange().Kvs
		if len(kvs) == 0 {
			continue // released in between
		}
		cur, err := decodeClaim(key, kvs[0].Value, kvs[0].ModRevision)
		if err != nil {
			return owner{}, false, err
		}
		if !cur.owner.same(o) {
			return cur.owner, false, nil
		}
		if !rebase || cur.owner.BasedOn == o.BasedOn {
			return cur.owner, true, nil
		}
		resp, err = c.kv.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(key), "=", cur.modRev)).
			Then(clientv3.OpPut(key, string(val))).Commit()
		if err != nil {
			return owner{}, false, fmt.Errorf("claiming %s: %w", key, err)
		}
		if resp.Succeeded {
			return o, true, nil
		}
	}
	return owner{}, false, fmt.Errorf("claiming %s: too much contention", key)
}

// get returns the claim on item, if any.
func (c *claims) get(ctx context.Context, item string) (claim, bool, error) {
	resp, err := c.kv.Get(ctx, c.key(item))
	if err != nil {
		return claim{}, false, fmt.Errorf("reading claim %s: %w", c.key(item), err)
	}
	if len(resp.Kvs) == 0 {
		return claim{}, false, nil
	}
	cl, err := decodeClaim(string(resp.Kvs[0].Key), resp.Kvs[0].Value, resp.Kvs[0].ModRevision)
	return cl, err == nil, err
}

// list returns every claim under the prefix.
func (c *claims) list(ctx context.Context) ([]claim, error) {
	resp, err := c.kv.Get(ctx, c.prefix, clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("listing claims under %s: %w", c.prefix, err)
	}
	out := make([]claim, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		cl, err := decodeClaim(string(kv.Key), kv.Value, kv.ModRevision)
		if err != nil {
			return nil, err
		}
		out = append(out, cl)
	}
	return out, nil
}

// release deletes cl if neither it nor the Service stored at svcKey changed since they were read
// (svcRev 0: the Service is absent). The caller has checked that the Service at svcRev does not
// use the item and that no write based on an older version can still succeed.
func (c *claims) release(ctx context.Context, cl claim, svcKey string, svcRev int64) (bool, error) {
	resp, err := c.kv.Txn(ctx).If(
		clientv3.Compare(clientv3.ModRevision(cl.key), "=", cl.modRev),
		clientv3.Compare(clientv3.ModRevision(svcKey), "=", svcRev),
	).Then(clientv3.OpDelete(cl.key)).Commit()
	if err != nil {
		return false, fmt.Errorf("releasing %s: %w", cl.key, err)
	}
	return resp.Succeeded, nil
}
