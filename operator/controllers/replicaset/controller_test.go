package replicaset

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bosun-gitops/bosun/internal/resource"
	"github.com/bosun-gitops/bosun/operator/controllers"
	"github.com/bosun-gitops/bosun/operator/controllers/controllertest"
	"github.com/bosun-gitops/bosun/operator/store"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apiresource "k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

const ns = "default"

func newRS(name string, replicas int32, lbl map[string]string) *appsv1.ReplicaSet {
	return &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: appsv1.ReplicaSetSpec{
			Replicas: ptr.To(replicas),
			Selector: &metav1.LabelSelector{MatchLabels: lbl},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: lbl},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox"}}},
			},
		},
	}
}

// pods returns the active pods of the namespace, by name.
func pods(env *controllertest.Env) []*corev1.Pod {
	var out []*corev1.Pod
	for _, o := range env.List(resource.Pods, ns) {
		if p := o.(*corev1.Pod); isActive(p) {
			out = append(out, p)
		}
	}
	return out
}

func ownedBy(ps []*corev1.Pod, uid string) []*corev1.Pod {
	var out []*corev1.Pod
	for _, p := range ps {
		if ref := metav1.GetControllerOf(p); ref != nil && string(ref.UID) == uid {
			out = append(out, p)
		}
	}
	return out
}

// markReady plays the kubelet: the pod runs on a node and is Ready.
func markReady(t *testing.T, env *controllertest.Env, p *corev1.Pod, since time.Time) {
	t.Helper()
	p = p.DeepCopy()
	p.Status.Phase = corev1.PodRunning
	p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: metav1.NewTime(since)}}
	if _, err := env.Store.UpdateStatus(env.Ctx, resource.Pods, p); err != nil {
		t.Fatalf("marking %s ready: %v", p.Name, err)
	}
}

func getRS(t *testing.T, env *controllertest.Env, name string) *appsv1.ReplicaSet {
	t.Helper()
	o, err := env.Store.Get(env.Ctx, resource.ReplicaSets, ns, name)
	if err != nil {
		t.Fatal(err)
	}
	return o.(*appsv1.ReplicaSet)
}

func scaleRS(t *testing.T, env *controllertest.Env, name string, n int32) {
	t.Helper()
	rs := getRS(t, env, name)
	rs.Spec.Replicas = ptr.To(n)
	rs.ResourceVersion = "" // status writes race with us; Update keeps the stored status anyway
	if _, err := env.Store.Update(env.Ctx, resource.ReplicaSets, rs); err != nil {
		t.Fatal(err)
	}
}

func wantPods(env *controllertest.Env, uid string, n int) func() error {
	return func() error {
		if got := len(ownedBy(pods(env), uid)); got != n {
			return fmt.Errorf("%d pods, want %d", got, n)
		}
		return nil
	}
}

func hasEvent(env *controllertest.Env, reason string) func() error {
	return func() error {
		for _, o := range env.List(resource.Events, ns) {
			if o.(*corev1.Event).Reason == reason {
				return nil
			}
		}
		return fmt.Errorf("no %s event", reason)
	}
}

