package deployment_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/bosun-gitops/bosun/internal/resource"
	"github.com/bosun-gitops/bosun/operator/controllers"
	"github.com/bosun-gitops/bosun/operator/controllers/controllertest"
	"github.com/bosun-gitops/bosun/operator/controllers/deployment"
	"github.com/bosun-gitops/bosun/operator/controllers/replicaset"
	"github.com/bosun-gitops/bosun/operator/store"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/utils/ptr"
)

const ns = "default"

func start(t *testing.T) *controllertest.Env {
	env := controllertest.New(t, nil)
	env.Start(map[string]controllers.Constructor{deployment.Name: deployment.New, replicaset.Name: replicaset.New})
	return env
}

func newDeployment(name string, replicas int32, image string) *appsv1.Deployment {
	lbl := map[string]string{"app": name}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(replicas),
			Selector: &metav1.LabelSelector{MatchLabels: lbl},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: lbl},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: image}}},
			},
		},
	}
}

// kubelet marks every pod Running and Ready while enabled, as a simulated node would.
type kubelet struct {
	mu      sync.Mutex
	enabled bool
}

func (k *kubelet) set(on bool) { k.mu.Lock(); k.enabled = on; k.mu.Unlock() }
func (k *kubelet) on() bool    { k.mu.Lock(); defer k.mu.Unlock(); return k.enabled }

func runKubelet(t *testing.T, env *controllertest.Env) *kubelet {
	k := &kubelet{enabled: true}
	go func() {
		for env.Ctx.Err() == nil {
			time.Sleep(20 * time.Millisecond)
			if !k.on() {
				continue
			}
			l, err := env.Store.List(env.Ctx, resource.Pods, ns, store.ListOptions{})
			if err != nil {
				continue
			}
			for _, o := range l.Items {
				p := o.(*corev1.Pod)
				if replicaset.IsPodReady(p) || p.DeletionTimestamp != nil {
					continue
				}
				p.Spec.NodeName = "node-1"
				p.Status.Phase = corev1.PodRunning
				p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: metav1.Now()}}
				_, _ = env.Store.UpdateStatus(env.Ctx, resource.Pods, p) // a conflict or a deleted pod: try later
			}
		}
	}()
	return k
}

func getDeploy(t *testing.T, env *controllertest.Env, name string) *appsv1.Deployment {
	t.Helper()
	o, err := env.Store.Get(env.Ctx, resource.Deployments, ns, name)
	if err != nil {
		t.Fatal(err)
	}
	return o.(*appsv1.Deployment)
}

func updateDeploy(t *testing.T, env *controllertest.Env, name string, change func(*appsv1.Deployment)) {
	t.Helper()
	for {
		d := getDeploy(t, env, name)
		change(d)
		_, err := env.Store.Update(env.Ctx, resource.Deployments, d)
		if apierrors.IsConflict(err) {
			continue // the controller wrote status meanwhile
		}
		if err != nil {
			t.Fatal(err)
		}
		return
	}
}

func replicaSets(env *controllertest.Env) []*appsv1.ReplicaSet {
	var out []*appsv1.ReplicaSet
	for _, o := range env.List(resource.ReplicaSets, ns) {
		out = append(out, o.(*appsv1.ReplicaSet))
	}
	return out
}

func activePods(env *controllertest.Env) []*corev1.Pod {
	var out []*corev1.Pod
	for _, o := range env.List(resource.Pods, ns) {
		if p := o.(*corev1.Pod); p.DeletionTimestamp == nil {
			out = append(out, p)
		}
	}
	return out
}

// rolledOut waits until the deployment is complete on the template with image.
func rolledOut(t *testing.T, env *controllertest.Env, name, image string, replicas int32) func() error {
	return func() error {
		d := getDeploy(t, env, name)
		s := d.Status
		if s.ObservedGeneration != d.Generation || s.UpdatedReplicas != replicas || s.Replicas != replicas || s.AvailableReplicas != replicas {
			return fmt.Errorf("status %+v", s)
		}
		for _, p := range activePods(env) {
			if p.Spec.Containers[0].Image != image {
				return fmt.Errorf("pod %s still runs %s", p.Name, p.Spec.Containers[0].Image)
			}
		}
		if n := len(activePods(env)); n != int(replicas) {
			return fmt.Errorf("%d pods", n)
		}
		c := condition(d, appsv1.DeploymentProgressing)
		if c == nil || c.Reason != deployment.ReasonNewRSAvailable {
			return fmt.Errorf("progressing condition %+v", c)
		}
		return nil
	}
}

