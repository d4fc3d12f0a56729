package nodeagent_test

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bosun-gitops/bosun/internal/pki"
	"github.com/bosun-gitops/bosun/nodeagent"
	"github.com/bosun-gitops/bosun/nodeagent/node"
	"github.com/bosun-gitops/bosun/operator/apiserver"
	"github.com/bosun-gitops/bosun/operator/store/storetest"
	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"
)

type cluster struct {
	srv    *apiserver.Server
	admin  kubernetes.Interface
	config *rest.Config
	caHash string
}

func startCluster(t *testing.T) *cluster {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := apiserver.New(ctx, apiserver.Config{Listen: "127.0.0.1:0", DataDir: t.TempDir(), Store: storetest.NewStore(t), Logger: storetest.Logger(t)})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	<-srv.Ready()
	cfg, err := clientcmd.BuildConfigFromFlags("", srv.AdminKubeconfigPath())
	if err != nil {
		t.Fatal(err)
	}
	cs := kubernetes.NewForConfigOrDie(cfg)
	for _, ns := range []string{"default", "kube-system", "kube-node-lease"} {
		if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	return &cluster{srv: srv, admin: cs, config: cfg, caHash: apiserver.CACertHash(srv.CA().Cert)}
}

// token stores a bootstrap token as `bosun token create` does.
func (c *cluster) token(t *testing.T, id, secret string, expires time.Time) string {
	t.Helper()
	data := map[string][]byte{"token-id": []byte(id), "token-secret": []byte(secret), "usage-bootstrap-authentication": []byte("true"),
		"expiration": []byte(expires.UTC().Format(time.RFC3339))}
	_, err := c.admin.CoreV1().Secrets("kube-system").Create(context.Background(), &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "bootstrap-token-" + id}, Type: "bootstrap.kubernetes.io/token", Data: data}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return id + "." + secret
}

func TestJoinRefusals(t *testing.T) {
	c := startCluster(t)
	good := c.token(t, "abcdef", "0123456789abcdef", time.Now().Add(time.Hour))
	expired := c.token(t, "expire", "0123456789abcdef", time.Now().Add(-time.Minute))
	ctx := context.Background()
	for _, tc := range []struct {
		name    string
		opts    nodeagent.JoinOptions
		wantErr string
	}{
		{"unknown token", nodeagent.JoinOptions{Token: "zzzzzz.0123456789abcdef", CACertHash: c.caHash}, `401 Unauthorized: bootstrap token "zzzzzz" is unknown`},
		{"wrong secret", nodeagent.JoinOptions{Token: "abcdef.aaaaaaaaaaaaaaaa", CACertHash: c.caHash}, `bootstrap token "abcdef" is unknown`},
		{"expired token", nodeagent.JoinOptions{Token: expired, CACertHash: c.caHash}, `bootstrap token "expire" expired at`},
		{"pin mismatch", nodeagent.JoinOptions{Token: good, CACertHash: "sha256:" + strings.Repeat("0", 64)}, "not the pinned"},
		{"no pin", nodeagent.JoinOptions{Token: good}, "--insecure-skip-ca-verification"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.opts.Server = c.srv.URL()
			tc.opts.NodeName = "n1"
			tc.opts.NodeIP = "127.0.0.1"
			tc.opts.DataDir = t.TempDir()
			_, err := nodeagent.Join(ctx, tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Join error = %v, want it to contain %q", err, tc.wantErr)
			}
			if _, err := os.Stat(filepath.Join(tc.opts.DataDir, nodeagent.ConfigFileName)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("agent.yaml written after a refused join: %v", err)
			}
		})
	}
	// A bootstrap token is good for joining only.
	bc := rest.CopyConfig(c.config)
	bc.BearerToken = good
	if _, err := kubernetes.NewForConfigOrDie(bc).CoreV1().Pods("").List(ctx, metav1.ListOptions{}); err == nil || !strings.Contains(err.Error(), "forbidden") {
		t.Errorf("listing pods with a bootstrap token: %v, want forbidden", err)
	}
}

