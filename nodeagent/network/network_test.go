package network

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/bosun-gitops/bosun/internal/testutil/images"
	"github.com/bosun-gitops/bosun/nodeagent/pods"
	"github.com/bosun-gitops/bosun/nodeagent/runtime"
	"github.com/bosun-gitops/bosun/nodeagent/runtime/runtimetest"
)

func TestConflist(t *testing.T) {
	data, err := Conflist(Config{PodCIDR: "10.244.3.0/24", DataDir: "/var/lib/bosun", MTU: 1450})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"subnet": "10.244.3.0/24"`, `"gateway": "10.244.3.1"`, `"bridge": "bosun0"`,
		`"ipMasq": true`, `"hairpinMode": true`, `"portMappings": true`, `"mtu": 1450`,
		`"dataDir": "/var/lib/bosun/ipam"`} {
		if !strings.Contains(string(data), want) {
			t.Errorf("conflist lacks %s:\n%s", want, data)
		}
	}
	if strings.Contains(string(data), `"loopback"`) {
		t.Errorf("conflist has a loopback plugin; SetupPod sets lo up itself:\n%s", data)
	}
	if _, err := Conflist(Config{PodCIDR: "nope"}); err == nil {
		t.Error("invalid pod CIDR accepted")
	}
}

// testNetwork makes a Network with its own bridge and pod CIDR and removes the bridge and the
// shared portmap chains at cleanup.
func testNetwork(t *testing.T) (*Network, Config) {
	t.Helper()
	runtimetest.SkipUnlessRoot(t)
	if _, err := os.Stat("/usr/lib/cni/bridge"); err != nil {
		t.Skip("skipping: CNI plugins missing (apt-get install containernetworking-plugins)")
	}
	if _, err := exec.LookPath("iptables-save"); err != nil {
		t.Skip("skipping: iptables missing (apt-get install iptables)")
	}
	n := rand.IntN(200) + 20
	cfg := Config{
		RunDir:     t.TempDir(),
		DataDir:    t.TempDir(),
		PodCIDR:    fmt.Sprintf("10.251.%d.0/24", n),
		BridgeName: fmt.Sprintf("bosunt%d", n),
		Logger:     slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	hadPortmapChains := exec.Command("iptables", "-t", "nat", "-S", "CNI-HOSTPORT-DNAT").Run() == nil
	net, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if l, err := netlink.LinkByName(cfg.BridgeName); err == nil {
			_ = netlink.LinkDel(l)
		}
		if !hadPortmapChains {
			removePortmapChains(t)
		}
	})
	return net, cfg
}

func TestPodNetwork(t *testing.T) {
	nw, cfg := testNetwork(t)
	socket := runtimetest.StartContainerd(t)
	imgDir := t.TempDir()
	_, ref := images.Busybox(t, imgDir, "busybox")
	ctx := context.Background()
	rt, err := runtime.New(ctx, runtime.Config{Address: socket, ImportDir: imgDir})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()

	pod := pods.PodRef{UID: "0b7c3e2a-net-test", Namespace: "default", Name: "web"}
	hostPort := int32(20000 + rand.IntN(20000))
	ports := []pods.PortMapping{{HostPort: hostPort, ContainerPort: 8080, Protocol: "tcp"}}
	// As the pod workers do: pin the namespace, create the containers (runc joins the namespace),
	// run CNI ADD, then start them.
	netnsPath, err := nw.PinNetns(ctx, pod)
	if err != nil {
		t.Fatalf("PinNetns: %v", err)
	}
	tornDown := false
	t.Cleanup(func() {
		if !tornDown {
			_ = nw.TeardownPod(context.Background(), pod)
		}
	})
	if again, err := nw.PinNetns(ctx, pod); err != nil || again != netnsPath {
		t.Errorf("second PinNetns = %q, %v; want %q", again, err, netnsPath)
	}

	logDir := t.TempDir()
	container := func(name string, args ...string) pods.ContainerSpec {
		return pods.ContainerSpec{
			ID: pod.UID + "-" + name + "-0", Image: ref, Args: args, NetnsPath: netnsPath,
			Labels:  map[string]string{pods.LabelPodUID: pod.UID, pods.LabelContainerName: name},
			LogPath: pods.LogPath(logDir, pod.UID, name, 0),
		}
	}
	web := container("web", "httpd", "-f", "-p", "8080", "-h", "/www")
	client := container("client", "sh", "-c", "i=0; until wget -q -O - http://127.0.0.1:8080/; do i=$((i+1)); [ $i -gt 100 ] && exit 1; sleep 0.1; done")
	for _, s := range []pods.ContainerSpec{web, client} {
		if err := rt.CreateContainer(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	pn, err := nw.SetupPod(ctx, pod, ports)
	if err != nil {
		t.Fatalf("SetupPod: %v", err)
	}
	if pn.NetnsPath != netnsPath {
		t.Errorf("SetupPod wired %s, want the pinned %s", pn.NetnsPath, netnsPath)
	}
	again, err := nw.SetupPod(ctx, pod, ports)
	if err != nil || again != pn {
		t.Errorf("second SetupPod = %+v, %v; want %+v", again, err, pn)
	}
	t.Logf("pod network %+v", pn)
	list, err := nw.ListPods(ctx)
	if err != nil || len(list) != 1 || list[0] != pod {
		t.Errorf("ListPods = %+v, %v; want [%+v]", list, err, pod)
	}
	for _, s := range []pods.ContainerSpec{web, client} {
		if _, err := rt.StartContainer(ctx, s.ID); err != nil {
			t.Fatal(err)
		}
	}
	t.Run("containers of a pod talk over localhost", func(t *testing.T) {
		st := waitExited(t, rt, client.ID)
		data, _ := os.ReadFile(client.LogPath)
		if st.ExitCode != 0 || string(data) != images.IndexHTML {
			t.Errorf("client exit %d, log %q; want 0 and the index page", st.ExitCode, data)
		}
	})
	t.Run("pod IP reachable from the host", func(t *testing.T) {
		if body := httpGet(t, fmt.Sprintf("http://%s:8080/", pn.IP)); body != images.IndexHTML {
			t.Errorf("body %q", body)
		}
	})
	t.Run("hostPort through portmap", func(t *testing.T) {
		gw := strings.TrimSuffix(cfg.PodCIDR, "0/24") + "1"
		if body := httpGet(t, fmt.Sprintf("http://%s:%d/", gw, hostPort)); body != images.IndexHTML {
			t.Errorf("body %q", body)
		}
	})

	for _, s := range []pods.ContainerSpec{web, client} {
		if err := rt.RemoveContainer(ctx, s.ID); err != nil {
			t.Fatal(err)
		}
	}
	before := iptablesSave(t)
	if !strings.Contains(before, pn.IP) || !strings.Contains(before, fmt.Sprint(hostPort)) {
		t.Errorf("iptables has no rules for %s / hostPort %d before teardown", pn.IP, hostPort)
	}
	if err := nw.TeardownPod(ctx, pod); err != nil {
		t.Fatalf("TeardownPod: %v", err)
	}
	tornDown = true
	if err := nw.TeardownPod(ctx, pod); err != nil {
		t.Errorf("second TeardownPod: %v", err)
	}

	// Nothing left: no mount, no pin, no IP allocation, no iptables rule, no cache entry.
	if m, _ := mountedUnder(cfg.RunDir); len(m) > 0 {
		t.Errorf("mounts left: %v", m)
	}
	if _, err := os.Stat(pn.NetnsPath); !os.IsNotExist(err) {
		t.Errorf("netns pin left: %v", err)
	}
	if _, err := os.Stat(filepath.Join(cfg.DataDir, "ipam", NetworkName, pn.IP)); !os.IsNotExist(err) {
		t.Errorf("host-local allocation of %s left: %v", pn.IP, err)
	}
	after := iptablesSave(t)
	for _, s := range []string{pn.IP, pod.UID, fmt.Sprintf("--dport %d", hostPort)} {
		for _, l := range strings.Split(after, "\n") {
			if strings.Contains(l, s) {
				t.Errorf("iptables rule left (%s): %s", s, l)
			}
		}
	}
	if list, _ := nw.ListPods(ctx); len(list) != 0 {
		t.Errorf("ListPods after teardown = %v", list)
	}
}

func waitExited(t *testing.T, rt *runtime.Runtime, id string) pods.ContainerStatus {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		st, err := rt.ContainerStatus(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if st.State == pods.StateExited {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s still %s", id, st.State)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// httpGet retries until the server answers (httpd may still be starting).
func httpGet(t *testing.T, url string) string {
	t.Helper()
	client := &http.Client{Timeout: 2 * time.Second}
	var lastErr error
	for i := 0; i < 50; i++ {
		resp, err := client.Get(url)
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			return string(body)
		}
		lastErr = err
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("GET %s: %v", url, lastErr)
	return ""
}

func iptablesSave(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("iptables-save").CombinedOutput()
	if err != nil {
		t.Fatalf("iptables-save: %v: %s", err, out)
	}
	return string(out)
}

// removePortmapChains removes the chains portmap shares between all pods (it never removes them
// itself), so that the test leaves the host's iptables as it found them.
func removePortmapChains(t *testing.T) {
	t.Helper()
	cmds := [][]string{
		{"-D", "PREROUTING", "-m", "addrtype", "--dst-type", "LOCAL", "-j", "CNI-HOSTPORT-DNAT"},
		{"-D", "OUTPUT", "-m", "addrtype", "--dst-type", "LOCAL", "-j", "CNI-HOSTPORT-DNAT"},
		{"-D", "POSTROUTING", "-m", "comment", "--comment", "CNI portfwd requiring masquerade", "-j", "CNI-HOSTPORT-MASQ"},
	}
	for _, c := range []string{"CNI-HOSTPORT-DNAT", "CNI-HOSTPORT-MASQ", "CNI-HOSTPORT-SETMARK"} {
		cmds = append(cmds, []string{"-F", c}, []string{"-X", c})
	}
	for _, c := range cmds {
		if out, err := exec.Command("iptables", append([]string{"-t", "nat"}, c...)...).CombinedOutput(); err != nil {
			t.Logf("iptables %v: %v: %s", c, err, out)
		}
	}
}

// TestPodNetworkAfterLostNamespace sets a pod's network up, loses its namespace the way a
// reboot does (the pin on /run is gone, host-local's allocations on disk are not), and sets it up
// again: the pod must get a network, not "duplicate allocation is not allowed".
func TestPodNetworkAfterLostNamespace(t *testing.T) {
	_, cfg := testNetwork(t)
	// The agent's configuration: the bridge does not masquerade (nodeagent/routes does), so a
	// DEL without the namespace leaves nothing behind.
	conf, err := Conflist(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cfg.CNIConfDir = t.TempDir()
	conf = bytes.Replace(conf, []byte(`"ipMasq": true`), []byte(`"ipMasq": false`), 1)
	if err := os.WriteFile(filepath.Join(cfg.CNIConfDir, "10-bosun.conflist"), conf, 0o644); err != nil {
		t.Fatal(err)
	}
	nw, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	pod := pods.PodRef{UID: "5e1f0a2b-reboot-test", Namespace: "default", Name: "web"}
	first, err := nw.SetupPod(ctx, pod, nil)
	if err != nil {
		t.Fatalf("SetupPod: %v", err)
	}
	if err := unpinNetns(first.NetnsPath); err != nil { // what a reboot does to /run
		t.Fatal(err)
	}
	again, err := nw.SetupPod(ctx, pod, nil)
	if err != nil {
		t.Fatalf("SetupPod after the namespace was lost: %v", err)
	}
	if again.IP == "" || again.NetnsPath != first.NetnsPath {
		t.Errorf("after the namespace was lost: %+v, want a pod network at %s", again, first.NetnsPath)
	}
	t.Logf("before %s, after %s", first.IP, again.IP)
	if err := nw.TeardownPod(ctx, pod); err != nil {
		t.Errorf("TeardownPod: %v", err)
	}
}

// TestFailedAddAfterPinRetries checks that a CNI ADD that fails in a namespace pinned ahead
// (PinNetns, containers may already be in it) leaves nothing behind in it: the pod range is
// full, the bridge plugin has made eth0 before IPAM refused; once an address is free, the retry
// succeeds in the same namespace.
func TestFailedAddAfterPinRetries(t *testing.T) {
	_, cfg := testNetwork(t)
	cfg.PodCIDR = strings.TrimSuffix(cfg.PodCIDR, "/24") + "/30" // the gateway and one pod
	nw, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	first := pods.PodRef{UID: "7a0c-full-first", Namespace: "default", Name: "first"}
	second := pods.PodRef{UID: "7a0c-full-second", Namespace: "default", Name: "second"}
	t.Cleanup(func() {
		_ = nw.TeardownPod(context.Background(), first)
		_ = nw.TeardownPod(context.Background(), second)
	})
	if _, err := nw.SetupPod(ctx, first, nil); err != nil {
		t.Fatalf("SetupPod of the first pod: %v", err)
	}
	path, err := nw.PinNetns(ctx, second)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := nw.SetupPod(ctx, second, nil); err == nil {
		t.Fatal("SetupPod in a full pod range: no error")
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("the namespace pinned ahead was dropped by the failed ADD: %v", err)
	}
	if err := nw.TeardownPod(ctx, first); err != nil {
		t.Fatal(err)
	}
	pn, err := nw.SetupPod(ctx, second, nil)
	if err != nil {
		t.Fatalf("SetupPod once an address is free: %v", err)
	}
	if pn.NetnsPath != path || pn.IP == "" {
		t.Errorf("second pod network %+v, want an IP in %s", pn, path)
	}
}