func TestReplicaSetScaleUpDownAndStatus(t *testing.T) {
	env := controllertest.New(t, nil)
	env.Start(map[string]controllers.Constructor{Name: New})
	lbl := map[string]string{"app": "web"}
	rs := env.MustCreate(resource.ReplicaSets, newRS("web", 3, lbl)).(*appsv1.ReplicaSet)
	uid := string(rs.UID)
	env.Eventually(30*time.Second, "3 pods", wantPods(env, uid, 3))

	for _, p := range ownedBy(pods(env), uid) {
		if p.GenerateName != "web-" || p.Labels["app"] != "web" {
			t.Errorf("pod %s: generateName %q labels %v", p.Name, p.GenerateName, p.Labels)
		}
		ref := metav1.GetControllerOf(p)
		if ref.Kind != "ReplicaSet" || ref.APIVersion != "apps/v1" || ref.Name != "web" || !ptr.Deref(ref.BlockOwnerDeletion, false) {
			t.Errorf("pod %s: owner reference %+v", p.Name, ref)
		}
	}
	ps := ownedBy(pods(env), uid)
	markReady(t, env, ps[0], time.Now())
	markReady(t, env, ps[1], time.Now())
	env.Eventually(30*time.Second, "status", func() error {
		s := getRS(t, env, "web").Status
		if s.Replicas != 3 || s.FullyLabeledReplicas != 3 || s.ReadyReplicas != 2 || s.AvailableReplicas != 2 || s.ObservedGeneration != 1 {
			return fmt.Errorf("status %+v", s)
		}
		return nil
	})

	scaleRS(t, env, "web", 6)
	env.Eventually(30*time.Second, "6 pods", wantPods(env, uid, 6))
	scaleRS(t, env, "web", 2)
	env.Eventually(30*time.Second, "2 pods", wantPods(env, uid, 2))
	// Not-ready pods go first: the two ready ones remain.
	for _, p := range ownedBy(pods(env), uid) {
		if !IsPodReady(p) {
			t.Errorf("pod %s kept although not ready", p.Name)
		}
	}
	env.Eventually(30*time.Second, "status after scale-down", func() error {
		s := getRS(t, env, "web").Status
		if s.Replicas != 2 || s.ReadyReplicas != 2 || s.ObservedGeneration != 3 {
			return fmt.Errorf("status %+v", s)
		}
		return nil
	})
	env.Eventually(10*time.Second, "create events", hasEvent(env, "SuccessfulCreate"))
	env.Eventually(10*time.Second, "delete events", hasEvent(env, "SuccessfulDelete"))

	// A finished pod does not count: it is replaced.
	p := ownedBy(pods(env), uid)[0].DeepCopy()
	p.Status.Phase = corev1.PodFailed
	if _, err := env.Store.UpdateStatus(env.Ctx, resource.Pods, p); err != nil {
		t.Fatal(err)
	}
	env.Eventually(30*time.Second, "failed pod replaced", wantPods(env, uid, 2))
}

func TestReplicationControllerDefaultsSelector(t *testing.T) {
	env := controllertest.New(t, nil)
	env.Start(map[string]controllers.Constructor{RCName: NewReplicationController})
	rc := env.MustCreate(resource.ReplicationControllers, &corev1.ReplicationController{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "legacy"},
		Spec: corev1.ReplicationControllerSpec{Replicas: ptr.To[int32](4), Template: &corev1.PodTemplateSpec{
			ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "legacy"}},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox"}}},
		}},
	})
	env.Eventually(30*time.Second, "4 pods", wantPods(env, string(rc.GetUID()), 4))
	env.Eventually(30*time.Second, "rc status", func() error {
		o, err := env.Store.Get(env.Ctx, resource.ReplicationControllers, ns, "legacy")
		if err != nil {
			return err
		}
		if s := o.(*corev1.ReplicationController).Status; s.Replicas != 4 || s.ObservedGeneration != 1 {
			return fmt.Errorf("status %+v", s)
		}
		return nil
	})
	if ref := metav1.GetControllerOf(pods(env)[0]); ref.Kind != "ReplicationController" || ref.APIVersion != "v1" {
		t.Errorf("owner reference %+v", ref)
	}
}

func TestAdoptAndRelease(t *testing.T) {
	env := controllertest.New(t, nil)
	lbl := map[string]string{"app": "db"}
	orphan := env.MustCreate(resource.Pods, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "orphan", Labels: map[string]string{"app": "db"}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox"}}},
	})
	stranger := env.MustCreate(resource.Pods, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "stranger", Labels: map[string]string{"app": "other"}},
	})
	env.Start(map[string]controllers.Constructor{Name: New})
	rs := env.MustCreate(resource.ReplicaSets, newRS("db", 2, lbl))
	uid := string(rs.GetUID())
	env.Eventually(30*time.Second, "2 pods", wantPods(env, uid, 2))
	owned := ownedBy(pods(env), uid)
	if !slices.ContainsFunc(owned, func(p *corev1.Pod) bool { return p.UID == orphan.GetUID() }) {
		t.Fatalf("orphan not adopted; owned: %v", names(owned))
	}
	if o, _ := env.Store.Get(env.Ctx, resource.Pods, ns, "stranger"); metav1.GetControllerOf(o.(*corev1.Pod)) != nil || o.GetUID() != stranger.GetUID() {
		t.Fatal("a pod that does not match was adopted")
	}

	// Relabel the adopted pod: it is released and replaced.
	o, err := env.Store.Get(env.Ctx, resource.Pods, ns, "orphan")
	if err != nil {
		t.Fatal(err)
	}
	p := o.(*corev1.Pod)
	p.Labels = map[string]string{"app": "debugging"}
	p.ResourceVersion = ""
	if _, err := env.Store.Update(env.Ctx, resource.Pods, p); err != nil {
		t.Fatal(err)
	}
	env.Eventually(30*time.Second, "orphan released", func() error {
		o, err := env.Store.Get(env.Ctx, resource.Pods, ns, "orphan")
		if err != nil {
			return err
		}
		if len(o.GetOwnerReferences()) != 0 {
			return fmt.Errorf("still owned: %+v", o.GetOwnerReferences())
		}
		return nil
	})
	env.Eventually(30*time.Second, "replacement", wantPods(env, uid, 2))
}

