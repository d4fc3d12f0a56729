package operator

import (
	"log/slog"
	"maps"

	"github.com/bosun-gitops/bosun/operator/controllers"
	"github.com/bosun-gitops/bosun/operator/controllers/daemonset"
	"github.com/bosun-gitops/bosun/operator/controllers/deployment"
	"github.com/bosun-gitops/bosun/operator/controllers/endpoints"
	"github.com/bosun-gitops/bosun/operator/controllers/gc"
	"github.com/bosun-gitops/bosun/operator/controllers/namespace"
	"github.com/bosun-gitops/bosun/operator/controllers/nodeipam"
	"github.com/bosun-gitops/bosun/operator/controllers/nodelifecycle"
	"github.com/bosun-gitops/bosun/operator/controllers/replicaset"
	"github.com/bosun-gitops/bosun/operator/controllers/service"
	"github.com/bosun-gitops/bosun/operator/events"
	"github.com/bosun-gitops/bosun/operator/informer"
	"github.com/bosun-gitops/bosun/operator/scheduler"
	"github.com/bosun-gitops/bosun/operator/store"
	"k8s.io/utils/clock"
)

// Controllers lists every reconciler the leader runs, by name; the scheduler is one of them.
func Controllers() map[string]controllers.Constructor {
	return map[string]controllers.Constructor{
		replicaset.Name:    replicaset.New,
		replicaset.RCName:  replicaset.NewReplicationController,
		deployment.Name:    deployment.New,
		daemonset.Name:     daemonset.New,
		service.Name:       service.New,
		endpoints.Name:     endpoints.New,
		nodeipam.Name:      nodeipam.New,
		nodelifecycle.Name: nodelifecycle.New,
		gc.Name:            gc.New,
		namespace.Name:     namespace.New,
		scheduler.Name:     scheduler.New,
	}
}

// buildControllers wires the shared informers, the event recorder and every controller.
// extra adds constructors that need more than the shared Context (the machine controller). The
// factory is returned for readers of the controllers' caches (the health tracker).
func buildControllers(st *store.Store, log *slog.Logger, extra map[string]controllers.Constructor) (*controllers.Set, *events.StoreRecorder, *informer.Factory, error) {
	factory := informer.NewFactory(st, 0)
	clk := clock.RealClock{}
	recorder := events.NewRecorder(st, "bosun-operator", log, clk)
	c := &controllers.Context{
		Store:     st,
		Informers: factory,
		Recorder:  recorder,
		Cluster:   controllers.ClusterFromInformer(factory),
		Logger:    log.With("component", "controllers"),
		Clock:     clk,
		Workers:   4,
	}
	all := Controllers()
	maps.Copy(all, extra)
	set, err := controllers.Build(c, all)
	if err != nil {
		return nil, nil, nil, err
	}
	return set, recorder, factory, nil
}
