package daemonset_test

import (
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/bosun-gitops/bosun/internal/resource"
	"github.com/bosun-gitops/bosun/operator/controllers"
	"github.com/bosun-gitops/bosun/operator/controllers/controllertest"
	"github.com/bosun-gitops/bosun/operator/controllers/daemonset"
	"github.com/bosun-gitops/bosun/operator/store"
	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/utils/ptr"
)

func mkNode(name string, labels map[string]string, taints ...corev1.Taint) *corev1.Node {
	return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}, Spec: corev1.NodeSpec{Taints: taints}}
}

func mkDS(name string, mutate func(*appsv1.DaemonSet)) *appsv1.DaemonSet {
	labels := map[string]string{"app": name}
	ds := &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name},
		Spec: appsv1.DaemonSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "agent:1"}}},
			},
		},
	}
	if mutate != nil {
		mutate(ds)
	}
	return ds
}

// runKubelet plays scheduler and kubelet: it binds every daemon pod to its target node and marks
// it Running and Ready, and deletes for good the pods being deleted gracefully, until the test
// ends.
func runKubelet(env *controllertest.Env) {
	go func() {
		for env.Ctx.Err() == nil {
			l, err := env.Store.List(env.Ctx, resource.Pods, "", store.ListOptions{})
			if err != nil {
				return
			}
			for _, o := range l.Items {
				p := o.(*corev1.Pod).DeepCopy()
				if p.DeletionTimestamp != nil {
					// Its containers stop at once: delete it for good, as an agent does.
					_, _ = env.Store.Delete(env.Ctx, resource.Pods, p.Namespace, p.Name, store.DeleteOptions{
						GracePeriodSeconds: new(int64(0)), Preconditions: &metav1.Preconditions{UID: &p.UID}})
					continue
				}
				if p.Spec.NodeName == "" {
					p.Spec.NodeName = daemonset.TargetNode(p)
					out, err := env.Store.Update(env.Ctx, resource.Pods, p)
					if err != nil {
						continue
					}
					p = out.(*corev1.Pod)
				}
				if p.Status.Phase != corev1.PodRunning {
					p.Status.Phase = corev1.PodRunning
					p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: metav1.Now()}}
					_, _ = env.Store.UpdateStatus(env.Ctx, resource.Pods, p)
				}
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
}

// podsByNode returns node → images of the live pods of the DaemonSet.
func podsByNode(env *controllertest.Env) map[string][]string {
	out := map[string][]string{}
	for _, o := range env.List(resource.Pods, "default") {
		p := o.(*corev1.Pod)
		out[daemonset.TargetNode(p)] = append(out[daemonset.TargetNode(p)], p.Spec.Containers[0].Image)
	}
	for _, v := range out {
		sort.Strings(v)
	}
	return out
}

func wantPods(env *controllertest.Env, want map[string][]string) func() error {
	return func() error {
		if diff := cmp.Diff(want, podsByNode(env)); diff != "" {
			return fmt.Errorf("pods by node (-want +got):\n%s", diff)
		}
		return nil
	}
}

func getDS(t *testing.T, env *controllertest.Env, name string) *appsv1.DaemonSet {
	obj, err := env.Store.Get(env.Ctx, resource.DaemonSets, "default", name)
	if err != nil {
		t.Fatal(err)
	}
	return obj.(*appsv1.DaemonSet)
}

func TestNodesSelectorsAndTaints(t *testing.T) {
	env := controllertest.New(t, nil)
	worker := map[string]string{"role": "worker"}
	env.MustCreate(resource.Nodes, mkNode("n1", worker))
	env.MustCreate(resource.Nodes, mkNode("n2", worker, corev1.Taint{Key: "dedicated", Value: "db", Effect: corev1.TaintEffectNoSchedule}))
	env.MustCreate(resource.Nodes, mkNode("n3", map[string]string{"role": "infra"}))
	// Cordoned and unreachable nodes still run daemons (automatic tolerations).
	env.MustCreate(resource.Nodes, mkNode("n4", worker,
		corev1.Taint{Key: corev1.TaintNodeUnschedulable, Effect: corev1.TaintEffectNoSchedule},
		corev1.Taint{Key: corev1.TaintNodeUnreachable, Effect: corev1.TaintEffectNoExecute}))
	env.MustCreate(resource.DaemonSets, mkDS("agent", func(ds *appsv1.DaemonSet) {
		ds.Spec.Template.Spec.NodeSelector = worker
	}))
	env.MustCreate(resource.DaemonSets, mkDS("db-agent", func(ds *appsv1.DaemonSet) {
		ds.Spec.Template.Spec.Tolerations = []corev1.Toleration{{Key: "dedicated", Operator: corev1.TolerationOpEqual, Value: "db", Effect: corev1.TaintEffectNoSchedule}}
		ds.Spec.Template.Spec.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{
			RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{
				MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "role", Operator: corev1.NodeSelectorOpIn, Values: []string{"worker"}}},
				MatchFields:      []corev1.NodeSelectorRequirement{{Key: "metadata.name", Operator: corev1.NodeSelectorOpIn, Values: []string{"n1", "n2"}}},
			}}},
		}}
		ds.Spec.Template.Spec.Containers[0].Image = "db:1"
	}))
	runKubelet(env)
	env.Start(map[string]controllers.Constructor{daemonset.Name: daemonset.New})

	env.Eventually(20*time.Second, "daemons on eligible nodes", wantPods(env, map[string][]string{
		"n1": {"agent:1", "db:1"}, "n2": {"db:1"}, "n4": {"agent:1"},
	}))
	obj := env.List(resource.Pods, "default")[0].(*corev1.Pod)
	if ref := metav1.GetControllerOf(obj); ref == nil || ref.Kind != "DaemonSet" {
		t.Errorf("pod %s has no DaemonSet controller reference: %+v", obj.Name, obj.OwnerReferences)
	}
	if obj.Labels[appsv1.DefaultDaemonSetUniqueLabelKey] == "" || obj.Labels[appsv1.DeprecatedTemplateGeneration] != "1" {
		t.Errorf("pod %s labels %v", obj.Name, obj.Labels)
	}
	tol := map[string]bool{}
	for _, t := range obj.Spec.Tolerations {
		tol[t.Key+":"+string(t.Effect)] = true
	}
	for _, want := range []string{corev1.TaintNodeUnreachable + ":NoExecute", corev1.TaintNodeNotReady + ":NoExecute", corev1.TaintNodeUnschedulable + ":NoSchedule"} {
		if !tol[want] {
			t.Errorf("pod %s lacks the toleration %s: %v", obj.Name, want, obj.Spec.Tolerations)
		}
	}
	env.Eventually(20*time.Second, "status", func() error {
		st := getDS(t, env, "agent").Status
		want := appsv1.DaemonSetStatus{DesiredNumberScheduled: 2, CurrentNumberScheduled: 2, NumberReady: 2, NumberAvailable: 2, UpdatedNumberScheduled: 2, ObservedGeneration: 1}
		if diff := cmp.Diff(want, st); diff != "" {
			return fmt.Errorf("status (-want +got):\n%s", diff)
		}
		return nil
	})

	// A node joins, one leaves, one gets a NoExecute taint the daemon does not tolerate.
	env.MustCreate(resource.Nodes, mkNode("n5", worker))
	if _, err := env.Store.Delete(env.Ctx, resource.Nodes, "", "n1", store.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	n4, err := env.Store.Get(env.Ctx, resource.Nodes, "", "n4")
	if err != nil {
		t.Fatal(err)
	}
	n4.(*corev1.Node).Spec.Taints = append(n4.(*corev1.Node).Spec.Taints, corev1.Taint{Key: "maintenance", Effect: corev1.TaintEffectNoExecute})
	if _, err := env.Store.Update(env.Ctx, resource.Nodes, n4); err != nil {
		t.Fatal(err)
	}
	env.Eventually(20*time.Second, "daemons follow the nodes", wantPods(env, map[string][]string{
		"n2": {"db:1"}, "n5": {"agent:1"},
	}))
	// A new NoSchedule taint does not evict a running daemon.
	n5, _ := env.Store.Get(env.Ctx, resource.Nodes, "", "n5")
	n5.(*corev1.Node).Spec.Taints = []corev1.Taint{{Key: "soft", Effect: corev1.TaintEffectNoSchedule}}
	if _, err := env.Store.Update(env.Ctx, resource.Nodes, n5); err != nil {
		t.Fatal(err)
	}
	env.Eventually(20*time.Second, "misscheduled counted, pod kept", func() error {
		st := getDS(t, env, "agent").Status
		if st.DesiredNumberScheduled != 0 || st.NumberMisscheduled != 1 {
			return fmt.Errorf("status %+v", st)
		}
		return wantPods(env, map[string][]string{"n2": {"db:1"}, "n5": {"agent:1"}})()
	})
	env.Eventually(20*time.Second, "SuccessfulCreate and SuccessfulDelete events", func() error {
		seen := map[string]bool{}
		for _, o := range env.List(resource.Events, "default") {
			seen[o.(*corev1.Event).Reason] = true
		}
		if !seen["SuccessfulCreate"] || !seen["SuccessfulDelete"] {
			return fmt.Errorf("events %v", seen)
		}
		return nil
	})
}