// fakeManager records what the informer hands over.
type fakeManager struct {
	mu      sync.Mutex
	updated map[string]bool
	synced  [][]string
}

func (f *fakeManager) UpdatePod(p *corev1.Pod) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.updated[p.Name] = true
}
func (f *fakeManager) DeletePod(p *corev1.Pod) {}
func (f *fakeManager) SyncAll(ps []*corev1.Pod) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var names []string
	for _, p := range ps {
		names = append(names, p.Name)
	}
	f.synced = append(f.synced, names)
}
func (f *fakeManager) Run(ctx context.Context) error { <-ctx.Done(); return nil }
func (f *fakeManager) names() map[string]bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string]bool{}
	for k := range f.updated {
		out[k] = true
	}
	return out
}

func TestJoinRunLogs(t *testing.T) {
	c := startCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dataDir := t.TempDir()
	tok := c.token(t, "join01", "0123456789abcdef", time.Now().Add(time.Hour))
	cfg, err := nodeagent.Join(ctx, nodeagent.JoinOptions{Server: c.srv.URL(), Token: tok, NodeName: "node-a", NodeIP: "127.0.0.1",
		DataDir: dataDir, CACertHash: c.caHash, Template: nodeagent.Config{Labels: map[string]string{"disk": "ssd"},
			Taints: []corev1.Taint{{Key: "dedicated", Value: "db", Effect: corev1.TaintEffectNoSchedule}}}})
	if err != nil {
		t.Fatalf("Join: %v", err)
	}
	// Credentials: CN, key mode; restart needs no token (the written config loads and validates).
	certPEM, _ := os.ReadFile(cfg.CertFile)
	cert, err := pki.ParseCert(certPEM)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"system:node:node-a", "system:nodes"}, []string{cert.Subject.CommonName, strings.Join(cert.Subject.Organization, ",")}); diff != "" {
		t.Errorf("client certificate subject (-want +got):\n%s", diff)
	}
	if st, err := os.Stat(cfg.KeyFile); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("key file mode: %v %v, want 0600", st.Mode(), err)
	}
	loaded, err := nodeagent.LoadConfig(filepath.Join(dataDir, nodeagent.ConfigFileName))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.admin.CoreV1().Secrets("kube-system").Delete(ctx, "bootstrap-token-join01", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	loaded.Listen = "127.0.0.1:0"
	loaded.DebugListen = "127.0.0.1:0"
	loaded.Logger = storetest.Logger(t)
	mgr := &fakeManager{updated: map[string]bool{}}
	agent, err := nodeagent.New(loaded, nodeagent.Deps{
		NewPodManager:  func(context.Context, nodeagent.PodEnv) (nodeagent.PodManager, error) { return mgr, nil },
		RuntimeVersion: func(context.Context) (string, error) { return "containerd://1.6.20", nil },
		Registrar:      func(nc *node.Config) { nc.LeaseInterval = 200 * time.Millisecond },
	})
	if err != nil {
		t.Fatal(err)
	}
	runDone := make(chan error, 1)
	runCtx, stop := context.WithCancel(ctx)
	go func() { runDone <- agent.Run(runCtx) }()
	t.Cleanup(func() {
		stop()
		if err := <-runDone; err != nil {
			t.Errorf("agent Run: %v", err)
		}
	})
	// The operator's node IPAM would set the pod CIDR; the agent waits for it.
	var n *corev1.Node
	waitFor(t, "node registered", func() bool {
		n, err = c.admin.CoreV1().Nodes().Get(ctx, "node-a", metav1.GetOptions{})
		return err == nil && len(n.Status.Conditions) > 0
	})
	n.Spec.PodCIDR = "10.244.1.0/24"
	if _, err := c.admin.CoreV1().Nodes().Update(ctx, n, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-agent.Ready():
	case err := <-runDone:
		t.Fatalf("agent ended before ready: %v", err)
	case <-ctx.Done():
		t.Fatal("agent not ready")
	}

	t.Run("node fields", func(t *testing.T) {
		n, err := c.admin.CoreV1().Nodes().Get(ctx, "node-a", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]string{
			"hostname label": n.Labels["kubernetes.io/hostname"], "os label": n.Labels["kubernetes.io/os"],
			"disk label": n.Labels["disk"], "taint": n.Spec.Taints[0].Key,
			"pods": n.Status.Capacity.Pods().String(), "internalIP": n.Status.Addresses[0].Address,
			"runtime": n.Status.NodeInfo.ContainerRuntimeVersion, "arch": n.Status.NodeInfo.Architecture,
			"port": itoa(n.Status.DaemonEndpoints.KubeletEndpoint.Port),
		}
		for _, cond := range n.Status.Conditions {
			got[string(cond.Type)] = string(cond.Status)
		}
		want := map[string]string{
			"hostname label": "node-a", "os label": "linux", "disk label": "ssd", "taint": "dedicated",
			"pods": "110", "internalIP": "127.0.0.1", "runtime": "containerd://1.6.20", "arch": n.Status.NodeInfo.Architecture,
			"port":  itoa(int32(agent.ListenAddr().(*net.TCPAddr).Port)),
			"Ready": "True", "MemoryPressure": "False", "DiskPressure": "False", "PIDPressure": "False",
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("node (-want +got):\n%s", diff)
		}
		if n.Status.Capacity.Cpu().IsZero() || n.Status.Capacity.Memory().IsZero() || n.Status.NodeInfo.KernelVersion == "" || n.Status.NodeInfo.OSImage == "" {
			t.Errorf("node capacity/info incomplete: %+v %+v", n.Status.Capacity, n.Status.NodeInfo)
		}
	})

	t.Run("lease renewed", func(t *testing.T) {
		l1, err := c.admin.CoordinationV1().Leases("kube-node-lease").Get(ctx, "node-a", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if *l1.Spec.HolderIdentity != "node-a" || *l1.Spec.LeaseDurationSeconds != 40 {
			t.Errorf("lease spec: holder %q duration %d", *l1.Spec.HolderIdentity, *l1.Spec.LeaseDurationSeconds)
		}
		waitFor(t, "lease renewal", func() bool {
			l2, err := c.admin.CoordinationV1().Leases("kube-node-lease").Get(ctx, "node-a", metav1.GetOptions{})
			return err == nil && l2.Spec.RenewTime.After(l1.Spec.RenewTime.Time)
		})
	})

	mine := testPod("mine", "node-a", "c")
	mine.Spec.Containers = append(mine.Spec.Containers, corev1.Container{Name: "side", Image: "busybox"})
	for _, p := range []*corev1.Pod{mine, testPod("theirs", "node-b", "c")} {
		if _, err := c.admin.CoreV1().Pods("default").Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	t.Run("informer sees only this node's pods", func(t *testing.T) {
		waitFor(t, "pod handed to the manager", func() bool { return mgr.names()["mine"] })
		time.Sleep(300 * time.Millisecond) // give a wrongly delivered pod the chance to show up
		if diff := cmp.Diff(map[string]bool{"mine": true}, mgr.names()); diff != "" {
			t.Errorf("pods given to the manager (-want +got):\n%s", diff)
		}
	})

	pod, err := c.admin.CoreV1().Pods("default").Get(ctx, "mine", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	writeLog(t, dataDir, pod.UID, "c", 0, "old 1\nold 2\n")
	writeLog(t, dataDir, pod.UID, "c", 1, "new 1\nnew 2\nnew 3\n")

	t.Run("logs through the API", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			opts corev1.PodLogOptions
			want string
		}{
			{"current", corev1.PodLogOptions{Container: "c"}, "new 1\nnew 2\nnew 3\n"},
			{"previous", corev1.PodLogOptions{Container: "c", Previous: true}, "old 1\nold 2\n"},
			{"tail", corev1.PodLogOptions{Container: "c", TailLines: ptr.To[int64](2)}, "new 2\nnew 3\n"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				b, err := c.admin.CoreV1().Pods("default").GetLogs("mine", &tc.opts).DoRaw(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if diff := cmp.Diff(tc.want, string(b)); diff != "" {
					t.Errorf("log (-want +got):\n%s", diff)
				}
			})
		}
		_, err := c.admin.CoreV1().Pods("default").GetLogs("mine", &corev1.PodLogOptions{}).Stream(ctx)
		if err == nil || !strings.Contains(err.Error(), "choose one of: [c side]") {
			t.Errorf("log without -c of a two-container pod: %v", err)
		}
	})

	t.Run("follow until restart", func(t *testing.T) {
		rc, err := c.admin.CoreV1().Pods("default").GetLogs("mine", &corev1.PodLogOptions{Container: "c", Follow: true}).Stream(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		appendLog(t, dataDir, pod.UID, "c", 1, "new 4\n")
		time.Sleep(300 * time.Millisecond)
		writeLog(t, dataDir, pod.UID, "c", 2, "next run\n")
		b, err := io.ReadAll(rc) // ends when the agent sees the restart
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff("new 1\nnew 2\nnew 3\nnew 4\n", string(b)); diff != "" {
			t.Errorf("followed log (-want +got):\n%s", diff)
		}
	})

	t.Run("mutual TLS", func(t *testing.T) {
		url := "https://" + agent.ListenAddr().String() + "/containerLogs/default/mine/c?podUID=" + string(pod.UID)
		tlsCfg := &tls.Config{RootCAs: c.srv.NodeServingCA().Pool()}
		if _, err := (&http.Client{Transport: &http.Transport{TLSClientConfig: tlsCfg}}).Get(url); err == nil {
			t.Error("log endpoint answered a client without a certificate")
		}
		certPEM, keyPEM, err := c.srv.CA().IssueClient("system:node:node-b", []string{"system:nodes"}, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		pair, _ := tls.X509KeyPair(certPEM, keyPEM)
		tlsCfg.Certificates = []tls.Certificate{pair}
		resp, err := (&http.Client{Transport: &http.Transport{TLSClientConfig: tlsCfg}}).Get(url)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("another node's certificate: %s, want 403", resp.Status)
		}
		// Through the API, nodes may not read logs.
		nodeCS := kubernetes.NewForConfigOrDie(&rest.Config{Host: c.srv.URL(), TLSClientConfig: rest.TLSClientConfig{
			CAData: c.config.CAData, CertData: certPEM, KeyData: keyPEM}})
		if _, err := nodeCS.CoreV1().Pods("default").GetLogs("mine", &corev1.PodLogOptions{Container: "c"}).Stream(ctx); err == nil || !strings.Contains(err.Error(), "forbidden") {
			t.Errorf("node reading logs through the API: %v, want forbidden", err)
		}
	})
}

func testPod(name, nodeName, container string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec:       corev1.PodSpec{NodeName: nodeName, Containers: []corev1.Container{{Name: container, Image: "busybox"}}},
	}
}

func logFile(dataDir string, uid types.UID, c string, n int) string {
	return filepath.Join(dataDir, "pods", string(uid), "logs", c, itoa(int32(n))+".log")
}

func writeLog(t *testing.T, dataDir string, uid types.UID, c string, n int, s string) {
	t.Helper()
	p := logFile(dataDir, uid, c, n)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

func appendLog(t *testing.T, dataDir string, uid types.UID, c string, n int, s string) {
	t.Helper()
	f, err := os.OpenFile(logFile(dataDir, uid, c, n), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(s); err != nil {
		t.Fatal(err)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func itoa(n int32) string { return strconv.Itoa(int(n)) }
