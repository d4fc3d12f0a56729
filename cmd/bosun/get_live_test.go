package main

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/bosun-gitops/bosun/internal/testutil"
	"github.com/bosun-gitops/bosun/operator"
	"github.com/bosun-gitops/bosun/operator/simnodes"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// liveManifests is a small cluster: a Deployment behind a Service, a ReplicationController, a
// DaemonSet and a Deployment whose pod fits on no node.
var liveManifests = map[string]string{
	"apps/web.yaml": `apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: default}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: httpd, image: busybox:1.36, resources: {requests: {cpu: 100m}}}]
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
`,
	"apps/legacy.yaml": `apiVersion: v1
kind: ReplicationController
metadata: {name: legacy, namespace: default}
spec:
  replicas: 1
  selector: {app: legacy}
  template:
    metadata: {labels: {app: legacy}}
    spec:
      containers: [{name: app, image: busybox:1.36}]
`,
	"system/logger.yaml": `apiVersion: apps/v1
kind: DaemonSet
metadata: {name: logger, namespace: default}
spec:
  selector: {matchLabels: {app: logger}}
  template:
    metadata: {labels: {app: logger}}
    spec:
      containers: [{name: logger, image: busybox:1.36}]
`,
	"apps/big.yaml": `apiVersion: apps/v1
kind: Deployment
metadata: {name: big, namespace: default}
spec:
  replicas: 1
  selector: {matchLabels: {app: big}}
  template:
    metadata: {labels: {app: big}}
    spec:
      containers: [{name: app, image: busybox:1.36, resources: {requests: {cpu: "64"}}}]
`,
}

// liveCluster is an operator running in the test process, syncing a real Git repository, with two
// simulated nodes registered through its API.
type liveCluster struct {
	kubeconfig string
	client     kubernetes.Interface
}

