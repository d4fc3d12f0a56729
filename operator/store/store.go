package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/bosun-gitops/bosun/internal/resource"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/validation/path"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Defaults of Options.
const (
	DefaultPrefix           = "/bosun/registry"
	DefaultMaxTxnOps        = 128              // etcd's --max-txn-ops default
	DefaultMaxRequestBytes  = 1536 * 1024      // etcd's --max-request-bytes default (1.5 MiB)
	DefaultMaxTxnBytes      = 1024 * 1024      // leaves room for keys, compares and framing
	DefaultBatchConcurrency = 8                // txns in flight during a Batch
	DefaultWatchBuffer      = 1024             // events buffered per watcher
	DefaultWatchSendTimeout = 10 * time.Second // how long a full watcher may stall
	DefaultBookmarkInterval = time.Minute      // bookmark period when asked for
	maxUpdateAttempts       = 32               // optimistic retries of unconditional writes
	compactorKeepDefault    = int64(10000)     // revisions RunCompactor keeps by default
	compactorIntervalDef    = 5 * time.Minute  // RunCompactor's default period
	generateNameSuffixLen   = 5                // as Kubernetes
	generateNameMaxBaseLen  = 63 - generateNameSuffixLen
)

// Options tune a Store; the zero value gives Kubernetes-like defaults.
type Options struct {
	// Prefix of every key; default "/bosun/registry".
	Prefix string
	// Logger; default slog.Default().
	Logger *slog.Logger
	// MaxTxnOps and MaxTxnBytes bound one Batch transaction (etcd: 128 ops, 1.5 MiB requests).
	MaxTxnOps   int
	MaxTxnBytes int
	// MaxObjectBytes is the largest encoded object accepted; larger ones fail with
	// RequestEntityTooLarge before reaching etcd. Default 1.5 MiB, etcd's request limit.
	MaxObjectBytes int
	// BatchConcurrency is the number of Batch transactions in flight; default 8.
	BatchConcurrency int
	// WatchBuffer is the number of events buffered per watcher; WatchSendTimeout how long a
	// watcher may leave its buffer full before the watch ends with an error.
	WatchBuffer      int
	WatchSendTimeout time.Duration
	// BookmarkInterval is how often a watch with Bookmarks asks etcd for a progress
	// notification; default one minute.
	BookmarkInterval time.Duration
	// MediaType is how values are written: MediaTypeProtobuf (the default) or MediaTypeJSON,
	// which a Bosun older than protobuf values can read (operators sharing an etcd cluster are
	// upgraded one at a time). Both are always read.
	MediaType string
}

func (o Options) withDefaults() Options {
	if o.Prefix == "" {
		o.Prefix = DefaultPrefix
	}
	o.Prefix = strings.TrimRight(o.Prefix, "/")
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.MediaType == "" {
		o.MediaType = MediaTypeProtobuf
	}
	if o.MaxTxnOps <= 0 {
		o.MaxTxnOps = DefaultMaxTxnOps
	}
	if o.MaxTxnBytes <= 0 {
		o.MaxTxnBytes = DefaultMaxTxnBytes
	}
	if o.MaxObjectBytes <= 0 {
		o.MaxObjectBytes = DefaultMaxRequestBytes
	}
	if o.BatchConcurrency <= 0 {
		o.BatchConcurrency = DefaultBatchConcurrency
	}
	if o.WatchBuffer <= 0 {
		o.WatchBuffer = DefaultWatchBuffer
	}
	if o.WatchSendTimeout <= 0 {
		o.WatchSendTimeout = DefaultWatchSendTimeout
	}
	if o.BookmarkInterval <= 0 {
		o.BookmarkInterval = DefaultBookmarkInterval
	}
	return o
}

// Store reads and writes objects in etcd. It is safe for concurrent use.
type Store struct {
	client  *clientv3.Client
	opts    Options
	log     *slog.Logger
	decodes *decodeCache // shared by the watches
}

// New returns a Store using client. The caller keeps ownership of the client.
func New(client *clientv3.Client, opts Options) *Store {
	opts = opts.withDefaults()
	return &Store{client: client, opts: opts, log: opts.Logger.With("component", "store"), decodes: newDecodeCache(decodeCacheSize)}
}

// Client returns the etcd client the store uses (for leader election and health checks).
func (s *Store) Client() *clientv3.Client { return s.client }

// resourcePrefix is the key prefix of all objects of res, ending in "/".
func (s *Store) resourcePrefix(res *resource.Resource) string {
	group := res.Group
	if group == "" {
		group = "core"
	}
	return s.opts.Prefix + "/" + group + "/" + res.Resource + "/"
}

// listPrefix is the key prefix of res's objects in namespace ("" = all namespaces).
func (s *Store) listPrefix(res *resource.Resource, namespace string) string {
	p := s.resourcePrefix(res)
	if res.Namespaced && namespace != "" {
		p += namespace + "/"
	}
	return p
}

// objectKey validates namespace and name and returns the object's key.
func (s *Store) objectKey(res *resource.Resource, namespace, name string) (string, error) {
	if name == "" {
		return "", apierrors.NewBadRequest(fmt.Sprintf("%s: name is required", res))
	}
	if msgs := path.IsValidPathSegmentName(name); len(msgs) > 0 {
		return "", apierrors.NewInvalid(res.GroupVersionKind().GroupKind(), name,
			field.ErrorList{field.Invalid(field.NewPath("metadata", "name"), name, strings.Join(msgs, ", "))})
	}
	if !res.Namespaced {
		return s.resourcePrefix(res) + name, nil
	}
	if namespace == "" {
		return "", apierrors.NewBadRequest(fmt.Sprintf("%s %q: namespace is required for a namespaced resource", res, name))
	}
	if msgs := path.IsValidPathSegmentName(namespace); len(msgs) > 0 {
		return "", apierrors.NewInvalid(res.GroupVersionKind().GroupKind(), name,
			field.ErrorList{field.Invalid(field.NewPath("metadata", "namespace"), namespace, strings.Join(msgs, ", "))})
	}
	return s.resourcePrefix(res) + namespace + "/" + name, nil
}

