//go:build e2e

package network_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/bosun-gitops/bosun/e2e/e2eutil"
	"github.com/bosun-gitops/bosun/nodeagent/proxy"
)

// echoScript is the backend: busybox httpd with a CGI that answers "<pod name> <client address>".
// On SIGTERM it keeps serving for 3 s before it stops, as a real service drains: requests sent
// before the proxies dropped the pod still get answers.
const echoScript = `mkdir -p /www/cgi-bin
printf '#!/bin/sh\nprintf "Content-Type: text/plain\\r\\n\\r\\n"\necho "$(hostname) $REMOTE_ADDR"\n' > /www/cgi-bin/who
chmod +x /www/cgi-bin/who
httpd -f -p 0.0.0.0:8080 -h /www &
pid=$!
trap 'sleep 3; kill $pid; exit 0' TERM
wait $pid`

func workloadYAML(image string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Namespace
metadata: {name: net}
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: echo, namespace: net}
spec:
  selector: {matchLabels: {app: echo}}
  template:
    metadata: {labels: {app: echo}}
    spec:
      terminationGracePeriodSeconds: 10
      containers:
      - name: echo
        image: %s
        imagePullPolicy: IfNotPresent
        command: [/bin/sh, -c, %q]
        ports: [{name: http, containerPort: 8080}]
        readinessProbe:
          tcpSocket: {port: 8080}
          periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata: {name: echo, namespace: net}
spec:
  type: NodePort
  selector: {app: echo}
  ports: [{name: http, port: 80, targetPort: http}]