// readyWatcher follows pod events and records, after it is armed, the fewest ready pods, the
// most pods not being deleted (what maxSurge bounds, as in Kubernetes) and the most pods on one
// node, terminating ones included (without surge a node's new pod waits for the old one to go).
type readyWatcher struct {
	mu                            sync.Mutex
	pods                          map[string]watchedPod
	armed                         bool
	minReady, maxLive, maxPerNode int
}

type watchedPod struct {
	node               string
	ready, terminating bool
}

func watchReady(t *testing.T, env *controllertest.Env) *readyWatcher {
	ch, err := env.Store.Watch(env.Ctx, resource.Pods, "default", store.WatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	w := &readyWatcher{pods: map[string]watchedPod{}, minReady: 1 << 30}
	go func() {
		for ev := range ch {
			if ev.Object == nil {
				continue
			}
			p := ev.Object.(*corev1.Pod)
			w.mu.Lock()
			if ev.Type == watch.Deleted {
				delete(w.pods, p.Name)
			} else {
				wp := watchedPod{node: daemonset.TargetNode(p), terminating: p.DeletionTimestamp != nil}
				for _, c := range p.Status.Conditions {
					if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
						wp.ready = !wp.terminating
					}
				}
				w.pods[p.Name] = wp
			}
			if w.armed {
				ready, live := 0, 0
				perNode := map[string]int{}
				for _, wp := range w.pods {
					if wp.ready {
						ready++
					}
					if !wp.terminating {
						live++
					}
					perNode[wp.node]++
					w.maxPerNode = max(w.maxPerNode, perNode[wp.node])
				}
				w.minReady = min(w.minReady, ready)
				w.maxLive = max(w.maxLive, live)
			}
			w.mu.Unlock()
		}
	}()
	return w
}