func condition(d *appsv1.Deployment, t appsv1.DeploymentConditionType) *appsv1.DeploymentCondition {
	for i := range d.Status.Conditions {
		if d.Status.Conditions[i].Type == t {
			return &d.Status.Conditions[i]
		}
	}
	return nil
}

// podRecorder follows every pod change in revision order and checks the rollout bounds at
// each one once armed.
type podRecorder struct {
	mu               sync.Mutex
	pods             map[string]*corev1.Pod
	armed            bool
	minReady, maxAll int
	lowestReady      int
	highestTotal     int
	violations       []string
}

func recordPods(t *testing.T, env *controllertest.Env) *podRecorder {
	r := &podRecorder{pods: map[string]*corev1.Pod{}, lowestReady: 1 << 30}
	ch, err := env.Store.Watch(env.Ctx, resource.Pods, ns, store.WatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for ev := range ch {
			r.mu.Lock()
			p, _ := ev.Object.(*corev1.Pod)
			switch ev.Type {
			case watch.Added, watch.Modified:
				r.pods[p.Name] = p
			case watch.Deleted:
				delete(r.pods, p.Name)
			}
			r.check(ev.Object.GetResourceVersion())
			r.mu.Unlock()
		}
	}()
	return r
}

func (r *podRecorder) counts() (ready, total int) {
	for _, p := range r.pods {
		if p.DeletionTimestamp != nil {
			continue
		}
		total++
		if replicaset.IsPodReady(p) {
			ready++
		}
	}
	return ready, total
}

func (r *podRecorder) check(rv string) {
	if !r.armed {
		return
	}
	ready, total := r.counts()
	r.lowestReady = min(r.lowestReady, ready)
	r.highestTotal = max(r.highestTotal, total)
	if ready < r.minReady || total > r.maxAll {
		r.violations = append(r.violations, fmt.Sprintf("at revision %s: %d ready of %d pods", rv, ready, total))
	}
}

func (r *podRecorder) arm(minReady, maxAll int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.armed, r.minReady, r.maxAll = true, minReady, maxAll
	r.check("arm")
}

