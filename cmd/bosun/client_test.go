package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
)

// kubeconfigFile writes a kubeconfig: clusters and users as name -> server URL / token, and
// current-context ctx (cluster ctx, user ctx) when ctx is not empty.
func kubeconfigFile(t *testing.T, dir, name, ctx string, clusters, users map[string]string) string {
	t.Helper()
	var b strings.Builder
	b.WriteString("apiVersion: v1\nkind: Config\nclusters:\n")
	for n, server := range clusters {
		fmt.Fprintf(&b, "- name: %s\n  cluster: {server: %q}\n", n, server)
	}
	b.WriteString("users:\n")
	for n, token := range users {
		fmt.Fprintf(&b, "- name: %s\n  user: {token: %q}\n", n, token)
	}
	if ctx != "" {
		fmt.Fprintf(&b, "contexts:\n- name: %s\n  context: {cluster: %s, user: %s}\ncurrent-context: %s\n", ctx, ctx, ctx, ctx)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestKubeconfigOrder checks the order --kubeconfig, $BOSUN_KUBECONFIG, $KUBECONFIG, then
// .bosun/admin.kubeconfig in the current directory.
func TestKubeconfigOrder(t *testing.T) {
	dir := t.TempDir()
	file := func(name string) string {
		return kubeconfigFile(t, dir, name+".kubeconfig", "c", map[string]string{"c": "https://" + name + ".test"}, map[string]string{"c": name})
	}
	flag, bosun, kube := file("flag"), file("bosun"), file("kube")
	if err := os.MkdirAll(filepath.Join(dir, ".bosun"), 0o700); err != nil {
		t.Fatal(err)
	}
	kubeconfigFile(t, filepath.Join(dir, ".bosun"), "admin.kubeconfig", "c", map[string]string{"c": "https://default.test"}, map[string]string{"c": "default"})
	t.Chdir(dir)

	for _, c := range []struct {
		name, flag, bosunEnv, kubeEnv, want string
	}{
		{"flag first", flag, bosun, kube, "https://flag.test"},
		{"then $BOSUN_KUBECONFIG", "", bosun, kube, "https://bosun.test"},
		{"then $KUBECONFIG", "", "", kube, "https://kube.test"},
		{"then .bosun/admin.kubeconfig", "", "", "", "https://default.test"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Setenv("BOSUN_KUBECONFIG", c.bosunEnv)
			t.Setenv("KUBECONFIG", c.kubeEnv)
			g := &globalFlags{kubeconfig: c.flag}
			cfg, err := g.restConfig()
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Host != c.want {
				t.Errorf("host %s, want %s", cfg.Host, c.want)
			}
		})
	}

	t.Run("none", func(t *testing.T) {
		t.Setenv("BOSUN_KUBECONFIG", "")
		t.Setenv("KUBECONFIG", "")
		t.Chdir(t.TempDir())
		_, err := (&globalFlags{}).restConfig()
		if err == nil || !strings.Contains(err.Error(), "--kubeconfig") {
			t.Fatalf("no kubeconfig anywhere: %v, want an error naming --kubeconfig", err)
		}
	})
}

// TestKubeconfigList checks that a colon-separated $KUBECONFIG is merged as kubectl merges it:
// missing files are skipped, the first file to set a value wins, and a context may come from
// one file and its cluster and user from another.
func TestKubeconfigList(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(t.TempDir()) // no .bosun/admin.kubeconfig to fall back to
	// contexts.kubeconfig only selects the context; clusters.kubeconfig defines it.
	contexts := kubeconfigFile(t, dir, "contexts.kubeconfig", "prod", nil, nil)
	clusters := kubeconfigFile(t, dir, "clusters.kubeconfig", "",
		map[string]string{"prod": "https://prod.test"}, map[string]string{"prod": "prod-token"})
	// A later file's definition of the same cluster loses.
	later := kubeconfigFile(t, dir, "later.kubeconfig", "other",
		map[string]string{"prod": "https://later.test", "other": "https://other.test"}, map[string]string{"prod": "later-token", "other": "x"})
	missing := filepath.Join(dir, "missing.kubeconfig")
	list := strings.Join([]string{missing, contexts, clusters, later}, string(filepath.ListSeparator))

	for _, env := range []string{"KUBECONFIG", "BOSUN_KUBECONFIG"} {
		t.Run(env, func(t *testing.T) {
			t.Setenv("BOSUN_KUBECONFIG", "")
			t.Setenv("KUBECONFIG", "")
			t.Setenv(env, list)
			cfg, err := (&globalFlags{}).restConfig()
			if err != nil {
				t.Fatalf("$%s=%s: %v", env, list, err)
			}
			if cfg.Host != "https://prod.test" || cfg.BearerToken != "prod-token" {
				t.Errorf("host %s token %q, want https://prod.test and prod-token (context from the first file, cluster and user from the second)", cfg.Host, cfg.BearerToken)
			}
		})
	}

	t.Run("all missing", func(t *testing.T) {
		t.Setenv("BOSUN_KUBECONFIG", "")
		t.Setenv("KUBECONFIG", missing+string(filepath.ListSeparator)+filepath.Join(dir, "also-missing"))
		_, err := (&globalFlags{}).restConfig()
		if err == nil || !strings.Contains(err.Error(), "$KUBECONFIG") {
			t.Fatalf("every listed file missing: %v, want an error naming $KUBECONFIG", err)
		}
	})
}

// TestContextNamespace checks that commands work in the kubeconfig context's namespace unless
// -n says otherwise, and in "default" when the context names none, as kubectl does.
func TestContextNamespace(t *testing.T) {
	dir := t.TempDir()
	plain := kubeconfigFile(t, dir, "plain.kubeconfig", "c", map[string]string{"c": "https://a.test"}, map[string]string{"c": "a"})
	shop := filepath.Join(dir, "shop.kubeconfig")
	data := "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {server: \"https://a.test\"}\n" +
		"users:\n- name: c\n  user: {token: a}\ncontexts:\n- name: c\n  context: {cluster: c, user: c, namespace: shop}\ncurrent-context: c\n"
	if err := os.WriteFile(shop, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		kubeconfig, flag, want string
	}{
		{shop, "", "shop"},
		{shop, "other", "other"},
		{plain, "", "default"},
	} {
		g := &globalFlags{kubeconfig: c.kubeconfig}
		if _, err := g.restConfig(); err != nil {
			t.Fatal(err)
		}
		if got := g.namespace(c.flag); got != c.want {
			t.Errorf("%s with -n %q: namespace %q, want %q", filepath.Base(c.kubeconfig), c.flag, got, c.want)
		}
	}
}

// TestDefaultContainer checks the container `bosun logs` reads without -c: the default-container
// annotation's, else the first app container (never an init container), named on stderr when
// the pod has several.
func TestDefaultContainer(t *testing.T) {
	pod := func(annotation string, init []string, app ...string) *corev1.Pod {
		p := &corev1.Pod{}
		if annotation != "" {
			p.Annotations = map[string]string{defaultContainerAnnotation: annotation}
		}
		for _, n := range init {
			p.Spec.InitContainers = append(p.Spec.InitContainers, corev1.Container{Name: n})
		}
		for _, n := range app {
			p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: n})
		}
		return p
	}
	for _, c := range []struct {
		pod       *corev1.Pod
		want, say string
	}{
		{pod("", nil, "web"), "web", ""},
		{pod("", []string{"setup"}, "web", "sidecar"), "web", `Defaulted container "web" out of: web, sidecar, setup (init)` + "\n"},
		{pod("sidecar", nil, "web", "sidecar"), "sidecar", `Defaulted container "sidecar" out of: web, sidecar` + "\n"},
		{pod("setup", []string{"setup"}, "web"), "setup", `Defaulted container "setup" out of: web, setup (init)` + "\n"},
		{pod("gone", nil, "web", "sidecar"), "web", `Defaulted container "web" out of: web, sidecar` + "\n"},
	} {
		var said strings.Builder
		if got := defaultContainer(c.pod, &said); got != c.want || said.String() != c.say {
			t.Errorf("%v / %v (annotation %q): got %q saying %q, want %q saying %q", c.pod.Spec.InitContainers, c.pod.Spec.Containers,
				c.pod.Annotations[defaultContainerAnnotation], got, said.String(), c.want, c.say)
		}
	}
}

// TestPodLogOptions checks the options `bosun logs` sends for its flags.
func TestPodLogOptions(t *testing.T) {
	ptr := func(n int64) *int64 { return &n }
	for _, tc := range []struct {
		name        string
		tail, limit int64
		want        corev1.PodLogOptions
	}{
		{"defaults", -1, 0, corev1.PodLogOptions{Container: "c"}},
		{"tail 0", 0, 0, corev1.PodLogOptions{Container: "c", TailLines: ptr(0)}},
		{"tail and limit", 5, 100, corev1.PodLogOptions{Container: "c", TailLines: ptr(5), LimitBytes: ptr(100)}},
	} {
		got := podLogOptions("c", false, false, tc.tail, tc.limit)
		if !equality.Semantic.DeepEqual(*got, tc.want) {
			t.Errorf("%s: got %+v, want %+v", tc.name, *got, tc.want)
		}
	}
}