func names(ps []*corev1.Pod) []string {
	var out []string
	for _, p := range ps {
		out = append(out, p.Name)
	}
	return out
}

func TestSurplusDeletionOrder(t *testing.T) {
	env := controllertest.New(t, nil)
	lbl := map[string]string{"app": "api"}
	mk := func(name, node string, phase corev1.PodPhase, readySince time.Time) {
		p := env.MustCreate(resource.Pods, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: lbl},
			Spec:       corev1.PodSpec{NodeName: node},
		}).(*corev1.Pod)
		p.Status.Phase = phase
		if !readySince.IsZero() {
			p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: metav1.NewTime(readySince)}}
		}
		if _, err := env.Store.UpdateStatus(env.Ctx, resource.Pods, p); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Now()
	mk("unscheduled", "", corev1.PodPending, time.Time{})
	mk("pending", "n1", corev1.PodPending, time.Time{})
	mk("not-ready", "n2", corev1.PodRunning, time.Time{})
	mk("ready-recently", "n3", corev1.PodRunning, now)
	mk("ready-long", "n4", corev1.PodRunning, now.Add(-time.Hour))
	env.Start(map[string]controllers.Constructor{Name: New})
	rs := env.MustCreate(resource.ReplicaSets, newRS("api", 5, lbl))
	uid := string(rs.GetUID())
	env.Eventually(30*time.Second, "5 adopted", wantPods(env, uid, 5))

	order := []string{"unscheduled", "pending", "not-ready", "ready-recently"}
	for i := range order {
		scaleRS(t, env, "api", int32(4-i))
		env.Eventually(30*time.Second, fmt.Sprintf("scale to %d", 4-i), wantPods(env, uid, 4-i))
		got := names(ownedBy(pods(env), uid))
		if slices.Contains(got, order[i]) {
			t.Fatalf("after scaling to %d, %s remains: %v", 4-i, order[i], got)
		}
	}
	if got := names(ownedBy(pods(env), uid)); !slices.Equal(got, []string{"ready-long"}) {
		t.Fatalf("survivor %v, want ready-long", got)
	}
}

// refusingStore fails pod creates beyond a budget, as a store over quota would, and records
// the size of every create batch.
type refusingStore struct {
	*store.Store
	mu      sync.Mutex
	budget  int // pod creates still accepted; <0: unlimited
	batches []int
	created int
}

func (s *refusingStore) Batch(ctx context.Context, ops []store.Op) []store.OpResult {
	s.mu.Lock()
	var pass []store.Op
	var refused []int
	creates := 0
	for i, op := range ops {
		if op.Type == store.OpCreate && op.Resource == resource.Pods {
			creates++
			if s.budget == 0 {
				refused = append(refused, i)
				continue
			}
			if s.budget > 0 {
				s.budget--
			}
		}
		pass = append(pass, op)
	}
	if creates > 0 {
		s.batches = append(s.batches, creates)
	}
	s.mu.Unlock()
	results := s.Store.Batch(ctx, pass)
	out := make([]store.OpResult, 0, len(ops))
	for i := range ops {
		if slices.Contains(refused, i) {
			out = append(out, store.OpResult{Err: apierrors.NewForbidden(resource.Pods.GroupResource(), "", fmt.Errorf("exceeded quota"))})
			continue
		}
		out = append(out, results[0])
		results = results[1:]
	}
	s.mu.Lock()
	for _, r := range out {
		if r.Err == nil && r.Object != nil {
			if _, ok := r.Object.(*corev1.Pod); ok {
				s.created++
			}
		}
	}
	s.mu.Unlock()
	return out
}

func (s *refusingStore) setBudget(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.budget = n
}

func (s *refusingStore) snapshot() ([]int, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.batches), s.created
}

