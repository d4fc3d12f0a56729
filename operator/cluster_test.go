package operator

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bosun-gitops/bosun/internal/testutil"
	"github.com/bosun-gitops/bosun/operator/simnodes"
	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
)

func deploymentYAML(name string, replicas int, image string, extra string) string {
	return fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata: {name: %s, namespace: default}
spec:
  replicas: %d
  selector: {matchLabels: {app: %s}}
%s  template:
    metadata: {labels: {app: %s}}
    spec:
      containers:
        - name: app
          image: %s
          resources: {requests: {cpu: 100m, memory: 64Mi}}
`, name, replicas, name, extra, name, image)
}

func nodes(n int, prefix string) []simnodes.NodeSpec {
	out := make([]simnodes.NodeSpec, n)
	for i := range out {
		out[i] = simnodes.NodeSpec{Name: fmt.Sprintf("%s-%d", prefix, i), CPU: "4", Memory: "8Gi"}
	}
	return out
}

func newTestCluster(t *testing.T) *testCluster {
	t.Helper()
	if testing.Short() {
		t.Skip("runs a whole operator")
	}
	repo := testutil.NewGitRepo(t)
	repo.Write(map[string]string{"README.md": "test repository\n"})
	repo.CommitAndPush("empty")
	return startCluster(t, repo, filepath.Join(t.TempDir(), "data"))
}

// TestScaleThroughGit scales a Deployment up and down through commits and checks that pods are
// created, scheduled on the simulated nodes and removed.
func TestScaleThroughGit(t *testing.T) {
	c := newTestCluster(t)
	c.simulate(nodes(3, "node")...)
	for _, n := range []int{3, 7, 1, 0, 2} {
		c.push(fmt.Sprintf("web: %d replicas", n), map[string]string{"apps/web.yaml": deploymentYAML("web", n, "busybox:1.36", "")})
		c.eventually(60*time.Second, fmt.Sprintf("%d running web pods", n), func() error { return c.runningPods("default", "app=web", n) })
	}
	// Spread: with 2 replicas on 3 equal nodes no node holds both.
	pods := c.pods("default", "app=web")
	if pods[0].Spec.NodeName == pods[1].Spec.NodeName {
		t.Errorf("both replicas on %s; the scheduler should spread pods of one owner", pods[0].Spec.NodeName)
	}
}

// TestRollingUpdateThroughGit changes a Deployment's image through Git and records every pod
// state the API reports: ready pods never drop below replicas - maxUnavailable and pods never
// exceed replicas + maxSurge.
func TestRollingUpdateThroughGit(t *testing.T) {
	c := newTestCluster(t)
	c.simulate(nodes(3, "node")...)
	const replicas, maxUnavailable, maxSurge = 4, 1, 1
	strategy := fmt.Sprintf("  strategy: {type: RollingUpdate, rollingUpdate: {maxUnavailable: %d, maxSurge: %d}}\n", maxUnavailable, maxSurge)
	c.push("web v1", map[string]string{"apps/web.yaml": deploymentYAML("web", replicas, "busybox:1.36", strategy)})
	c.eventually(60*time.Second, "v1 ready", func() error {
		if err := c.runningPods("default", "app=web", replicas); err != nil {
			return err
		}
		for _, p := range c.pods("default", "app=web") {
			if !isReady(&p) {
				return fmt.Errorf("pod %s not ready", p.Name)
			}
		}
		return nil
	})

	// Record from a watch: the set of live pods and which are ready, after every event.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w, err := c.client.CoreV1().Pods("default").Watch(ctx, metav1.ListOptions{LabelSelector: "app=web"})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	live := map[string]*corev1.Pod{}
	for _, p := range c.pods("default", "app=web") {
		live[p.Name] = p.DeepCopy()
	}
	minReady, maxTotal := replicas, replicas
	go func() {
		for ev := range w.ResultChan() {
			p, ok := ev.Object.(*corev1.Pod)
			if !ok {
				continue
			}
			mu.Lock()
			if ev.Type == watch.Deleted || p.DeletionTimestamp != nil {
				delete(live, p.Name)
			} else {
				live[p.Name] = p
			}
			ready := 0
			for _, lp := range live {
				if isReady(lp) {
					ready++
				}
			}
			minReady = min(minReady, ready)
			maxTotal = max(maxTotal, len(live))
			mu.Unlock()
		}
	}()

	c.push("web v2", map[string]string{"apps/web.yaml": deploymentYAML("web", replicas, "busybox:1.37", strategy)})
	c.eventually(90*time.Second, "v2 rolled out", func() error {
		pods := c.pods("default", "app=web")
		if len(pods) != replicas {
			return fmt.Errorf("%d pods", len(pods))
		}
		for _, p := range pods {
			if p.Spec.Containers[0].Image != "busybox:1.37" || !isReady(&p) {
				return fmt.Errorf("pod %s image %s ready %v", p.Name, p.Spec.Containers[0].Image, isReady(&p))
			}
		}
		return nil
	})
	time.Sleep(500 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	t.Logf("during the rollout: fewest ready %d (floor %d), most pods %d (ceiling %d)", minReady, replicas-maxUnavailable, maxTotal, replicas+maxSurge)
	if minReady < replicas-maxUnavailable {
		t.Errorf("ready pods dropped to %d, below replicas - maxUnavailable = %d", minReady, replicas-maxUnavailable)
	}
	if maxTotal > replicas+maxSurge {
		t.Errorf("pods rose to %d, above replicas + maxSurge = %d", maxTotal, replicas+maxSurge)
	}
}

// TestDaemonSetFollowsNodes checks one daemon pod per node as nodes join and leave.
func TestDaemonSetFollowsNodes(t *testing.T) {
	c := newTestCluster(t)
	c.simulate(nodes(2, "node")...)
	c.push("agent daemonset", map[string]string{"system/ds.yaml": `apiVersion: apps/v1
kind: DaemonSet
metadata: {name: logger, namespace: default}
spec:
  selector: {matchLabels: {app: logger}}
  template:
    metadata: {labels: {app: logger}}
    spec:
      containers: [{name: logger, image: busybox:1.36}]
`})
	onEveryNode := func(want ...string) func() error {
		return func() error {
			pods := c.pods("default", "app=logger")
			got := map[string]bool{}
			for _, p := range pods {
				got[p.Spec.NodeName] = true
			}
			if len(pods) != len(want) || len(got) != len(want) {
				return fmt.Errorf("%d daemon pods on %v, want one on each of %v", len(pods), got, want)
			}
			for _, n := range want {
				if !got[n] {
					return fmt.Errorf("no daemon pod on %s (have %v)", n, got)
				}
			}
			return nil
		}
	}
	c.eventually(60*time.Second, "daemon pods on 2 nodes", onEveryNode("node-0", "node-1"))
	if err := c.sim.AddNodes(context.Background(), simnodes.NodeSpec{Name: "late"}); err != nil {
		t.Fatal(err)
	}
	c.eventually(60*time.Second, "daemon pod on the new node", onEveryNode("node-0", "node-1", "late"))
	if err := c.sim.RemoveNode(context.Background(), "node-0"); err != nil {
		t.Fatal(err)
	}
	c.eventually(60*time.Second, "daemon pod gone with its node", onEveryNode("node-1", "late"))
}

// TestNodeLeaseExpiry stops a node's heartbeat: it turns NotReady, is tainted, and its pods are
// evicted and recreated on the other nodes.
func TestNodeLeaseExpiry(t *testing.T) {
	c := newTestCluster(t)
	c.simulate(nodes(3, "node")...)
	c.push("fast node monitoring", map[string]string{
		"bosun.yaml": `apiVersion: bosun.dev/v1alpha1
kind: Cluster
metadata: {name: test}
spec: {nodeMonitorGracePeriod: 20s, podEvictionTimeout: 2s}
`,
		"apps/web.yaml": deploymentYAML("web", 6, "busybox:1.36", ""),
	})
	c.eventually(60*time.Second, "6 running pods", func() error { return c.runningPods("default", "app=web", 6) })
	victim := c.pods("default", "app=web")[0].Spec.NodeName
	c.sim.StopHeartbeat(victim)
	c.eventually(60*time.Second, victim+" NotReady and tainted", func() error {
		n, err := c.client.CoreV1().Nodes().Get(context.Background(), victim, metav1.GetOptions{})
		if err != nil {
			return err
		}
		ready, tainted := true, false
		for _, cond := range n.Status.Conditions {
			if cond.Type == corev1.NodeReady && cond.Status != corev1.ConditionTrue {
				ready = false
			}
		}
		for _, taint := range n.Spec.Taints {
			if taint.Key == corev1.TaintNodeUnreachable {
				tainted = true
			}
		}
		if ready || !tainted {
			return fmt.Errorf("ready=%v tainted=%v", ready, tainted)
		}
		return nil
	})
	c.eventually(90*time.Second, "pods replaced on the other nodes", func() error {
		if err := c.runningPods("default", "app=web", 6); err != nil {
			return err
		}
		for _, p := range c.pods("default", "app=web") {
			if p.Spec.NodeName == victim {
				return fmt.Errorf("pod %s still on %s", p.Name, victim)
			}
		}
		return nil
	})
}

// TestNodeRecoversAfterLeaseExpiry stops a node's heartbeat past the grace period (its pods are
// marked not ready and leave the Service's ready addresses), then resumes it: the node is Ready
// again and the same pods are Ready and back among the Service's addresses, without an agent
// restart.
func TestNodeRecoversAfterLeaseExpiry(t *testing.T) {
	c := newTestCluster(t)
	c.simulate(nodes(3, "node")...)
	c.push("web behind a service, 20 s grace", map[string]string{
		"bosun.yaml": `apiVersion: bosun.dev/v1alpha1
kind: Cluster
metadata: {name: test}
spec: {nodeMonitorGracePeriod: 20s}
`,
		"apps/web.yaml": deploymentYAML("web", 6, "busybox:1.36", ""),
		"apps/svc.yaml": serviceYAML("web", false),
	})
	ctx := context.Background()
	// addresses returns the ready and not-ready pod IPs of the web Service's Endpoints.
	addresses := func() (ready, notReady map[string]bool, err error) {
		ep, err := c.client.CoreV1().Endpoints("default").Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			return nil, nil, err
		}
		ready, notReady = map[string]bool{}, map[string]bool{}
		for _, ss := range ep.Subsets {
			for _, a := range ss.Addresses {
				ready[a.IP] = true
			}
			for _, a := range ss.NotReadyAddresses {
				notReady[a.IP] = true
			}
		}
		return ready, notReady, nil
	}
	allReadyInEndpoints := func() error {
		pods := c.pods("default", "app=web")
		ready, notReady, err := addresses()
		if err != nil {
			return err
		}
		for _, p := range pods {
			if !isReady(&p) {
				return fmt.Errorf("pod %s on %s not ready", p.Name, p.Spec.NodeName)
			}
			if !ready[p.Status.PodIP] {
				return fmt.Errorf("pod %s (%s) not among the ready addresses %v (not ready: %v)", p.Name, p.Status.PodIP, ready, notReady)
			}
		}
		if len(ready) != len(pods) || len(notReady) != 0 {
			return fmt.Errorf("%d pods; addresses ready %v, not ready %v", len(pods), ready, notReady)
		}
		return nil
	}
	c.eventually(60*time.Second, "6 running pods", func() error { return c.runningPods("default", "app=web", 6) })
	c.eventually(60*time.Second, "6 ready addresses", allReadyInEndpoints)
	before := map[string]string{} // pod UID -> IP
	for _, p := range c.pods("default", "app=web") {
		before[string(p.UID)] = p.Status.PodIP
	}
	victim := c.pods("default", "app=web")[0].Spec.NodeName
	onVictim := func() []corev1.Pod {
		var out []corev1.Pod
		for _, p := range c.pods("default", "app=web") {
			if p.Spec.NodeName == victim {
				out = append(out, p)
			}
		}
		return out
	}
	nodeReady := func() (corev1.ConditionStatus, bool, error) {
		n, err := c.client.CoreV1().Nodes().Get(ctx, victim, metav1.GetOptions{})
		if err != nil {
			return "", false, err
		}
		var status corev1.ConditionStatus
		for _, cond := range n.Status.Conditions {
			if cond.Type == corev1.NodeReady {
				status = cond.Status
			}
		}
		tainted := false
		for _, taint := range n.Spec.Taints {
			tainted = tainted || taint.Key == corev1.TaintNodeUnreachable
		}
		return status, tainted, nil
	}

	c.sim.StopHeartbeat(victim)
	c.eventually(90*time.Second, victim+" NotReady, its pods not ready and out of the ready addresses", func() error {
		status, tainted, err := nodeReady()
		if err != nil {
			return err
		}
		if status != corev1.ConditionUnknown || !tainted {
			return fmt.Errorf("Ready=%s tainted=%v", status, tainted)
		}
		pods := onVictim()
		if len(pods) == 0 {
			return fmt.Errorf("no pods on %s", victim)
		}
		ready, notReady, err := addresses()
		if err != nil {
			return err
		}
		for _, p := range pods {
			if isReady(&p) {
				return fmt.Errorf("pod %s still ready", p.Name)
			}
			if ready[p.Status.PodIP] || !notReady[p.Status.PodIP] {
				return fmt.Errorf("pod %s (%s): ready addresses %v, not ready %v", p.Name, p.Status.PodIP, ready, notReady)
			}
		}
		return nil
	})

	if err := c.sim.ResumeHeartbeat(ctx, victim); err != nil {
		t.Fatal(err)
	}
	c.eventually(60*time.Second, victim+" Ready and untainted", func() error {
		status, tainted, err := nodeReady()
		if err != nil {
			return err
		}
		if status != corev1.ConditionTrue || tainted {
			return fmt.Errorf("Ready=%s tainted=%v", status, tainted)
		}
		return nil
	})
	c.eventually(60*time.Second, "the same pods ready and back among the ready addresses", allReadyInEndpoints)
	after := map[string]string{}
	for _, p := range c.pods("default", "app=web") {
		after[string(p.UID)] = p.Status.PodIP
	}
	if diff := cmp.Diff(before, after); diff != "" {
		t.Errorf("pods replaced or readdressed (-before +after):\n%s", diff)
	}
}

// TestUnschedulableReason checks the condition message of a pod that fits nowhere, and that it is
// scheduled once a fitting node joins.
func TestUnschedulableReason(t *testing.T) {
	c := newTestCluster(t)
	c.simulate(
		simnodes.NodeSpec{Name: "small-0", CPU: "1"}, simnodes.NodeSpec{Name: "small-1", CPU: "1"},
		simnodes.NodeSpec{Name: "db", CPU: "16", Taints: []corev1.Taint{{Key: "dedicated", Value: "db", Effect: corev1.TaintEffectNoSchedule}}},
	)
	big := strings.Replace(deploymentYAML("big", 1, "busybox:1.36", ""), "cpu: 100m", "cpu: \"2\"", 1)
	c.push("a pod that fits nowhere", map[string]string{"apps/big.yaml": big})
	want := "0/3 nodes are available: 1 node(s) had untolerated taint {dedicated: db}, 2 Insufficient cpu."
	c.eventually(60*time.Second, "PodScheduled=False with the reasons", func() error {
		pods := c.pods("default", "app=big")
		if len(pods) != 1 {
			return fmt.Errorf("%d pods", len(pods))
		}
		for _, cond := range pods[0].Status.Conditions {
			if cond.Type == corev1.PodScheduled && cond.Status == corev1.ConditionFalse {
				if cond.Message != want {
					return fmt.Errorf("message %q, want %q", cond.Message, want)
				}
				return nil
			}
		}
		return fmt.Errorf("conditions %v", pods[0].Status.Conditions)
	})
	if err := c.sim.AddNodes(context.Background(), simnodes.NodeSpec{Name: "large", CPU: "8"}); err != nil {
		t.Fatal(err)
	}
	c.eventually(60*time.Second, "scheduled on the new node", func() error {
		pods := c.pods("default", "app=big")
		if len(pods) != 1 || pods[0].Spec.NodeName != "large" {
			return fmt.Errorf("pods %d, node %q", len(pods), pods[0].Spec.NodeName)
		}
		return nil
	})
}

func serviceYAML(name string, nodePort bool) string {
	typ := "ClusterIP"
	if nodePort {
		typ = "NodePort"
	}
	return fmt.Sprintf(`apiVersion: v1
kind: Service
metadata: {name: %s, namespace: default}
spec:
  type: %s
  selector: {app: %s}
  ports: [{port: 80, targetPort: 8080}]
`, name, typ, name)
}

// TestServiceAllocationsSurviveRestart allocates ClusterIPs and NodePorts, restarts the operator on
// the same data dir, adds more services, and checks nothing moved and nothing is duplicated.
func TestServiceAllocationsSurviveRestart(t *testing.T) {
	c := newTestCluster(t)
	// A /27 holds 29 cluster IPs for the 20 Services: allocations lost in the restart would all
	// but certainly be handed out twice.
	files := map[string]string{"bosun.yaml": "apiVersion: bosun.dev/v1alpha1\nkind: Cluster\nmetadata: {name: test}\nspec: {serviceCIDR: 10.96.0.0/27}\n"}
	for i := range 10 {
		files[fmt.Sprintf("svc/s%d.yaml", i)] = serviceYAML(fmt.Sprintf("s%d", i), i%2 == 0)
	}
	c.push("ten services", files)
	allocated := func(n int) (map[string]string, error) {
		l, err := c.client.CoreV1().Services("default").List(context.Background(), metav1.ListOptions{})
		if err != nil {
			return nil, err
		}
		got := map[string]string{}
		seen := map[string]string{}
		for _, s := range l.Items {
			if s.Spec.ClusterIP == "" {
				return nil, fmt.Errorf("service %s has no cluster IP yet", s.Name)
			}
			vals := []string{s.Spec.ClusterIP}
			for _, p := range s.Spec.Ports {
				if s.Spec.Type == corev1.ServiceTypeNodePort {
					if p.NodePort == 0 {
						return nil, fmt.Errorf("service %s has no node port yet", s.Name)
					}
					vals = append(vals, fmt.Sprintf("port %d", p.NodePort))
				}
			}
			for _, v := range vals {
				if other, dup := seen[v]; dup {
					return nil, fmt.Errorf("%s allocated to both %s and %s", v, other, s.Name)
				}
				seen[v] = s.Name
			}
			got[s.Name] = strings.Join(vals, ",")
		}
		if len(got) != n {
			return nil, fmt.Errorf("%d services allocated, want %d", len(got), n)
		}
		return got, nil
	}
	var before map[string]string
	c.eventually(60*time.Second, "10 services allocated", func() (err error) { before, err = allocated(10); return err })

	c.stop()
	c = startCluster(t, c.repo, c.dataDir)
	more := map[string]string{}
	for i := 10; i < 20; i++ {
		more[fmt.Sprintf("svc/s%d.yaml", i)] = serviceYAML(fmt.Sprintf("s%d", i), i%2 == 0)
	}
	c.push("ten more services", more)
	var after map[string]string
	c.eventually(60*time.Second, "20 services allocated without duplicates", func() (err error) { after, err = allocated(20); return err })
	for name, v := range before {
		if after[name] != v {
			t.Errorf("service %s moved from %s to %s across the restart", name, v, after[name])
		}
	}
}