`, image, echoScript)
}

// request is the shell snippet of one HTTP request with nc; busybox wget crashes in these
// containers (see TestNetwork's note), nc does not.
func request(target string) string { return requestPort(target, 80) }

func requestPort(target string, port int) string {
	return fmt.Sprintf(`printf 'GET /cgi-bin/who HTTP/1.0\r\n\r\n' | nc -w 2 %s %d`, target, port)
}

// answer is one parsed response: the backend pod and the client address it saw.
type answer struct {
	ok          bool
	pod, remote string
	raw         string
}

// requestLoop is a script making n requests to target, each answer framed by a marker line.
func requestLoop(target string, n int) string {
	return fmt.Sprintf(`i=0; while [ $i -lt %d ]; do i=$((i+1)); echo "=== $i"; %s; done; echo "=== end"`, n, request(target))
}

// parseAnswers splits requestLoop output into answers.
func parseAnswers(out string) []answer {
	var as []answer
	chunks := strings.Split(out, "=== ")
	for _, c := range chunks[1:] {
		if strings.HasPrefix(c, "end") {
			break
		}
		as = append(as, parseAnswer(c))
	}
	return as
}

func parseAnswer(raw string) answer {
	a := answer{raw: raw}
	if !strings.Contains(raw, " 200 ") {
		return a
	}
	lines := strings.Split(strings.TrimSpace(strings.ReplaceAll(raw, "\r", "")), "\n")
	f := strings.Fields(lines[len(lines)-1])
	if len(f) != 2 {
		return a
	}
	a.ok, a.pod, a.remote = true, f[0], strings.TrimPrefix(f[1], "::ffff:")
	return a
}

// spread counts answers per backend pod and the failures.
func spread(as []answer) (map[string]int, int) {
	per, failed := map[string]int{}, 0
	for _, a := range as {
		if a.ok {
			per[a.pod]++
		} else {
			failed++
		}
	}
	return per, failed
}

func keys(m map[string]int) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// TestNetwork runs the cluster with the agents' default service proxy (iptables, BOSUN-* chains).
func TestNetwork(t *testing.T) { testNetwork(t, proxy.ModeIPTables) }

// TestNetworkNFTables runs the same cluster with the nftables service proxy.
func TestNetworkNFTables(t *testing.T) { testNetwork(t, proxy.ModeNFTables) }

// testNetwork runs the cluster once and checks the network behaviours in order; each step
// relies on the cluster the previous ones left.
func testNetwork(t *testing.T, proxyMode string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	ph := newPhases()
	before := hostIPTables(t)
	c := startCluster(t, ctx, ph, proxyMode)
	c.joinAgents(t, ctx)
	nodes := c.waitNodesReady(t, ctx)
	ph.mark(t, "agents joined, 3 nodes Ready")

	c.repo.Write(map[string]string{"apps/echo.yaml": workloadYAML(c.lab.BusyboxRef())})
	c.repo.CommitAndPush("echo daemonset and service")
	pods := c.waitEchoReady(t, ctx, nil)
	svc := c.waitService(t, ctx, len(nodes))
	ph.mark(t, "git push -> 3 echo pods Ready, in endpoints")
	// The proxies sync at most once a second (MinSyncPeriod): wait for every machine's rules.
	c.waitProxies(t, ctx, pods)
	ph.mark(t, "every machine's proxy has the 3 endpoints")

	byNode := map[string]*corev1.Pod{}
	for _, p := range pods {
		byNode[p.Spec.NodeName] = p
	}
	a, b := byNode["m1"], byNode["m2"]
	if a == nil || b == nil {
		t.Fatalf("echo pods by node: %v", byNode)
	}

	t.Run("pod to pod across machines keeps the source address", func(t *testing.T) {
		out, err := c.podExec(ctx, a, "echo", requestPort(b.Status.PodIP, 8080))
		if err != nil {
			t.Fatal(err)
		}
		got := parseAnswer(out)
		want := answer{ok: true, pod: b.Name, remote: a.Status.PodIP}
		if !got.ok || got.pod != want.pod || got.remote != want.remote {
			t.Errorf("%s (%s on m1) -> %s (%s on m2): got pod %q remote %q, want %q %q\n%s",
				a.Name, a.Status.PodIP, b.Name, b.Status.PodIP, got.pod, got.remote, want.pod, want.remote, out)
		}
		// The other direction and the third machine too.
		for _, from := range pods {
			for _, to := range pods {
				if from == to {
					continue
				}
				out, err := c.podExec(ctx, from, "echo", requestPort(to.Status.PodIP, 8080))
				got := parseAnswer(out)
				if err != nil || !got.ok || got.pod != to.Name || got.remote != from.Status.PodIP {
					t.Errorf("%s -> %s: %+v, %v", from.Spec.NodeName, to.Spec.NodeName, got, err)
				}
			}
		}
	})
	ph.mark(t, "pod to pod across machines")

	// busybox wget was reported to segfault in containers here; record what it does.
	out, err := c.podExec(ctx, a, "echo", fmt.Sprintf("wget -q -O - http://%s:8080/cgi-bin/who; echo rc=$?", b.Status.PodIP))
	t.Logf("note: busybox wget in a pod: %q, %v", strings.TrimSpace(out), err)

	const n = 30
	t.Run("ClusterIP spreads over the backends of every machine", func(t *testing.T) {
		for _, target := range []string{svc.Spec.ClusterIP, "echo.net.svc.cluster.local"} {
			out, err := c.podExec(ctx, a, "echo", requestLoop(target, n))
			if err != nil {
				t.Fatalf("%s: %v", target, err)
			}
			per, failed := spread(parseAnswers(out))
			t.Logf("%s from %s: %v, %d failed", target, a.Spec.NodeName, per, failed)
			if failed > 0 || len(per) != len(pods) {
				t.Errorf("%s: %d answers from %v with %d failures; want answers from all %d pods and no failure\n%s",
					target, n-failed, keys(per), failed, len(pods), e2eutil.Tail(out, 20))
			}
		}
		out, err := c.podExec(ctx, a, "echo", "nslookup echo.net.svc.cluster.local")
		if err != nil || !strings.Contains(out, svc.Spec.ClusterIP) {
			t.Errorf("nslookup in a pod: want %s:\n%s %v", svc.Spec.ClusterIP, out, err)
		}
	})
	ph.mark(t, "ClusterIP and DNS name spread (2x30 requests)")

	t.Run("NodePort answers on every machine", func(t *testing.T) {
		port := svc.Spec.Ports[0].NodePort
		client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
		for _, m := range c.lab.Machines() {
			seen := map[string]int{}
			for range 9 {
				resp, err := client.Get(fmt.Sprintf("http://%s/cgi-bin/who", net.JoinHostPort(m.Addr().String(), fmt.Sprint(port))))
				if err != nil {
					t.Errorf("NodePort on %s: %v", m.Name(), err)
					continue
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if f := strings.Fields(string(body)); resp.StatusCode == 200 && len(f) == 2 {
					seen[f[0]]++
				} else {
					t.Errorf("NodePort on %s: %s %q", m.Name(), resp.Status, body)
				}
			}
			t.Logf("NodePort %s:%d -> %v", m.Addr(), port, seen)
		}
	})
	ph.mark(t, "NodePort on 3 machines (27 requests)")

	t.Run("flushed service rules are restored", func(t *testing.T) {
		m1 := c.machine(t, "m1")
		// iptables: flush the nat table; nftables: delete every table of Bosun's.
		flush := "iptables -t nat -F"
		if c.proxyMode == proxy.ModeNFTables {
			flush = "nft list tables | awk '$2 == \"ip\" && $3 ~ /^bosun/ {print $3}' | while read -r t; do nft delete table ip $t; done; iptables -t nat -F"
		}
		if out, err := m1.Exec(ctx, "sh", "-c", flush); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		flushed := time.Now()
		if out, err := c.podExec(ctx, a, "echo", request(svc.Spec.ClusterIP)); err == nil && parseAnswer(out).ok {
			t.Fatalf("the ClusterIP still answers after the flush: the test proves nothing\n%s", out)
		}
		waitFor(t, ctx, "the ClusterIP to answer again from m1", func() (bool, string) {
			out, err := c.podExec(ctx, a, "echo", request(svc.Spec.ClusterIP))
			return err == nil && parseAnswer(out).ok, fmt.Sprintf("%v %q", err, out)
		})
		t.Logf("service rules restored %v after the flush", time.Since(flushed).Round(100*time.Millisecond))
		out, err := c.podExec(ctx, a, "echo", requestLoop(svc.Spec.ClusterIP, n))
		if per, failed := spread(parseAnswers(out)); err != nil || failed > 0 || len(per) != len(pods) {
			t.Errorf("after the restore: %v, %d failed, %v", per, failed, err)
		}
		// nodeagent/routes restores its masquerade jump at its next resync.
		waitFor(t, ctx, "the pod masquerade rule on m1", func() (bool, string) {
			out, err := m1.Exec(ctx, "iptables-save", "-t", "nat")
			return err == nil && strings.Contains(string(out), "-j BOSUN-POD-MASQ") &&
				strings.Contains(string(out), "-A BOSUN-POD-MASQ -s 10.244.0.0/16"), string(out)
		})
		t.Logf("pod masquerade restored %v after the flush", time.Since(flushed).Round(100*time.Millisecond))
	})
	ph.mark(t, "flushed service rules restored")

	t.Run("a deleted backend leaves the rotation without failed requests", func(t *testing.T) {
		victim := b
		client := byNode["m3"]
		// The loop runs until the test creates /tmp/stop (bounded at 1500 requests).
		loop := fmt.Sprintf(`rm -f /tmp/stop; i=0; while [ $i -lt 1500 ] && [ ! -e /tmp/stop ]; do i=$((i+1)); echo "=== $i"; %s; sleep 0.02; done; echo "=== end"`,
			request(svc.Spec.ClusterIP))
		var out string
		var loopErr error
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			out, loopErr = c.podExec(ctx, client, "echo", loop)
		}()
		time.Sleep(2 * time.Second)
		if err := c.kube.CoreV1().Pods("net").Delete(ctx, victim.Name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		deleted := time.Now()
		waitFor(t, ctx, "the deleted pod to leave the endpoints", func() (bool, string) {
			ep, err := c.kube.CoreV1().Endpoints("net").Get(ctx, "echo", metav1.GetOptions{})
			if err != nil {
				return false, err.Error()
			}
			return !endpointsHave(ep, victim.Status.PodIP), fmt.Sprint(ep.Subsets)
		})
		left := time.Since(deleted)
		// Keep the loop going past the grace period so the drained pod's end is covered too.
		waitFor(t, ctx, "the deleted pod to be gone", func() (bool, string) {
			_, err := c.kube.CoreV1().Pods("net").Get(ctx, victim.Name, metav1.GetOptions{})
			return err != nil, fmt.Sprint(err)
		})
		time.Sleep(2 * time.Second)
		if _, err := c.podExec(ctx, client, "echo", "touch /tmp/stop"); err != nil {
			t.Fatal(err)
		}
		wg.Wait()
		if loopErr != nil {
			t.Fatalf("request loop: %v\n%s", loopErr, e2eutil.Tail(out, 20))
		}
		as := parseAnswers(out)
		per, failed := spread(as)
		lastVictim := -1
		for i, a := range as {
			if a.ok && a.pod == victim.Name {
				lastVictim = i
			}
		}
		after := len(as) - 1 - lastVictim
		t.Logf("%d requests during the deletion of %s: %v, %d failed; endpoints dropped it %v after the delete; %d answers after its last one",
			len(as), victim.Name, per, failed, left.Round(100*time.Millisecond), after)
		if failed > 1 {
			var bad []string
			for i, a := range as {
				if !a.ok {
					bad = append(bad, fmt.Sprintf("#%d: %q", i+1, a.raw))
				}
			}
			t.Errorf("%d failed requests (at most 1 in flight at a time): %s", failed, strings.Join(bad, "; "))
		}
		if lastVictim < 0 || after < 20 {
			t.Errorf("the victim answered %d times, last at #%d of %d: the loop did not cover the deletion", per[victim.Name], lastVictim+1, len(as))
		}
		// The DaemonSet replaces the pod; the service ends up with three backends again.
		c.waitEchoReady(t, ctx, map[string]bool{victim.Name: true})
		c.waitService(t, ctx, len(nodes))
	})
	ph.mark(t, "backend deletion under load")

	// The agents' network parts never failed a sync (the proxy used to delete nodeagent/routes'
	// masquerade chain in its first sync, so the routes' first sync failed on "No chain").
	for name, p := range c.agents {
		b, err := os.ReadFile(p.LogPath())
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range strings.Split(string(b), "\n") {
			if strings.Contains(l, "component=routes") && strings.Contains(l, "level=WARN") ||
				strings.Contains(l, "component=proxy") && (strings.Contains(l, "level=ERROR") || strings.Contains(l, "falling back")) {
				t.Errorf("agent on %s: %s", name, l)
			}
		}
	}

	// Leave nothing behind: stop the operator, close the lab and look.
	if t.Failed() {
		c.dumpState(t)
		c.lab.DumpLogs(testLogWriter{t})
	}
	c.op.Stop()
	id, dir := c.lab.ID(), c.lab.Dir()
	c.closed = true
	if err := c.lab.Close(); err != nil {
		t.Fatalf("closing the lab: %v", err)
	}
	ph.mark(t, "operator stopped, lab closed")
	checkNothingLeft(t, id, dir, before)
	t.Logf("timings:\n  %s", strings.Join(ph.lines, "\n  "))
}

// waitProxies waits until the service rules of every machine DNAT to every pod.
func (c *cluster) waitProxies(t *testing.T, ctx context.Context, pods []*corev1.Pod) {
	t.Helper()
	list, dnat := []string{"iptables-save", "-t", "nat"}, "--to-destination %s:8080"
	if c.proxyMode == proxy.ModeNFTables {
		list, dnat = []string{"nft", "list", "ruleset"}, "dnat to %s:8080"
	}
	for _, m := range c.lab.Machines() {
		waitFor(t, ctx, "the service rules on "+m.Name(), func() (bool, string) {
			out, err := m.Exec(ctx, list[0], list[1:]...)
			if err != nil {
				return false, err.Error()
			}
			for _, p := range pods {
				if !strings.Contains(string(out), fmt.Sprintf(dnat, p.Status.PodIP)) {
					return false, "no DNAT to " + p.Name + " " + p.Status.PodIP
				}
			}
			return true, ""
		})
	}
}

type testLogWriter struct{ t *testing.T }

func (w testLogWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func endpointsHave(ep *corev1.Endpoints, ip string) bool {
	for _, s := range ep.Subsets {
		for _, a := range append(append([]corev1.EndpointAddress(nil), s.Addresses...), s.NotReadyAddresses...) {
			if a.IP == ip {
				return true
			}
		}
	}
	return false
}

// waitEchoReady waits for one Ready echo pod per node, none of them in exclude, and returns them.
func (c *cluster) waitEchoReady(t *testing.T, ctx context.Context, exclude map[string]bool) []*corev1.Pod {
	t.Helper()
	var ready []*corev1.Pod
	waitFor(t, ctx, "one Ready echo pod per machine", func() (bool, string) {
		l, err := c.kube.CoreV1().Pods("net").List(ctx, metav1.ListOptions{LabelSelector: "app=echo"})
		if err != nil {
			return false, err.Error()
		}
		ready = nil
		var state []string
		nodes := map[string]bool{}
		for i := range l.Items {
			p := &l.Items[i]
			state = append(state, fmt.Sprintf("%s node=%s phase=%s ip=%s ready=%v", p.Name, p.Spec.NodeName, p.Status.Phase, p.Status.PodIP, podReady(p)))
			if podReady(p) && p.DeletionTimestamp == nil && !exclude[p.Name] && !nodes[p.Spec.NodeName] {
				nodes[p.Spec.NodeName] = true
				ready = append(ready, p)
			}
		}
		return len(ready) == len(c.lab.Machines()), strings.Join(state, "; ")
	})
	return ready
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue && p.Status.PodIP != ""
		}
	}
	return false
}

// waitService waits until the echo Service has its ClusterIP, NodePort and n ready endpoints.
func (c *cluster) waitService(t *testing.T, ctx context.Context, n int) *corev1.Service {
	t.Helper()
	var svc *corev1.Service
	waitFor(t, ctx, fmt.Sprintf("service net/echo with %d endpoints", n), func() (bool, string) {
		var err error
		svc, err = c.kube.CoreV1().Services("net").Get(ctx, "echo", metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		if svc.Spec.ClusterIP == "" || svc.Spec.Ports[0].NodePort == 0 {
			return false, fmt.Sprintf("clusterIP %q nodePort %d", svc.Spec.ClusterIP, svc.Spec.Ports[0].NodePort)
		}
		ep, err := c.kube.CoreV1().Endpoints("net").Get(ctx, "echo", metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		ready := 0
		for _, s := range ep.Subsets {
			ready += len(s.Addresses)
		}
		return ready == n, fmt.Sprint(ep.Subsets)
	})
	return svc
}

// hostIPTables is the host's ruleset, to check that the lab left no rule on the host.
func hostIPTables(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("iptables-save").Output()
	if err != nil {
		t.Fatalf("iptables-save: %v", err)
	}
	return string(out)
}

// checkNothingLeft looks for anything of the lab on the host: namespaces, links, mounts,
// processes, its directory, and iptables rules of the pod network or the lab subnet.
func checkNothingLeft(t *testing.T, id, dir, iptablesBefore string) {
	t.Helper()
	out, _ := exec.Command("ip", "netns", "list").Output()
	if strings.Contains(string(out), id) {
		t.Errorf("namespaces of lab %s left:\n%s", id, out)
	}
	out, _ = exec.Command("ip", "-o", "link", "show").Output()
	if strings.Contains(string(out), id) {
		t.Errorf("links of lab %s left:\n%s", id, out)
	}
	mounts, _ := os.ReadFile("/proc/self/mountinfo")
	for _, l := range strings.Split(string(mounts), "\n") {
		if strings.Contains(l, dir) || strings.Contains(l, "bosun-lab"+id) {
			t.Errorf("mount left: %s", l)
		}
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("lab dir %s left: %v", dir, err)
	}
	procs, _ := os.ReadDir("/proc")
	for _, p := range procs {
		cmdline, err := os.ReadFile("/proc/" + p.Name() + "/cmdline")
		if err == nil && strings.Contains(string(cmdline), dir) {
			t.Errorf("process %s of the lab left: %q", p.Name(), strings.ReplaceAll(string(cmdline), "\x00", " "))
		}
	}
	if out, err := exec.Command("nft", "list", "tables").Output(); err == nil && strings.Contains(string(out), "table ip bosun") {
		t.Errorf("an nftables table of Bosun's left on the host:\n%s", out)
	}
	after := hostIPTables(t)
	for _, l := range strings.Split(after, "\n") {
		if (strings.Contains(l, "10.244.") || strings.Contains(l, "192.168.78.") || strings.Contains(l, "BOSUN-")) &&
			!strings.Contains(iptablesBefore, l) {
			t.Errorf("iptables rule left on the host: %s", l)
		}
	}
}