func startLiveCluster(t *testing.T) *liveCluster {
	t.Helper()
	if testing.Short() {
		t.Skip("runs a whole operator")
	}
	repo := testutil.NewGitRepo(t)
	repo.Write(liveManifests)
	repo.CommitAndPush("a small cluster")
	log := slog.New(slog.NewTextHandler(testLog{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	op, err := operator.New(operator.Config{DataDir: filepath.Join(t.TempDir(), "data"), Repo: repo.Bare,
		Interval: time.Second, Listen: "127.0.0.1:0", Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- op.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Error("operator did not stop within 30s")
		}
	})
	select {
	case <-op.Ready():
	case err := <-done:
		t.Fatalf("operator stopped: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("operator not ready within 60s")
	}
	c := &liveCluster{kubeconfig: op.Server().AdminKubeconfigPath()}
	cfg, err := clientcmd.BuildConfigFromFlags("", c.kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	if c.client, err = kubernetes.NewForConfig(cfg); err != nil {
		t.Fatal(err)
	}
	sim, err := simnodes.New(simnodes.Config{Client: c.client, Logger: log, HeartbeatInterval: time.Second, StartDelay: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	go sim.Run(ctx)
	if err := sim.AddNodes(ctx, simnodes.NodeSpec{Name: "node-0", CPU: "2"}, simnodes.NodeSpec{Name: "node-1", CPU: "2"}); err != nil {
		t.Fatal(err)
	}
	return c
}

type testLog struct{ t *testing.T }

func (w testLog) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func eventually(t *testing.T, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	var err error
	for time.Now().Before(deadline) {
		if err = cond(); err == nil {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("%s: not within 60s: %v", what, err)
}

// bosun runs the CLI against the cluster and returns its standard output.
func (c *liveCluster) bosun(t *testing.T, args ...string) string {
	t.Helper()
	out, errOut, err := runCmd(t, append([]string{"--kubeconfig", c.kubeconfig}, args...)...)
	if err != nil {
		t.Fatalf("bosun %s: %v\n%s", strings.Join(args, " "), err, errOut)
	}
	return out
}

// parseTable checks that the table's header is exactly headers and returns its rows as
// header → cell, cutting each line at the columns' start offsets (cells may be empty).
func parseTable(t *testing.T, out string, headers ...string) []map[string]string {
	t.Helper()
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if got := regexp.MustCompile(` {3,}`).Split(strings.TrimSpace(lines[0]), -1); !cmp.Equal(headers, got) {
		t.Fatalf("table header %q, want columns %q:\n%s", lines[0], headers, out)
	}
	starts := make([]int, len(headers))
	for i, h := range headers {
		starts[i] = strings.Index(lines[0], h)
	}
	var rows []map[string]string
	for _, l := range lines[1:] {
		row := map[string]string{}
		for i, h := range headers {
			end := len(l)
			if i+1 < len(starts) {
				end = min(starts[i+1], len(l))
			}
			row[h] = strings.TrimSpace(l[min(starts[i], len(l)):end])
		}
		rows = append(rows, row)
	}
	return rows
}

// findRow returns the row whose column key equals value.
func findRow(t *testing.T, rows []map[string]string, key, value string) map[string]string {
	t.Helper()
	for _, r := range rows {
		if r[key] == value {
			return r
		}
	}
	t.Fatalf("no row with %s %q in %v", key, value, rows)
	return nil
}

var cmpSorted = cmpopts.SortSlices(func(a, b string) bool { return a < b })

// wantCells checks the cells of a row.
func wantCells(t *testing.T, what string, row map[string]string, want map[string]string) {
	t.Helper()
	got := map[string]string{}
	for k := range want {
		got[k] = row[k]
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("%s (-want +got):\n%s", what, diff)
	}
}

// TestGetAgainstLiveOperator runs `bosun get`, `bosun events` and `bosun describe pod` against a
// running operator with simulated nodes and checks the rows against the objects the API holds.
func TestGetAgainstLiveOperator(t *testing.T) {
	c := startLiveCluster(t)
	ctx := context.Background()
	podsOf := func(app string) []corev1.Pod {
		l, err := c.client.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: "app=" + app})
		if err != nil {
			t.Fatal(err)
		}
		return l.Items
	}
	running := func(app string, n int) error {
		pods := podsOf(app)
		if len(pods) != n {
			return fmt.Errorf("%d %s pods, want %d", len(pods), app, n)
		}
		for _, p := range pods {
			if p.Status.Phase != corev1.PodRunning || p.Status.PodIP == "" {
				return fmt.Errorf("pod %s: phase %s ip %q", p.Name, p.Status.Phase, p.Status.PodIP)
			}
		}
		return nil
	}
	eventually(t, "workloads running and their status written", func() error {
		for app, n := range map[string]int{"web": 2, "legacy": 1, "logger": 2} {
			if err := running(app, n); err != nil {
				return err
			}
		}
		d, err := c.client.AppsV1().Deployments("default").Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			return err
		}
		ds, err := c.client.AppsV1().DaemonSets("default").Get(ctx, "logger", metav1.GetOptions{})
		if err != nil {
			return err
		}
		rc, err := c.client.CoreV1().ReplicationControllers("default").Get(ctx, "legacy", metav1.GetOptions{})
		if err != nil {
			return err
		}
		ep, err := c.client.CoreV1().Endpoints("default").Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			return err
		}
		ready := 0
		for _, ss := range ep.Subsets {
			ready += len(ss.Addresses)
		}
		if d.Status.AvailableReplicas != 2 || ds.Status.NumberAvailable != 2 || rc.Status.ReadyReplicas != 1 || ready != 2 {
			return fmt.Errorf("web available %d, logger available %d, legacy ready %d, web endpoints %d",
				d.Status.AvailableReplicas, ds.Status.NumberAvailable, rc.Status.ReadyReplicas, ready)
		}
		big := podsOf("big")
		if len(big) != 1 || len(big[0].Status.Conditions) == 0 {
			return fmt.Errorf("the big pod has no PodScheduled condition yet")
		}
		return nil
	})

	t.Run("nodes", func(t *testing.T) {
		rows := parseTable(t, c.bosun(t, "get", "nodes"), "NAME", "STATUS", "ROLES", "AGE", "VERSION")
		wide := parseTable(t, c.bosun(t, "get", "nodes", "-o", "wide"), "NAME", "STATUS", "ROLES", "AGE", "VERSION",
			"INTERNAL-IP", "EXTERNAL-IP", "OS-IMAGE", "KERNEL-VERSION", "CONTAINER-RUNTIME")
		if len(rows) != 2 || len(wide) != 2 {
			t.Fatalf("%d and %d node rows, want 2", len(rows), len(wide))
		}
		for _, name := range []string{"node-0", "node-1"} {
			n, err := c.client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			wantCells(t, name, findRow(t, rows, "NAME", name), map[string]string{"STATUS": "Ready", "ROLES": "<none>", "VERSION": n.Status.NodeInfo.KubeletVersion})
			wantCells(t, name+" -o wide", findRow(t, wide, "NAME", name), map[string]string{
				"INTERNAL-IP": nodeAddress(n, corev1.NodeInternalIP), "EXTERNAL-IP": "<none>", "OS-IMAGE": "<unknown>"})
		}
	})

	t.Run("pods", func(t *testing.T) {
		rows := parseTable(t, c.bosun(t, "get", "pods", "-o", "wide"),
			"NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE", "NOMINATED NODE", "READINESS GATES", "SOURCE")
		for _, app := range []string{"web", "legacy", "logger"} {
			for _, p := range podsOf(app) {
				wantCells(t, "pod "+p.Name, findRow(t, rows, "NAME", p.Name), map[string]string{
					"READY": "1/1", "STATUS": "Running", "RESTARTS": "0", "IP": p.Status.PodIP, "NODE": p.Spec.NodeName,
					"NOMINATED NODE": "<none>", "READINESS GATES": "<none>"})
			}
		}
		big := podsOf("big")[0]
		wantCells(t, "unschedulable pod", findRow(t, rows, "NAME", big.Name), map[string]string{
			"READY": "0/1", "STATUS": "Pending", "IP": "<none>", "NODE": "<none>"})
		if len(rows) != 6 {
			t.Errorf("%d pod rows, want 6", len(rows))
		}
	})

	t.Run("workloads", func(t *testing.T) {
		deploys := parseTable(t, c.bosun(t, "get", "deploy"), "NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE")
		wantCells(t, "deploy web", findRow(t, deploys, "NAME", "web"), map[string]string{"READY": "2/2", "UP-TO-DATE": "2", "AVAILABLE": "2"})
		wantCells(t, "deploy big", findRow(t, deploys, "NAME", "big"), map[string]string{"READY": "0/1", "UP-TO-DATE": "1", "AVAILABLE": "0"})

		rss, err := c.client.AppsV1().ReplicaSets("default").List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
		if err != nil || len(rss.Items) != 1 {
			t.Fatalf("web replica sets: %v, %v", rss, err)
		}
		rs := rss.Items[0]
		rows := parseTable(t, c.bosun(t, "get", "rs", "-o", "wide"), "NAME", "DESIRED", "CURRENT", "READY", "AGE", "CONTAINERS", "IMAGES", "SELECTOR", "SOURCE")
		wantCells(t, "rs "+rs.Name, findRow(t, rows, "NAME", rs.Name), map[string]string{
			"DESIRED": "2", "CURRENT": "2", "READY": "2", "CONTAINERS": "httpd", "IMAGES": "busybox:1.36",
			"SELECTOR": "app=web,pod-template-hash=" + rs.Labels[appsv1.DefaultDeploymentUniqueLabelKey]})

		rcs := parseTable(t, c.bosun(t, "get", "rc"), "NAME", "DESIRED", "CURRENT", "READY", "AGE")
		wantCells(t, "rc legacy", findRow(t, rcs, "NAME", "legacy"), map[string]string{"DESIRED": "1", "CURRENT": "1", "READY": "1"})

		dss := parseTable(t, c.bosun(t, "get", "ds"), "NAME", "DESIRED", "CURRENT", "READY", "UP-TO-DATE", "AVAILABLE", "NODE SELECTOR", "AGE")
		wantCells(t, "ds logger", findRow(t, dss, "NAME", "logger"), map[string]string{
			"DESIRED": "2", "CURRENT": "2", "READY": "2", "UP-TO-DATE": "2", "AVAILABLE": "2", "NODE SELECTOR": "<none>"})
	})

	t.Run("services and endpoints", func(t *testing.T) {
		svc, err := c.client.CoreV1().Services("default").Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		svcs := parseTable(t, c.bosun(t, "get", "svc"), "NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE")
		wantCells(t, "svc web", findRow(t, svcs, "NAME", "web"), map[string]string{
			"TYPE": "ClusterIP", "CLUSTER-IP": svc.Spec.ClusterIP, "EXTERNAL-IP": "<none>", "PORT(S)": "80/TCP"})

		eps := parseTable(t, c.bosun(t, "get", "ep"), "NAME", "ENDPOINTS", "AGE")
		got := strings.Split(findRow(t, eps, "NAME", "web")["ENDPOINTS"], ",")
		var want []string
		for _, p := range podsOf("web") {
			want = append(want, p.Status.PodIP+":8080")
		}
		if diff := cmp.Diff(want, got, cmpSorted); diff != "" {
			t.Errorf("endpoints of web (-want +got):\n%s", diff)
		}
	})

	t.Run("events", func(t *testing.T) {
		web := podsOf("web")[0]
		eventually(t, "events of the deployment and the scheduler", func() error {
			rows := parseTable(t, c.bosun(t, "get", "events"), "LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE")
			want := []string{"Normal ScalingReplicaSet deployment/web", "Normal Scheduled pod/" + web.Name,
				"Warning FailedScheduling pod/" + podsOf("big")[0].Name}
			have := map[string]bool{}
			for _, r := range rows {
				have[r["TYPE"]+" "+r["REASON"]+" "+r["OBJECT"]] = true
			}
			for _, w := range want {
				if !have[w] {
					return fmt.Errorf("no %q event row in %v", w, rows)
				}
			}
			return nil
		})
		rows := parseTable(t, c.bosun(t, "events", "--for", "pod/"+web.Name), "LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE")
		wantCells(t, "bosun events --for pod/"+web.Name, findRow(t, rows, "REASON", "Scheduled"), map[string]string{
			"TYPE": "Normal", "OBJECT": "Pod/" + web.Name,
			"MESSAGE": fmt.Sprintf("Successfully assigned default/%s to %s", web.Name, web.Spec.NodeName)})
	})

	t.Run("describe pod", func(t *testing.T) {
		web := podsOf("web")[0]
		out := c.bosun(t, "describe", "pod", web.Name)
		for _, want := range []string{
			`(?m)^Node:\s+` + regexp.QuoteMeta(web.Spec.NodeName+"/"+web.Status.HostIP) + `$`,
			`(?m)^Status:\s+Running$`,
			`(?m)^IP:\s+` + regexp.QuoteMeta(web.Status.PodIP) + `$`,
			`(?m)^Controlled By:\s+ReplicaSet/web-`,
			`(?m)^    State:\s+Running$`,
			`(?m)^Conditions:\n  Type\s+Status\s+Reason\s+Message\n  ----`,
			`(?m)^  PodScheduled\s+True\s`,
			`(?m)^  Ready\s+True\s`,
			`(?m)^Events:\n  Type\s+Reason\s+Age\s+From\s+Message\n  ----\s+------\s+----\s+----\s+-------\n`,
			`(?m)^  Normal\s+Scheduled\s+\S+\s+\S+\s+Successfully assigned default/` + regexp.QuoteMeta(web.Name+" to "+web.Spec.NodeName) + `$`,
		} {
			if !regexp.MustCompile(want).MatchString(out) {
				t.Errorf("describe pod %s lacks %s:\n%s", web.Name, want, out)
			}
		}

		big := podsOf("big")[0]
		out = c.bosun(t, "describe", "pod", big.Name)
		for _, want := range []string{
			`(?m)^Node:\s+<none>$`,
			`(?m)^Status:\s+Pending$`,
			`(?m)^  PodScheduled\s+False\s+Unschedulable\s+0/2 nodes are available: 2 Insufficient cpu\.$`,
			`(?m)^  Warning\s+FailedScheduling\s+.*0/2 nodes are available: 2 Insufficient cpu\.$`,
		} {
			if !regexp.MustCompile(want).MatchString(out) {
				t.Errorf("describe pod %s lacks %s:\n%s", big.Name, want, out)
			}
		}
	})
}