func TestRollingUpdateStaysWithinBounds(t *testing.T) {
	for _, tt := range []struct {
		name               string
		replicas           int32
		surge, unavailable intstr.IntOrString
	}{
		{"defaults 25%", 8, intstr.FromString("25%"), intstr.FromString("25%")},
		{"surge only", 5, intstr.FromInt32(1), intstr.FromInt32(0)},
		{"unavailable only", 5, intstr.FromInt32(0), intstr.FromInt32(2)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			env := start(t)
			runKubelet(t, env)
			rec := recordPods(t, env)
			d := newDeployment("web", tt.replicas, "web:1")
			d.Spec.Strategy = appsv1.DeploymentStrategy{Type: appsv1.RollingUpdateDeploymentStrategyType,
				RollingUpdate: &appsv1.RollingUpdateDeployment{MaxSurge: &tt.surge, MaxUnavailable: &tt.unavailable}}
			env.MustCreate(resource.Deployments, d)
			env.Eventually(60*time.Second, "first rollout", rolledOut(t, env, "web", "web:1", tt.replicas))
			surge, unavailable, _ := deployment.ResolveFenceposts(&tt.surge, &tt.unavailable, tt.replicas)
			rec.arm(int(tt.replicas-unavailable), int(tt.replicas+surge))

			for _, image := range []string{"web:2", "web:3"} {
				updateDeploy(t, env, "web", func(d *appsv1.Deployment) { d.Spec.Template.Spec.Containers[0].Image = image })
				env.Eventually(60*time.Second, "rollout to "+image, rolledOut(t, env, "web", image, tt.replicas))
			}
			rec.mu.Lock()
			defer rec.mu.Unlock()
			if len(rec.violations) > 0 {
				t.Fatalf("bounds [%d ready, %d total] violated:\n%v", tt.replicas-unavailable, tt.replicas+surge, rec.violations)
			}
			t.Logf("lowest ready %d (floor %d), highest total %d (ceiling %d)", rec.lowestReady, tt.replicas-unavailable, rec.highestTotal, tt.replicas+surge)

			d = getDeploy(t, env, "web")
			if d.Annotations[deployment.RevisionAnnotation] != "3" {
				t.Errorf("revision %q, want 3", d.Annotations[deployment.RevisionAnnotation])
			}
			for _, rs := range replicaSets(env) {
				hash := rs.Spec.Template.Labels[appsv1.DefaultDeploymentUniqueLabelKey]
				if rs.Name != "web-"+hash || rs.Spec.Selector.MatchLabels[appsv1.DefaultDeploymentUniqueLabelKey] != hash {
					t.Errorf("replica set %s: hash label %q, selector %v", rs.Name, hash, rs.Spec.Selector.MatchLabels)
				}
				tmpl := rs.Spec.Template.DeepCopy()
				delete(tmpl.Labels, appsv1.DefaultDeploymentUniqueLabelKey)
				if want := deployment.ComputeHash(tmpl, nil); hash != want {
					t.Errorf("replica set %s: hash %s, want %s", rs.Name, hash, want)
				}
				if ref := metav1.GetControllerOf(rs); ref == nil || ref.Kind != "Deployment" || ref.UID != d.UID || !ptr.Deref(ref.BlockOwnerDeletion, false) {
					t.Errorf("replica set %s: owner %+v", rs.Name, ref)
				}
			}
		})
	}
}

func TestRecreate(t *testing.T) {
	env := start(t)
	runKubelet(t, env)
	rec := recordPods(t, env)
	d := newDeployment("db", 3, "db:1")
	d.Spec.Strategy = appsv1.DeploymentStrategy{Type: appsv1.RecreateDeploymentStrategyType}
	env.MustCreate(resource.Deployments, d)
	env.Eventually(60*time.Second, "first rollout", rolledOut(t, env, "db", "db:1", 3))

	// Track whether old and new pods ever coexist.
	var mixed []string
	stop := make(chan struct{})
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
			rec.mu.Lock()
			images := map[string]bool{}
			for _, p := range rec.pods {
				images[p.Spec.Containers[0].Image] = true
			}
			if len(images) > 1 {
				mixed = append(mixed, fmt.Sprint(images))
			}
			rec.mu.Unlock()
		}
	}()
	updateDeploy(t, env, "db", func(d *appsv1.Deployment) { d.Spec.Template.Spec.Containers[0].Image = "db:2" })
	env.Eventually(60*time.Second, "recreated", rolledOut(t, env, "db", "db:2", 3))
	close(stop)
	if len(mixed) > 0 {
		t.Fatalf("old and new pods existed together: %v", mixed[0])
	}
}

func TestPauseAndScaleWhilePaused(t *testing.T) {
	env := start(t)
	runKubelet(t, env)
	env.MustCreate(resource.Deployments, newDeployment("api", 2, "api:1"))
	env.Eventually(60*time.Second, "first rollout", rolledOut(t, env, "api", "api:1", 2))
	updateDeploy(t, env, "api", func(d *appsv1.Deployment) {
		d.Spec.Paused = true
		d.Spec.Template.Spec.Containers[0].Image = "api:2"
	})
	env.Eventually(30*time.Second, "paused condition", func() error {
		if c := condition(getDeploy(t, env, "api"), appsv1.DeploymentProgressing); c == nil || c.Reason != deployment.ReasonPaused {
			return fmt.Errorf("progressing %+v", c)
		}
		return nil
	})
	// Scaling applies while paused; the template change does not.
	updateDeploy(t, env, "api", func(d *appsv1.Deployment) { d.Spec.Replicas = ptr.To[int32](4) })
	env.Eventually(30*time.Second, "scaled while paused", func() error {
		ps := activePods(env)
		if len(ps) != 4 {
			return fmt.Errorf("%d pods", len(ps))
		}
		return nil
	})
	for _, p := range activePods(env) {
		if p.Spec.Containers[0].Image != "api:1" {
			t.Fatalf("pod %s runs %s while the deployment is paused", p.Name, p.Spec.Containers[0].Image)
		}
	}
	if n := len(replicaSets(env)); n != 1 {
		t.Fatalf("%d replica sets while paused, want 1", n)
	}
	updateDeploy(t, env, "api", func(d *appsv1.Deployment) { d.Spec.Paused = false })
	env.Eventually(60*time.Second, "rollout after resume", rolledOut(t, env, "api", "api:2", 4))
}