// encode returns the stored form of obj (see codec.go), without resourceVersion: the revision
// is etcd's, not part of the value. obj is modified.
func (s *Store) encode(res *resource.Resource, key string, obj resource.Object) ([]byte, error) {
	res.SetTypeMeta(obj)
	obj.SetResourceVersion("")
	data, err := marshal(obj, s.opts.MediaType)
	if err != nil {
		return nil, apierrors.NewInternalError(fmt.Errorf("encoding %s %q: %w", res, obj.GetName(), err))
	}
	if len(data)+len(key) > s.opts.MaxObjectBytes {
		return nil, tooLarge(res, obj.GetName(), len(data), s.opts.MaxObjectBytes)
	}
	return data, nil
}

func tooLarge(res *resource.Resource, name string, size, limit int) error {
	return apierrors.NewRequestEntityTooLargeError(fmt.Sprintf(
		"%s %q is %d bytes encoded, over the %d-byte limit of an etcd request; split the data (for example into several ConfigMaps)",
		res, name, size, limit))
}

// decode turns a stored value into a typed object with resourceVersion rev.
func decode(res *resource.Resource, data []byte, rev int64) (resource.Object, error) {
	obj := res.New()
	if err := unmarshal(data, obj); err != nil {
		return nil, apierrors.NewInternalError(fmt.Errorf("decoding stored %s: %w", res, err))
	}
	res.SetTypeMeta(obj)
	obj.SetResourceVersion(strconv.FormatInt(rev, 10))
	return obj, nil
}

// parseRV parses a resourceVersion; "" is 0.
func parseRV(res *resource.Resource, name, rv string) (int64, error) {
	if rv == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(rv, 10, 64)
	if err != nil || n < 0 {
		return 0, apierrors.NewBadRequest(fmt.Sprintf("%s %q: invalid resourceVersion %q: must be a decimal etcd revision", res, name, rv))
	}
	return n, nil
}

func copyObject(obj resource.Object) resource.Object {
	return obj.DeepCopyObject().(resource.Object)
}

// storageError is the StatusError served to clients for an etcd failure; it also unwraps to the
// etcd error so that callers can test for context.Canceled and the like.
type storageError struct {
	*apierrors.StatusError
	err error
}

func (e *storageError) Unwrap() []error { return []error{e.StatusError, e.err} }

// etcdError converts an etcd client error into a StatusError, wrapping it with what was done.
func etcdError(what string, err error) error {
	switch {
	case errors.Is(err, rpctypes.ErrRequestTooLarge) || errors.Is(err, rpctypes.ErrGRPCRequestTooLarge):
		return &storageError{apierrors.NewRequestEntityTooLargeError(fmt.Sprintf("%s: %v", what, err)), err}
	case errors.Is(err, rpctypes.ErrCompacted) || errors.Is(err, rpctypes.ErrGRPCCompacted):
		return &storageError{apierrors.NewResourceExpired(fmt.Sprintf("%s: %v; list again", what, err)), err}
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, rpctypes.ErrTimeout) || errors.Is(err, rpctypes.ErrGRPCTimeout):
		return &storageError{apierrors.NewTimeoutError(fmt.Sprintf("%s: %v", what, err), 1), err}
	}
	return &storageError{apierrors.NewInternalError(fmt.Errorf("%s: %w", what, err)), err}
}

// conflict is Kubernetes' optimistic-concurrency error.
func conflict(res *resource.Resource, name string) error {
	return apierrors.NewConflict(res.GroupResource(), name,
		errors.New("the object has been modified; please apply your changes to the latest version and try again"))
}

// Get returns one object.
func (s *Store) Get(ctx context.Context, res *resource.Resource, namespace, name string) (resource.Object, error) {
	key, err := s.objectKey(res, namespace, name)
	if err != nil {
		return nil, err
	}
	obj, _, err := s.read(ctx, res, key, name)
	return obj, err
}

// read returns the object at key and its ModRevision, or NotFound.
func (s *Store) read(ctx context.Context, res *resource.Resource, key, name string) (resource.Object, []byte, error) {
	resp, err := s.client.Get(ctx, key)
	if err != nil {
		return nil, nil, etcdError(fmt.Sprintf("reading %s %q", res, name), err)
	}
	if len(resp.Kvs) == 0 {
		return nil, nil, apierrors.NewNotFound(res.GroupResource(), name)
	}
	kv := resp.Kvs[0]
	obj, err := decode(res, kv.Value, kv.ModRevision)
	return obj, kv.Value, err
}

// CurrentRevision returns etcd's current revision.
func (s *Store) CurrentRevision(ctx context.Context) (int64, error) {
	// A Get of one absent key is the cheapest linearizable read that returns the revision.
	resp, err := s.client.Get(ctx, s.opts.Prefix+"/", clientv3.WithCountOnly(), clientv3.WithLimit(1))
	if err != nil {
		return 0, etcdError("reading the current revision", err)
	}
	return resp.Header.Revision, nil
}

// now is a creation/deletion timestamp as it reads back from JSON (seconds, local time).
func now() metav1.Time { return metav1.Unix(time.Now().Unix(), 0) }