func (w *readyWatcher) arm() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.armed = true
}

func (w *readyWatcher) result() (minReady, maxLive, maxPerNode int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.minReady, w.maxLive, w.maxPerNode
}

func TestRollingUpdateKeepsPodsAvailable(t *testing.T) {
	tests := []struct {
		name         string
		ru           *appsv1.RollingUpdateDaemonSet
		wantMinReady int
		wantMaxPods  int
	}{
		{name: "maxUnavailable default 1", ru: nil, wantMinReady: 3, wantMaxPods: 4},
		{name: "maxUnavailable 2", ru: &appsv1.RollingUpdateDaemonSet{MaxUnavailable: ptr.To(intstr.FromInt32(2))}, wantMinReady: 2, wantMaxPods: 4},
		{name: "maxSurge 1", ru: &appsv1.RollingUpdateDaemonSet{MaxUnavailable: ptr.To(intstr.FromInt32(0)), MaxSurge: ptr.To(intstr.FromInt32(1))}, wantMinReady: 4, wantMaxPods: 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := controllertest.New(t, nil)
			for i := range 4 {
				env.MustCreate(resource.Nodes, mkNode(fmt.Sprintf("n%d", i), nil))
			}
			env.MustCreate(resource.DaemonSets, mkDS("agent", func(ds *appsv1.DaemonSet) {
				ds.Spec.UpdateStrategy = appsv1.DaemonSetUpdateStrategy{Type: appsv1.RollingUpdateDaemonSetStrategyType, RollingUpdate: tt.ru}
			}))
			w := watchReady(t, env)
			runKubelet(env)
			env.Start(map[string]controllers.Constructor{daemonset.Name: daemonset.New})
			v1 := map[string][]string{"n0": {"agent:1"}, "n1": {"agent:1"}, "n2": {"agent:1"}, "n3": {"agent:1"}}
			env.Eventually(20*time.Second, "first revision everywhere", wantPods(env, v1))
			env.Eventually(20*time.Second, "all available", func() error {
				if st := getDS(t, env, "agent").Status; st.NumberAvailable != 4 {
					return fmt.Errorf("status %+v", st)
				}
				return nil
			})
			w.arm()

			ds := getDS(t, env, "agent")
			ds.Spec.Template.Spec.Containers[0].Image = "agent:2"
			if _, err := env.Store.Update(env.Ctx, resource.DaemonSets, ds); err != nil {
				t.Fatal(err)
			}
			v2 := map[string][]string{"n0": {"agent:2"}, "n1": {"agent:2"}, "n2": {"agent:2"}, "n3": {"agent:2"}}
			env.Eventually(30*time.Second, "second revision everywhere", wantPods(env, v2))
			env.Eventually(20*time.Second, "status of the finished update", func() error {
				st := getDS(t, env, "agent").Status
				want := appsv1.DaemonSetStatus{DesiredNumberScheduled: 4, CurrentNumberScheduled: 4, NumberReady: 4, NumberAvailable: 4, UpdatedNumberScheduled: 4, ObservedGeneration: 2}
				if diff := cmp.Diff(want, st); diff != "" {
					return fmt.Errorf("status (-want +got):\n%s", diff)
				}
				return nil
			})
			// At least 4-maxUnavailable pods stay ready; a node runs a second pod only with
			// surge, also while its old pod terminates.
			minReady, maxPods, maxPerNode := w.result()
			t.Logf("during the update: fewest ready %d, most pods %d, most on one node %d", minReady, maxPods, maxPerNode)
			if minReady < tt.wantMinReady {
				t.Errorf("fewest ready pods during the update = %d, want >= %d", minReady, tt.wantMinReady)
			}
			if maxPods > tt.wantMaxPods {
				t.Errorf("most pods at once (not being deleted) during the update = %d, want <= %d", maxPods, tt.wantMaxPods)
			}
			if surge := tt.wantMaxPods > 4; !surge && maxPerNode > 1 {
				t.Errorf("a node ran %d daemon pods at once (a terminating one included) without surge", maxPerNode)
			}
			if revs := env.List(resource.ControllerRevisions, "default"); len(revs) != 2 {
				t.Errorf("%d controller revisions, want 2", len(revs))
			}
		})
	}
}

func TestDaemonSetDeletedStopsManaging(t *testing.T) {
	env := controllertest.New(t, nil)
	env.MustCreate(resource.Nodes, mkNode("n1", nil))
	env.MustCreate(resource.DaemonSets, mkDS("agent", nil))
	env.Start(map[string]controllers.Constructor{daemonset.Name: daemonset.New})
	env.Eventually(20*time.Second, "pod created", wantPods(env, map[string][]string{"n1": {"agent:1"}}))
	if _, err := env.Store.Delete(env.Ctx, resource.DaemonSets, "default", "agent", store.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	// Deleting the pod of a deleted DaemonSet does not bring it back.
	p := env.List(resource.Pods, "default")[0]
	if _, err := env.Store.Delete(env.Ctx, resource.Pods, "default", p.GetName(), store.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	if got := podsByNode(env); len(got) != 0 {
		t.Fatalf("pods %v after the DaemonSet was deleted", got)
	}
}