// TestDeletingDeploymentOnlySyncsStatus: a Deployment held by a foreground deletion (no garbage
// collector runs here to finish it) neither scales nor rolls out, as in Kubernetes; its status
// still follows its generation.
func TestDeletingDeploymentOnlySyncsStatus(t *testing.T) {
	env := start(t)
	runKubelet(t, env)
	env.MustCreate(resource.Deployments, newDeployment("gone", 2, "gone:1"))
	env.Eventually(60*time.Second, "first rollout", rolledOut(t, env, "gone", "gone:1", 2))
	if _, err := env.Store.Delete(env.Ctx, resource.Deployments, ns, "gone",
		store.DeleteOptions{PropagationPolicy: ptr.To(metav1.DeletePropagationForeground)}); err != nil {
		t.Fatal(err)
	}
	updateDeploy(t, env, "gone", func(d *appsv1.Deployment) {
		d.Spec.Replicas = ptr.To[int32](5)
		d.Spec.Template.Spec.Containers[0].Image = "gone:2"
	})
	env.Eventually(30*time.Second, "status of the new generation", func() error {
		d := getDeploy(t, env, "gone")
		if d.DeletionTimestamp == nil {
			t.Fatal("the deployment is not being deleted")
		}
		if d.Status.ObservedGeneration != d.Generation {
			return fmt.Errorf("observedGeneration %d, generation %d", d.Status.ObservedGeneration, d.Generation)
		}
		return nil
	})
	time.Sleep(500 * time.Millisecond) // a scale would have been written along with the status
	rss := replicaSets(env)
	if len(rss) != 1 || ptr.Deref(rss[0].Spec.Replicas, 0) != 2 {
		for _, rs := range rss {
			t.Errorf("replica set %s: %d replicas", rs.Name, ptr.Deref(rs.Spec.Replicas, 0))
		}
		t.Fatal("a deployment being deleted was scaled or rolled out; want its one replica set left at 2")
	}
	if n := len(activePods(env)); n != 2 {
		t.Fatalf("%d pods, want 2", n)
	}
}

func TestRevertReusesOldReplicaSetAndHistoryLimit(t *testing.T) {
	env := start(t)
	runKubelet(t, env)
	d := newDeployment("app", 2, "app:1")
	d.Spec.RevisionHistoryLimit = ptr.To[int32](2)
	env.MustCreate(resource.Deployments, d)
	env.Eventually(60*time.Second, "v1", rolledOut(t, env, "app", "app:1", 2))
	firstRS := replicaSets(env)[0]
	setImage := func(image string) {
		updateDeploy(t, env, "app", func(d *appsv1.Deployment) { d.Spec.Template.Spec.Containers[0].Image = image })
		env.Eventually(60*time.Second, image, rolledOut(t, env, "app", image, 2))
	}
	setImage("app:2")
	setImage("app:1") // the Git revert
	rss := replicaSets(env)
	if len(rss) != 2 {
		t.Fatalf("%d replica sets after a revert, want 2", len(rss))
	}
	var reused *appsv1.ReplicaSet
	for _, rs := range rss {
		if rs.UID == firstRS.UID {
			reused = rs
		}
	}
	if reused == nil || *reused.Spec.Replicas != 2 {
		t.Fatalf("the original replica set was not reused: %v", rss)
	}
	if got := reused.Annotations[deployment.RevisionAnnotation]; got != "3" {
		t.Errorf("reused replica set revision %q, want 3", got)
	}
	if got := reused.Annotations[deployment.RevisionHistoryAnnotation]; got != "1" {
		t.Errorf("revision history %q, want 1", got)
	}
	if got := getDeploy(t, env, "app").Annotations[deployment.RevisionAnnotation]; got != "3" {
		t.Errorf("deployment revision %q, want 3", got)
	}

	setImage("app:3")
	setImage("app:4")
	// Old replica sets: app:1 (rev 3), app:2 (rev 2) -> deleted first, app:3 (rev 4); limit 2.
	env.Eventually(30*time.Second, "history limited to 2", func() error {
		rss := replicaSets(env)
		var images []string
		for _, rs := range rss {
			images = append(images, rs.Spec.Template.Spec.Containers[0].Image)
		}
		if len(rss) != 3 {
			return fmt.Errorf("replica sets for %v, want app:1, app:3 and app:4", images)
		}
		for _, im := range images {
			if im == "app:2" {
				return fmt.Errorf("the oldest revision app:2 was kept: %v", images)
			}
		}
		return nil
	})
}

