package nodeagent_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bosun-gitops/bosun/internal/testutil/images"
	"github.com/bosun-gitops/bosun/nodeagent/agenttest"
	"github.com/bosun-gitops/bosun/nodeagent/pods"
	"github.com/bosun-gitops/bosun/nodeagent/runtime/runtimetest"
	"github.com/containerd/containerd"
	"github.com/containerd/containerd/namespaces"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

const clusterYAML = `apiVersion: bosun.dev/v1alpha1
kind: Cluster
metadata:
  name: test
spec:
  podCIDR: 10.244.0.0/16
  serviceCIDR: 10.96.0.0/16
  clusterDomain: cluster.local
`

const namespaceYAML = `apiVersion: v1
kind: Namespace
metadata:
  name: t
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: cfg
  namespace: t
data:
  greeting: hello
`

// deployment renders a one-replica Deployment named name whose pod spec is podSpec (indented
// YAML under `spec:` of the template).
func deployment(name, podSpec string) string {
	return fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata:
  name: %[1]s
  namespace: t
spec:
  replicas: 1
  selector:
    matchLabels: {app: %[1]s}
  template:
    metadata:
      labels: {app: %[1]s}
    spec:
%[2]s`, name, podSpec)
}

func container(name, image, script, extra string) string {
	return fmt.Sprintf(`      - name: %s
        image: %s
        imagePullPolicy: IfNotPresent
        command: [sh, -c, %q]
%s`, name, image, script, extra)
}

// TestPodsOnContainerd runs real pods from Git through the operator and an agent on a private
// containerd: env and volumes, localhost between containers, securityContext, crash loop,
// probes, OOM kill, registry pulls, agent kill -9 with adoption, graceful stop and cleanup.
func TestPodsOnContainerd(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping the containerd integration test in -short mode")
	}
	runtimetest.SkipUnlessRoot(t)
	imgDir := t.TempDir()
	tarPath, ref := images.Busybox(t, imgDir, "busybox")
	registry := runtimetest.StartRegistry(t)
	img, err := images.BuildBusybox("bosun.test/pushed:v1")
	if err != nil {
		t.Fatal(err)
	}
	if err := runtimetest.Push(context.Background(), registry, "test/busybox", "v1", img, nil); err != nil {
		t.Fatalf("pushing to the registry: %v", err)
	}
	hostDir := t.TempDir()

	files := map[string]string{
		"bosun.yaml":       clusterYAML,
		"t/namespace.yaml": namespaceYAML,
		"t/app.yaml": deployment("app", `      terminationGracePeriodSeconds: 20
      containers:
`+container("main", ref, `echo GREETING=$GREETING FOO=$FOO; echo cfg=$(cat /cfg/greeting); trap 'echo got-SIGTERM > /host/term; exit 0' TERM; httpd -p 8080 -h /www; while true; do sleep 1; done`, `        env:
        - {name: FOO, value: bar}
        - name: GREETING
          valueFrom: {configMapKeyRef: {name: cfg, key: greeting}}
        volumeMounts:
        - {name: cfg, mountPath: /cfg}
        - {name: host, mountPath: /host}
        readinessProbe:
          httpGet: {path: /index.html, port: 8080}
          periodSeconds: 1
        livenessProbe:
          tcpSocket: {port: 8080}
          periodSeconds: 2
`)+container("side", ref, `for i in 1 2 3 4 5 6 7 8 9 10; do if printf 'GET /index.html HTTP/1.0\r\n\r\n' | nc 127.0.0.1 8080; then break; fi; sleep 1; done; sleep 3600`, "")+`      volumes:
      - name: cfg
        configMap: {name: cfg}
      - name: host
        hostPath: {path: `+hostDir+`, type: Directory}
`),
		"t/service.yaml": `apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: t
spec:
  selector: {app: app}
  ports:
  - {port: 80, targetPort: 8080}
`,
		"t/client.yaml": deployment("client", "      terminationGracePeriodSeconds: 1\n      containers:\n"+container("c", ref,
			`while true; do ip=$(nslookup web.t.svc.cluster.local | awk '/^Address: /{print $2}' | tail -n 1); if [ -n "$ip" ] && printf 'GET /index.html HTTP/1.0\r\n\r\n' | nc $ip 80; then echo "via-service=$ip"; break; fi; sleep 1; done; sleep 3600`, "")),
		"t/gone.yaml":  deployment("gone", "      terminationGracePeriodSeconds: 1\n      containers:\n"+container("c", ref, "sleep 3600", "")),
		"t/crash.yaml": deployment("crash", "      containers:\n"+container("c", ref, "echo crashing; exit 3", "")),
		"t/notready.yaml": deployment("notready", "      terminationGracePeriodSeconds: 1\n      containers:\n"+container("c", ref, "sleep 3600", `        readinessProbe:
          exec: {command: ["false"]}
          periodSeconds: 1
`)),
		"t/liveness.yaml": deployment("liveness", "      terminationGracePeriodSeconds: 1\n      containers:\n"+container("c", ref, "echo started; sleep 3600", `        livenessProbe:
          exec: {command: ["false"]}
          periodSeconds: 1
          failureThreshold: 2
`)),
		"t/oom.yaml": deployment("oom", "      containers:\n"+container("c", ref, "echo filling; x=aaaaaaaaaaaaaaaa; while true; do x=$x$x; done", `        resources:
          limits: {memory: 24Mi}
`)),
		"t/hostnet.yaml": deployment("hostnet", "      hostNetwork: true\n      terminationGracePeriodSeconds: 1\n      containers:\n"+container("c", ref,
			`echo "netns=$(readlink /proc/self/ns/net) hostname=$(hostname) etc-hostname=$(cat /etc/hostname)"; httpd -p 18080 -h /www; sleep 3600`,
			"        ports: [{containerPort: 18080}]\n")),
		"t/downward.yaml": deployment("downward", "      terminationGracePeriodSeconds: 1\n      containers:\n"+container("c", ref,
			`echo "labels=$(tr '\n' ' ' < /info/labels) mem=$(cat /info/mem) greeting=$(cat /all/greeting) name=$(cat /all/name) all-fs=$(awk '$2=="/all"{print $3}' /proc/mounts)"; sleep 3600`,
			`        resources:
          limits: {memory: 32Mi}
        volumeMounts:
        - {name: info, mountPath: /info}
        - {name: all, mountPath: /all}
`)+`      volumes:
      - name: info
        downwardAPI:
          items:
          - {path: labels, fieldRef: {fieldPath: metadata.labels}}
          - {path: mem, resourceFieldRef: {containerName: c, resource: limits.memory, divisor: 1Mi}}
      - name: all
        projected:
          sources:
          - configMap: {name: cfg}
          - downwardAPI: {items: [{path: name, fieldRef: {fieldPath: metadata.name}}]}
`),
		"t/job.yaml": `apiVersion: v1
kind: Pod
metadata: {name: job, namespace: t, labels: {app: job}}
spec:
  restartPolicy: Never
  containers:
  - name: c
    image: ` + ref + `
    imagePullPolicy: IfNotPresent
    command: [sh, -c, "echo job-done"]
`,
		"t/secure.yaml": deployment("secure", "      terminationGracePeriodSeconds: 1\n      securityContext: {supplementalGroups: [1234]}\n      containers:\n"+
			container("caps", ref, `echo "$(grep -E '^(CapEff|NoNewPrivs):' /proc/self/status | tr '\t\n' '  ')"; touch /x 2>/dev/null && echo root-writable || echo root-read-only; sleep 3600`,
				"        securityContext: {readOnlyRootFilesystem: true, allowPrivilegeEscalation: false, capabilities: {drop: [ALL], add: [NET_BIND_SERVICE]}}\n")+
			container("nonroot", ref, "id; sleep 3600", "        securityContext: {runAsNonRoot: true, runAsUser: 65534}\n")),
		"t/rootonly.yaml": deployment("rootonly", "      securityContext: {runAsNonRoot: true}\n      containers:\n"+container("c", ref, "sleep 3600", "")),
		"t/pull.yaml":     deployment("pull", "      terminationGracePeriodSeconds: 1\n      containers:\n"+container("c", registry+"/test/busybox:v1", "sleep 3600", "")),
		"t/badpull.yaml":  deployment("badpull", "      containers:\n"+container("c", registry+"/test/busybox:nope", "sleep 3600", "")),
	}
	c := agenttest.Start(t, agenttest.Options{Files: files, Images: []string{tarPath}, PlainHTTP: []string{registry}})
	c.StartAgent()
	crashGaps := recordRestarts(c, "crash", 3)

	running := func(ps []corev1.Pod) bool {
		return len(ps) == 1 && ps[0].Status.Phase == corev1.PodRunning && ps[0].Status.PodIP != ""
	}
	ready := func(ps []corev1.Pod) bool { return running(ps) && podReady(&ps[0]) }

	// Run, env and volumes, localhost.
	app := c.WaitPods("t", "app=app", 2*time.Minute, "Running and Ready with an IP", ready)[0]
	t.Logf("pod %s Running, IP %s", app.Name, app.Status.PodIP)
	waitLog(t, c, app.Name, "main", "GREETING=hello FOO=bar", "cfg=hello")
	waitLog(t, c, app.Name, "side", strings.TrimSpace(images.IndexHTML))

	// A Service by name (cluster DNS) and ClusterIP (proxy) from a pod on the node.
	client := c.WaitPods("t", "app=client", time.Minute, "Running", running)[0]
	waitLog(t, c, client.Name, "c", "via-service=10.96.", strings.TrimSpace(images.IndexHTML))

	// A hostNetwork pod: the node's network namespace, hostname and address, its port on the node.
	hostnet := c.WaitPods("t", "app=hostnet", time.Minute, "Running", running)[0]
	if hostnet.Status.PodIP != hostnet.Status.HostIP {
		t.Errorf("hostNetwork pod IP %s, want the node's address %s", hostnet.Status.PodIP, hostnet.Status.HostIP)
	}
	ourNetns, err := os.Readlink("/proc/self/ns/net") // the agent runs in the test's network namespace
	if err != nil {
		t.Fatal(err)
	}
	hostname, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	waitLog(t, c, hostnet.Name, "c", "netns="+ourNetns+" ", "hostname="+hostname+" ", "etc-hostname="+hostname)
	waitHTTP(t, "127.0.0.1:18080", strings.TrimSpace(images.IndexHTML))

	// A pod that has finished gives its network back at once; its container and log stay.
	job := c.WaitPods("t", "app=job", time.Minute, "Succeeded", func(ps []corev1.Pod) bool {
		return len(ps) == 1 && ps[0].Status.Phase == corev1.PodSucceeded
	})[0]
	for deadline := time.Now().Add(30 * time.Second); exists(filepath.Join(c.RunDir, "netns", string(job.UID))); {
		if time.Now().After(deadline) {
			t.Fatalf("the finished pod %s still has its network namespace after 30 s\n%s", job.Name, c.AgentLog(30))
		}
		time.Sleep(100 * time.Millisecond)
	}
	if len(containersOf(t, c.Socket, string(job.UID))) != 1 {
		t.Errorf("finished pod %s: containers %v, want its exited container kept until the pod is deleted", job.Name, containersOf(t, c.Socket, string(job.UID)))
	}
	waitLog(t, c, job.Name, "c", "job-done")

	// downwardAPI and projected volumes.
	downward := c.WaitPods("t", "app=downward", time.Minute, "Running", running)[0]
	// The projected volume (a Secret's data could be in it) is on tmpfs, never on the node's disk.
	waitLog(t, c, downward.Name, "c", `labels=app="downward" `, " mem=32 ", " greeting=hello ", " name="+downward.Name+" ", "all-fs=tmpfs")

	// securityContext: capabilities, no_new_privs, read-only root, user and groups; runAsNonRoot
	// refused for an image that runs as root.
	secure := c.WaitPods("t", "app=secure", time.Minute, "Running", running)[0]
	waitLog(t, c, secure.Name, "caps", "CapEff: 0000000000000400 ", "NoNewPrivs: 1 ", "root-read-only")
	waitLog(t, c, secure.Name, "nonroot", "uid=65534(nobody) gid=65534(nogroup) groups=1234,65534(nogroup)")
	rootOnly := c.WaitPods("t", "app=rootonly", time.Minute, "CreateContainerConfigError", func(ps []corev1.Pod) bool {
		w := waiting(ps)
		return w != nil && w.Reason == "CreateContainerConfigError"
	})
	if msg := waiting(rootOnly).Message; !strings.HasPrefix(msg, "container has runAsNonRoot and image will run as root") {
		t.Errorf("runAsNonRoot on a root image: message %q, want the kubelet's", msg)
	}

	// Registry pull and pull error.
	c.WaitPods("t", "app=pull", 2*time.Minute, "image pulled from the registry, Running", running)
	bad := c.WaitPods("t", "app=badpull", time.Minute, "ErrImagePull or ImagePullBackOff", func(ps []corev1.Pod) bool {
		w := waiting(ps)
		return w != nil && (w.Reason == "ErrImagePull" || w.Reason == "ImagePullBackOff")
	})
	if msg := waiting(bad).Message; !strings.Contains(msg, "nope") || !strings.Contains(msg, "not found") {
		t.Errorf("pull error message = %q, want the registry's not found for the tag", msg)
	} else {
		t.Logf("pull error: %s: %s", waiting(bad).Reason, msg)
	}

	// Probes.
	c.WaitPods("t", "app=liveness", time.Minute, "restarted by the failing liveness probe", func(ps []corev1.Pod) bool {
		return len(ps) == 1 && len(ps[0].Status.ContainerStatuses) == 1 && ps[0].Status.ContainerStatuses[0].RestartCount >= 1
	})
	nr := c.WaitPods("t", "app=notready", time.Minute, "Running", running)[0]
	time.Sleep(5 * time.Second) // several probe periods
	nr = c.Pods("t", "app=notready")[0]
	if podReady(&nr) || nr.Status.ContainerStatuses[0].Ready || nr.Status.ContainerStatuses[0].RestartCount != 0 {
		t.Errorf("pod with a failing readiness probe: ready=%v containerReady=%v restarts=%d, want not ready and never restarted",
			podReady(&nr), nr.Status.ContainerStatuses[0].Ready, nr.Status.ContainerStatuses[0].RestartCount)
	}

	// OOM kill.
	c.WaitPods("t", "app=oom", time.Minute, "OOMKilled", func(ps []corev1.Pod) bool {
		if len(ps) != 1 || len(ps[0].Status.ContainerStatuses) != 1 {
			return false
		}
		cs := ps[0].Status.ContainerStatuses[0]
		return (cs.LastTerminationState.Terminated != nil && cs.LastTerminationState.Terminated.Reason == "OOMKilled") ||
			(cs.State.Terminated != nil && cs.State.Terminated.Reason == "OOMKilled")
	})

	// Crash loop back-off: the times between restarts, recorded since the agent started.
	c.WaitPods("t", "app=crash", 2*time.Minute, "CrashLoopBackOff", func(ps []corev1.Pod) bool {
		w := waiting(ps)
		return w != nil && w.Reason == "CrashLoopBackOff"
	})
	select {
	case gaps := <-crashGaps:
		t.Logf("crash loop: time between restarts %v (back-off 10s doubling to 5m, plus the run time)", gaps)
	case <-time.After(2 * time.Minute):
		t.Errorf("crash loop: 3 restarts not seen within 2m")
	}

	// Agent kill -9: running containers are adopted, a pod deleted meanwhile is stopped and
	// deleted for good when the agent returns (it stays Terminating until then, as in Kubernetes).
	app = c.Pods("t", "app=app")[0]
	gone := c.WaitPods("t", "app=gone", time.Minute, "Running", running)[0]
	before := containerIDs(&app)
	c.KillAgent()
	c.Repo.Remove("t/gone.yaml")
	// A pod bound while the agent is down: its container is created once the agent has read
	// the Services again, with their variables (enableServiceLinks).
	c.Repo.Write(map[string]string{"t/svcenv.yaml": deployment("svcenv", "      terminationGracePeriodSeconds: 1\n      containers:\n"+
		container("c", ref, `echo "svc=$WEB_SERVICE_HOST:$WEB_SERVICE_PORT link=$WEB_PORT"; sleep 3600`, ""))})
	c.Repo.CommitAndPush("delete gone and add svcenv while the agent is down")
	c.WaitPods("t", "app=gone", time.Minute, "marked for deletion (Terminating)", func(ps []corev1.Pod) bool {
		return len(ps) == 1 && ps[0].UID == gone.UID && ps[0].DeletionTimestamp != nil
	})
	if n := len(containersOf(t, c.Socket, string(gone.UID))); n == 0 {
		t.Fatalf("the deleted pod's containers are gone before the agent returned: the test cannot tell cleanup from luck")
	}
	c.StartAgent()
	c.WaitPods("t", "app=gone", time.Minute, "deleted from the API once the agent stopped it", func(ps []corev1.Pod) bool { return len(ps) == 0 })
	deadline := time.Now().Add(time.Minute)
	for len(containersOf(t, c.Socket, string(gone.UID))) > 0 || exists(filepath.Join(c.RunDir, "netns", string(gone.UID))) {
		if time.Now().After(deadline) {
			t.Fatalf("pod deleted while the agent was down: containers %v or netns still there after 1m\n%s", containersOf(t, c.Socket, string(gone.UID)), c.AgentLog(30))
		}
		time.Sleep(200 * time.Millisecond)
	}
	time.Sleep(2 * time.Second) // let the adopted pod's worker settle and report
	app = c.Pods("t", "app=app")[0]
	for _, cs := range app.Status.ContainerStatuses {
		if cs.RestartCount != 0 {
			t.Errorf("container %s of %s restarted %d times; its tcpSocket liveness probe on a serving port must pass", cs.Name, app.Name, cs.RestartCount)
		}
	}
	if after := containerIDs(&app); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("containers after the agent's kill -9 and restart = %v, want the same as before %v (adopted)", after, before)
	}
	if !podReady(&app) {
		t.Errorf("adopted pod not Ready after the agent's restart")
	}
	web, err := c.Admin.CoreV1().Services("t").Get(context.Background(), "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ip := web.Spec.ClusterIP
	svcenv := c.WaitPods("t", "app=svcenv", time.Minute, "Running", running)[0]
	waitLog(t, c, svcenv.Name, "c", fmt.Sprintf("svc=%s:80 link=tcp://%s:80", ip, ip))

	// Graceful stop and cleanup: delete every workload from Git.
	for _, f := range []string{"t/app.yaml", "t/svcenv.yaml", "t/hostnet.yaml", "t/downward.yaml", "t/client.yaml", "t/crash.yaml", "t/notready.yaml", "t/liveness.yaml", "t/oom.yaml", "t/pull.yaml", "t/badpull.yaml", "t/secure.yaml", "t/rootonly.yaml", "t/job.yaml"} {
		c.Repo.Remove(f)
	}
	c.Repo.CommitAndPush("delete everything")
	c.WaitPods("t", "", time.Minute, "every pod deleted", func(ps []corev1.Pod) bool { return len(ps) == 0 })
	deadline = time.Now().Add(time.Minute)
	for {
		left := containersOf(t, c.Socket, "")
		netns, _ := os.ReadDir(filepath.Join(c.RunDir, "netns"))
		if len(left) == 0 && len(netns) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after deleting every pod: containers %v, pinned netns %d left\n%s", left, len(netns), c.AgentLog(30))
		}
		time.Sleep(200 * time.Millisecond)
	}
	if data, err := os.ReadFile(filepath.Join(hostDir, "term")); err != nil || strings.TrimSpace(string(data)) != "got-SIGTERM" {
		t.Errorf("graceful stop: /host/term = %q, %v; want got-SIGTERM written by the container's TERM trap", data, err)
	}
	checkNoLeftovers(t, c)
	// Nobody else wrote these pods' status, so the agent never had to write its own back: a
	// write-back here would mean a status does not survive the API round trip and every pod
	// would be rewritten at each resync.
	if n := strings.Count(c.AgentLog(1000000), "changed by someone else"); n > 0 {
		t.Errorf("the agent wrote a pod status back %d times although nobody else changed it:\n%s", n, c.AgentLog(40))
	}
}

// recordRestarts polls the pod of Deployment app until its container restarted n times and
// sends the times between the restarts.
func recordRestarts(c *agenttest.Cluster, app string, n int32) <-chan []time.Duration {
	out := make(chan []time.Duration, 1)
	go func() {
		var seen []time.Time
		last := int32(0)
		deadline := time.Now().Add(3 * time.Minute)
		for time.Now().Before(deadline) {
			l, err := c.Admin.CoreV1().Pods("t").List(context.Background(), metav1.ListOptions{LabelSelector: "app=" + app})
			if err == nil && len(l.Items) == 1 && len(l.Items[0].Status.ContainerStatuses) == 1 {
				if rc := l.Items[0].Status.ContainerStatuses[0].RestartCount; rc > last {
					seen = append(seen, time.Now())
					last = rc
				}
			}
			if last >= n {
				var gaps []time.Duration
				for i := 1; i < len(seen); i++ {
					gaps = append(gaps, seen[i].Sub(seen[i-1]).Round(100*time.Millisecond))
				}
				out <- gaps
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	}()
	return out
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func waiting(ps []corev1.Pod) *corev1.ContainerStateWaiting {
	if len(ps) != 1 || len(ps[0].Status.ContainerStatuses) != 1 {
		return nil
	}
	return ps[0].Status.ContainerStatuses[0].State.Waiting
}

func containerIDs(p *corev1.Pod) map[string]string {
	out := map[string]string{}
	for _, cs := range p.Status.ContainerStatuses {
		out[cs.Name] = fmt.Sprintf("%s restarts=%d", cs.ContainerID, cs.RestartCount)
	}
	return out
}

func waitLog(t *testing.T, c *agenttest.Cluster, pod, container string, want ...string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		got, err := c.Logs("t", pod, container, false)
		missing := ""
		for _, w := range want {
			if !strings.Contains(got, w) {
				missing = w
			}
		}
		if err == nil && missing == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("logs of %s/%s = %q, %v; want %q", pod, container, got, err, missing)
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// waitHTTP waits until GET / on addr answers with a body containing want.
func waitHTTP(t *testing.T, addr, want string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		body, err := httpGet(addr)
		if err == nil && strings.Contains(body, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET http://%s/ = %q, %v; want a body containing %q", addr, body, err, want)
		}
		time.Sleep(300 * time.Millisecond)
	}
}

func httpGet(addr string) (string, error) {
	cl := http.Client{Timeout: 2 * time.Second}
	resp, err := cl.Get("http://" + addr + "/")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// containersOf lists the containerd containers of a pod UID ("" = every container) in the
// agent's namespace.
func containersOf(t testing.TB, socket, uid string) []string {
	t.Helper()
	cl, err := containerd.New(socket, containerd.WithTimeout(5*time.Second))
	if err != nil {
		t.Fatalf("containerd: %v", err)
	}
	defer cl.Close()
	ctx := namespaces.WithNamespace(context.Background(), "bosun")
	var filters []string
	if uid != "" {
		filters = append(filters, fmt.Sprintf("labels.%q==%s", pods.LabelPodUID, uid))
	}
	cs, err := cl.Containers(ctx, filters...)
	if err != nil {
		t.Fatalf("listing containers: %v", err)
	}
	var ids []string
	for _, x := range cs {
		ids = append(ids, x.ID())
	}
	return ids
}

func exists(p string) bool { _, err := os.Stat(p); return err == nil }

// checkNoLeftovers: no mounts under the agent's dirs, no host-local IPAM allocations, no
// iptables rules naming a pod address.
func checkNoLeftovers(t *testing.T, c *agenttest.Cluster) {
	t.Helper()
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 && (strings.HasPrefix(fields[4], c.AgentDir) || strings.HasPrefix(fields[4], c.RunDir)) {
			t.Errorf("mount left behind: %s", fields[4])
		}
	}
	ipam := filepath.Join(c.AgentDir, "network", "ipam")
	filepath.Walk(ipam, func(p string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() && strings.HasPrefix(info.Name(), "10.244.") {
			t.Errorf("IPAM allocation left behind: %s", p)
		}
		return nil
	})
	out, err := exec.Command("iptables-save").CombinedOutput()
	if err != nil {
		t.Fatalf("iptables-save: %v: %s", err, out)
	}
	for _, l := range strings.Split(string(out), "\n") {
		if strings.Contains(l, "CNI-") || (strings.Contains(l, "10.244.") && !strings.Contains(l, "10.244.0.0/16")) {
			t.Errorf("iptables rule left behind: %s", l)
		}
	}
}
