package podstest

import (
	"context"
	"fmt"
	"sort"
	"sync"

	"github.com/bosun-gitops/bosun/nodeagent/pods"
)

// Network is an in-memory pods.Network handing out 10.244.0.x addresses.
type Network struct {
	calls *Calls

	mu     sync.Mutex
	pods   map[string]netPod
	nextIP int
	err    error
}

type netPod struct {
	ref   pods.PodRef
	ip    string
	ports []pods.PortMapping
}

var _ pods.Network = (*Network)(nil)

// NewNetwork returns a fake network that logs its calls into calls (may be nil).
func NewNetwork(calls *Calls) *Network {
	if calls == nil {
		calls = &Calls{}
	}
	return &Network{calls: calls, pods: map[string]netPod{}, nextIP: 2}
}

// SetError makes SetupPod fail with err (nil clears it).
func (n *Network) SetError(err error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.err = err
}

func (n *Network) SetupPod(ctx context.Context, pod pods.PodRef, ports []pods.PortMapping) (pods.PodNetwork, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.calls.add("SetupPod " + pod.UID)
	if n.err != nil {
		return pods.PodNetwork{}, n.err
	}
	p, ok := n.pods[pod.UID]
	if !ok {
		p = netPod{ref: pod, ip: fmt.Sprintf("10.244.0.%d", n.nextIP), ports: ports}
		n.nextIP++
		n.pods[pod.UID] = p
	}
	return pods.PodNetwork{NetnsPath: "/run/bosun/netns/" + pod.UID, IP: p.ip}, nil
}

func (n *Network) TeardownPod(ctx context.Context, pod pods.PodRef) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.calls.add("TeardownPod " + pod.UID)
	delete(n.pods, pod.UID)
	return nil
}

func (n *Network) ListPods(ctx context.Context) ([]pods.PodRef, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := make([]pods.PodRef, 0, len(n.pods))
	for _, p := range n.pods {
		out = append(out, p.ref)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].UID < out[j].UID })
	return out, nil
}

// Ports returns the hostPorts a pod was set up with, and whether it has a network.
func (n *Network) Ports(uid string) ([]pods.PortMapping, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	p, ok := n.pods[uid]
	return p.ports, ok
}
