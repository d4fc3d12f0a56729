package apiserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"

	"github.com/bosun-gitops/bosun/internal/resource"
	"github.com/bosun-gitops/bosun/operator/store"
	"github.com/prometheus/client_golang/prometheus"
)

// Store is the subset of the object store that the API server needs (*store.Store implements it).
type Store interface {
	Get(ctx context.Context, res *resource.Resource, namespace, name string) (resource.Object, error)
	List(ctx context.Context, res *resource.Resource, namespace string, opts store.ListOptions) (*store.ListResult, error)
	Create(ctx context.Context, res *resource.Resource, obj resource.Object) (resource.Object, error)
	Update(ctx context.Context, res *resource.Resource, obj resource.Object) (resource.Object, error)
	UpdateStatus(ctx context.Context, res *resource.Resource, obj resource.Object) (resource.Object, error)
	Delete(ctx context.Context, res *resource.Resource, namespace, name string, opts store.DeleteOptions) (resource.Object, error)
	Watch(ctx context.Context, res *resource.Resource, namespace string, opts store.WatchOptions) (<-chan store.Event, error)
	CurrentRevision(ctx context.Context) (int64, error)
}

var _ Store = (*store.Store)(nil)

// Config configures the API server.
type Config struct {
	// Listen is the TCP address to serve on, e.g. "127.0.0.1:6443"; port 0 picks a free port.
	Listen string
	// DataDir holds the PKI (DataDir/pki), the admin token hash and admin.kubeconfig.
	DataDir string
	// ServerNames are extra host names and IP addresses for the serving certificate; localhost,
	// 127.0.0.1 and the listen address are always included.
	ServerNames []string
	// Store is where objects live.
	Store Store
	// Logger receives access logs and errors; nil discards them.
	Logger *slog.Logger
	// Metrics registers the server's request and watch metrics and is served on /metrics (admin
	// only); nil uses a private registry.
	Metrics *prometheus.Registry
	// Hooks, if set, serves /hooks/... without credentials: webhook deliveries, which the
	// handler verifies by their HMAC signature.
	Hooks http.Handler
	// Plans, if set, serves POST /apis/bosun.dev/v1alpha1/plans to admins (system:masters).
	Plans http.Handler
}

// PlansPath is where Config.Plans is served.
const PlansPath = "/apis/bosun.dev/v1alpha1/plans"

// Validate reports the first invalid field.
func (c Config) Validate() error {
	if c.Listen == "" {
		return errors.New("apiserver config: Listen is required (for example 127.0.0.1:6443)")
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		return fmt.Errorf("apiserver config: Listen %q: %w", c.Listen, err)
	}
	if c.DataDir == "" {
		return errors.New("apiserver config: DataDir is required")
	}
	if c.Store == nil {
		return errors.New("apiserver config: Store is required")
	}
	return nil
}