func TestProportionalScalingMidRollout(t *testing.T) {
	env := start(t)
	k := runKubelet(t, env)
	env.MustCreate(resource.Deployments, newDeployment("mid", 10, "mid:1"))
	env.Eventually(60*time.Second, "v1", rolledOut(t, env, "mid", "mid:1", 10))
	k.set(false) // the new pods never get ready: the rollout stalls
	updateDeploy(t, env, "mid", func(d *appsv1.Deployment) { d.Spec.Template.Spec.Containers[0].Image = "mid:2" })
	env.Eventually(30*time.Second, "stalled rollout", func() error {
		sizes := rsSizes(env)
		if sizes["mid:1"] != 8 || sizes["mid:2"] != 5 {
			return fmt.Errorf("sizes %v, want mid:1=8 mid:2=5", sizes)
		}
		return nil
	})
	updateDeploy(t, env, "mid", func(d *appsv1.Deployment) { d.Spec.Replicas = ptr.To[int32](20) })
	// 13 -> 25 pods (20 + surge 5): 12 more, shared 8:5 -> +7 (15) and +5 (10).
	env.Eventually(30*time.Second, "proportional scale-up", func() error {
		sizes := rsSizes(env)
		if sizes["mid:1"] != 15 || sizes["mid:2"] != 10 {
			return fmt.Errorf("sizes %v, want mid:1=15 mid:2=10", sizes)
		}
		return nil
	})
}

func rsSizes(env *controllertest.Env) map[string]int32 {
	out := map[string]int32{}
	for _, rs := range replicaSets(env) {
		out[rs.Spec.Template.Spec.Containers[0].Image] = *rs.Spec.Replicas
	}
	return out
}

func TestProgressDeadlineExceeded(t *testing.T) {
	env := start(t)
	k := runKubelet(t, env)
	d := newDeployment("slow", 2, "slow:1")
	d.Spec.ProgressDeadlineSeconds = ptr.To[int32](1)
	env.MustCreate(resource.Deployments, d)
	env.Eventually(60*time.Second, "v1", rolledOut(t, env, "slow", "slow:1", 2))
	if c := condition(getDeploy(t, env, "slow"), appsv1.DeploymentAvailable); c == nil || c.Status != corev1.ConditionTrue {
		t.Fatalf("available condition %+v", c)
	}
	k.set(false)
	updateDeploy(t, env, "slow", func(d *appsv1.Deployment) { d.Spec.Template.Spec.Containers[0].Image = "slow:2" })
	env.Eventually(30*time.Second, "deadline exceeded", func() error {
		c := condition(getDeploy(t, env, "slow"), appsv1.DeploymentProgressing)
		if c == nil || c.Status != corev1.ConditionFalse || c.Reason != deployment.ReasonTimedOut {
			return fmt.Errorf("progressing %+v", c)
		}
		return nil
	})
	k.set(true)
	env.Eventually(60*time.Second, "completes once pods get ready", rolledOut(t, env, "slow", "slow:2", 2))
}