func TestSlowStartUnderCreateErrors(t *testing.T) {
	env := controllertest.New(t, nil)
	rs := &refusingStore{Store: env.Store, budget: 4}
	env.Start(map[string]controllers.Constructor{Name: func(c *controllers.Context) (controllers.Controller, error) {
		ctrl, err := newController(c, Name, replicaSetKind)
		if err != nil {
			return nil, err
		}
		ctrl.store = rs
		return ctrl, nil
	}})
	obj := env.MustCreate(resource.ReplicaSets, newRS("big", 20, map[string]string{"app": "big"}))
	env.Eventually(30*time.Second, "ReplicaFailure condition", func() error {
		for _, c := range getRS(t, env, "big").Status.Conditions {
			if c.Type == appsv1.ReplicaSetReplicaFailure && c.Status == corev1.ConditionTrue && c.Reason == "FailedCreate" {
				return nil
			}
		}
		return fmt.Errorf("conditions %+v", getRS(t, env, "big").Status.Conditions)
	})
	env.Eventually(30*time.Second, "a retry", func() error {
		if b, _ := rs.snapshot(); len(b) < 5 {
			return fmt.Errorf("batches %v", b)
		}
		return nil
	})
	batches, created := rs.snapshot()
	// First sync: 1, 2, then 4 of which only one fits the budget; it stops there. Each retry
	// then spends a single create on the refusing store.
	if !slices.Equal(batches[:3], []int{1, 2, 4}) || created != 4 {
		t.Fatalf("batches %v, %d created; want 1, 2, 4 then stop with 4 created", batches, created)
	}
	for _, b := range batches[3:] {
		if b != 1 {
			t.Fatalf("retry batches %v: a retry under errors must try one pod", batches[3:])
		}
	}
	env.Eventually(10*time.Second, "FailedCreate event", hasEvent(env, "FailedCreate"))

	rs.setBudget(-1)
	env.Eventually(60*time.Second, "20 pods once the store accepts them", wantPods(env, string(obj.GetUID()), 20))
	env.Eventually(30*time.Second, "condition cleared", func() error {
		if c := getRS(t, env, "big").Status.Conditions; len(c) != 0 {
			return fmt.Errorf("conditions %+v", c)
		}
		return nil
	})
	if _, created := rs.snapshot(); created != 20 {
		t.Fatalf("%d pods created in all, want 20: expectations must prevent double creates", created)
	}
}

func TestNoDoubleCreateOnLargeScaleUp(t *testing.T) {
	env := controllertest.New(t, nil)
	rs := &refusingStore{Store: env.Store, budget: -1}
	env.Start(map[string]controllers.Constructor{Name: func(c *controllers.Context) (controllers.Controller, error) {
		ctrl, err := newController(c, Name, replicaSetKind)
		if err != nil {
			return nil, err
		}
		ctrl.store = rs
		return ctrl, nil
	}})
	obj := env.MustCreate(resource.ReplicaSets, newRS("many", 300, map[string]string{"app": "many"}))
	env.Eventually(60*time.Second, "300 pods", wantPods(env, string(obj.GetUID()), 300))
	batches, created := rs.snapshot()
	if created != 300 {
		t.Fatalf("%d pods created (batches %v), want exactly 300", created, batches)
	}
	if !slices.Equal(batches[:4], []int{1, 2, 4, 8}) {
		t.Fatalf("batches %v, want slow start 1, 2, 4, 8, ...", batches)
	}
}

// TestPodsRequestWhatTheTemplateLimits: the template keeps only limits (Kubernetes defaults
// requests on pods, not templates); the pods created from it are stored with the requests.
func TestPodsRequestWhatTheTemplateLimits(t *testing.T) {
	env := controllertest.New(t, nil)
	env.Start(map[string]controllers.Constructor{Name: New})
	rs := newRS("gpu", 1, map[string]string{"app": "gpu"})
	rs.Spec.Template.Spec.Containers[0].Resources.Limits = corev1.ResourceList{"nvidia.com/gpu": apiresource.MustParse("1")}
	uid := string(env.MustCreate(resource.ReplicaSets, rs).GetUID())
	env.Eventually(30*time.Second, "1 pod", wantPods(env, uid, 1))
	got := ownedBy(pods(env), uid)[0].Spec.Containers[0].Resources.Requests
	if q := got["nvidia.com/gpu"]; q.String() != "1" {
		t.Errorf("pod requests %v, want nvidia.com/gpu 1 from the template's limit", got)
	}
}

// getCountingStore counts the owner reads that adoption makes.
type getCountingStore struct {
	*store.Store
	gets atomic.Int32
}

