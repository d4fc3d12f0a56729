package scheduler

import (
	"sync"

	"github.com/bosun-gitops/bosun/operator/scheduler/framework"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
)

// podState is where the cache has a pod, and whether only the scheduler knows (assumed: decided
// but the bind not yet seen by the informer).
type podState struct {
	node    string
	assumed bool
}

// nodeCache is the scheduler's view of nodes and the pods bound or assumed bound to them, fed by the
// node and pod informers. The scheduling loop holds mu for a whole cycle (filter, score, assume),
// so a cycle sees one consistent state and an assumed pod counts for the very next pod.
type nodeCache struct {
	mu    sync.Mutex
	nodes map[string]*framework.NodeInfo
	// list holds the nodes whose Node object is known, in a stable order for sampling; index
	// maps a name to its position.
	list  []*framework.NodeInfo
	index map[string]int
	pods  map[types.UID]*podState
}

func newNodeCache() *nodeCache {
	return &nodeCache{nodes: map[string]*framework.NodeInfo{}, index: map[string]int{}, pods: map[types.UID]*podState{}}
}

func (c *nodeCache) nodeInfo(name string) *framework.NodeInfo {
	ni, ok := c.nodes[name]
	if !ok {
		ni = framework.NewNodeInfo(nil)
		c.nodes[name] = ni
	}
	return ni
}

// setNode adds or updates a node.
func (c *nodeCache) setNode(node *corev1.Node) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ni := c.nodeInfo(node.Name)
	ni.SetNode(node)
	if _, ok := c.index[node.Name]; !ok {
		c.index[node.Name] = len(c.list)
		c.list = append(c.list, ni)
	}
}

// removeNode forgets a node; its pods stay accounted under its name until they go (a node
// re-registering under the same name finds them).
func (c *nodeCache) removeNode(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	i, ok := c.index[name]
	if !ok {
		return
	}
	last := len(c.list) - 1
	c.list[i] = c.list[last]
	c.index[c.list[i].Name()] = i
	c.list = c.list[:last]
	delete(c.index, name)
	ni := c.nodes[name]
	if len(ni.Pods) == 0 {
		delete(c.nodes, name)
	} else {
		ni.Node = nil
	}
}

// addPod accounts a pod seen bound by the informer; it confirms (or moves) an assumed pod.
func (c *nodeCache) addPod(pod *corev1.Pod) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.removePodLocked(pod.UID)
	c.nodeInfo(pod.Spec.NodeName).AddPod(framework.NewPodInfo(pod))
	c.pods[pod.UID] = &podState{node: pod.Spec.NodeName}
}

// removePod forgets a pod that was deleted or finished.
func (c *nodeCache) removePod(uid types.UID) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.removePodLocked(uid)
}

func (c *nodeCache) removePodLocked(uid types.UID) {
	ps, ok := c.pods[uid]
	if !ok {
		return
	}
	delete(c.pods, uid)
	if ni, ok := c.nodes[ps.node]; ok {
		ni.RemovePod(uid)
		if ni.Node == nil && len(ni.Pods) == 0 {
			delete(c.nodes, ps.node)
		}
	}
}

// assumeLocked counts pi on node before the bind is visible. c.mu must be held.
func (c *nodeCache) assumeLocked(pi *framework.PodInfo, node string) {
	c.removePodLocked(pi.Pod.UID)
	c.nodeInfo(node).AddPod(pi)
	c.pods[pi.Pod.UID] = &podState{node: node, assumed: true}
}

// forget drops an assumed pod whose bind failed. A pod the informer has meanwhile confirmed stays.
func (c *nodeCache) forget(uid types.UID) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if ps, ok := c.pods[uid]; ok && ps.assumed {
		c.removePodLocked(uid)
	}
}

// isAssumed reports whether the pod is assumed or bound in the cache (then it must not be
// scheduled again).
func (c *nodeCache) isKnown(uid types.UID) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.pods[uid]
	return ok
}

// podCount returns the number of pods (bound or assumed) on node, for tests.
func (c *nodeCache) podCount(node string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if ni, ok := c.nodes[node]; ok {
		return len(ni.Pods)
	}
	return 0
}
