package nodeagent

import (
	"context"
	"errors"
	"log/slog"

	"github.com/bosun-gitops/bosun/nodeagent/network"
	"github.com/bosun-gitops/bosun/nodeagent/proxy"
	"github.com/bosun-gitops/bosun/nodeagent/routes"
)

// Cleanup removes what a stopped agent left in this machine's kernel: the service proxy's
// iptables chains and nftables tables, the pod routes and masquerade rule, and the pods' bridge.
// Nothing that is not Bosun's is touched. The bootstrap's teardown runs it (`bosun agent
// cleanup`) when a machine is retired, after its pods were evicted and the agent stopped.
func Cleanup(ctx context.Context, log *slog.Logger) error {
	var errs []error
	n, err := proxy.RemoveAll(ctx)
	errs = append(errs, err)
	log.Info("removed the service proxy's rules", "count", n)
	n, err = routes.RemoveAll()
	errs = append(errs, err)
	log.Info("removed the pod routes and masquerade rule", "count", n)
	removed, err := network.RemoveBridge("")
	errs = append(errs, err)
	if removed {
		log.Info("removed the pods' bridge", "bridge", network.DefaultBridgeName)
	}
	return errors.Join(errs...)
}