func (s *getCountingStore) Get(ctx context.Context, res *resource.Resource, namespace, name string) (resource.Object, error) {
	s.gets.Add(1)
	return s.Store.Get(ctx, res, namespace, name)
}

// TestNoAdoptionByAnOwnerGoneFromTheStore reconciles against caches filled by hand, so that the
// cache shows a ReplicaSet the store no longer has as it was: deleted, replaced by another of the
// same name, or being deleted. Its orphans must stay orphans, and nothing is created for it.
func TestNoAdoptionByAnOwnerGoneFromTheStore(t *testing.T) {
	lbl := map[string]string{"app": "db"}
	setup := func(t *testing.T) (*controllertest.Env, *Controller, *getCountingStore, *appsv1.ReplicaSet) {
		env := controllertest.New(t, nil)
		rc, err := newController(env.Context, Name, replicaSetKind)
		if err != nil {
			t.Fatal(err)
		}
		counting := &getCountingStore{Store: env.Store}
		rc.store = counting
		rs := env.MustCreate(resource.ReplicaSets, newRS("db", 2, lbl)).(*appsv1.ReplicaSet)
		if err := rc.owners.GetIndexer().Add(rs); err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{"orphan-1", "orphan-2"} {
			p := env.MustCreate(resource.Pods, &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: lbl},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox"}}},
			})
			if err := rc.pods.GetIndexer().Add(p); err != nil {
				t.Fatal(err)
			}
		}
		return env, rc, counting, rs
	}
	orphans := func(env *controllertest.Env) int {
		n := 0
		for _, p := range pods(env) {
			if len(p.OwnerReferences) == 0 {
				n++
			}
		}
		return n
	}

	for _, tc := range []struct {
		name  string
		store func(t *testing.T, env *controllertest.Env, rs *appsv1.ReplicaSet)
	}{
		{"deleted", func(t *testing.T, env *controllertest.Env, rs *appsv1.ReplicaSet) {
			if _, err := env.Store.Delete(env.Ctx, resource.ReplicaSets, ns, rs.Name, store.DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
		}},
		{"replaced", func(t *testing.T, env *controllertest.Env, rs *appsv1.ReplicaSet) {
			if _, err := env.Store.Delete(env.Ctx, resource.ReplicaSets, ns, rs.Name, store.DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
			env.MustCreate(resource.ReplicaSets, newRS("db", 2, lbl))
		}},
		{"being deleted", func(t *testing.T, env *controllertest.Env, rs *appsv1.ReplicaSet) {
			if _, err := env.Store.Delete(env.Ctx, resource.ReplicaSets, ns, rs.Name,
				store.DeleteOptions{PropagationPolicy: ptr.To(metav1.DeletePropagationForeground)}); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env, rc, counting, rs := setup(t)
			tc.store(t, env, rs)
			_, err := rc.reconcile(env.Ctx, ns+"/db")
			if err == nil {
				t.Fatal("reconcile succeeded; want the adoption refused")
			}
			t.Logf("reconcile: %v", err)
			if n := orphans(env); n != 2 || len(pods(env)) != 2 {
				t.Errorf("%d pods, %d of them orphans; want the 2 orphans left alone and no pod created", len(pods(env)), n)
			}
			if n := counting.gets.Load(); n != 1 {
				t.Errorf("%d owner reads for two orphans, want 1", n)
			}
		})
	}

	t.Run("owner as cached", func(t *testing.T) {
		env, rc, counting, _ := setup(t)
		if _, err := rc.reconcile(env.Ctx, ns+"/db"); err != nil {
			t.Fatal(err)
		}
		if n := orphans(env); n != 0 || len(pods(env)) != 2 {
			t.Errorf("%d pods, %d of them orphans; want both adopted", len(pods(env)), n)
		}
		if n := counting.gets.Load(); n != 1 {
			t.Errorf("%d owner reads for two adoptions, want 1", n)
		}
		// Nothing left to adopt: no read.
		for _, p := range pods(env) {
			if err := rc.pods.GetIndexer().Update(p); err != nil {
				t.Fatal(err)
			}
		}
		if err := rc.owners.GetIndexer().Update(getRS(t, env, "db")); err != nil {
			t.Fatal(err)
		}
		if _, err := rc.reconcile(env.Ctx, ns+"/db"); err != nil {
			t.Fatal(err)
		}
		if n := counting.gets.Load(); n != 1 {
			t.Errorf("%d owner reads after a reconcile with nothing to adopt, want still 1", n)
		}
	})
}
