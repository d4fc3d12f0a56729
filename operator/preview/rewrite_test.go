package preview

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bosun-gitops/bosun/internal/resource"
	repolayout "github.com/bosun-gitops/bosun/repo-layout"
	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
)

// load writes files into a directory and loads it with the real loader, as a head is loaded.
func load(t *testing.T, files map[string]string) *repolayout.Set {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	set, err := repolayout.LoadDir(dir)
	if err != nil {
		t.Fatalf("loading the test repository: %v", err)
	}
	return set
}

const shopNamespace = "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n"

const webDeployment = `apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop, labels: {tier: front}}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
        - name: web
          image: registry.local/web:1
          ports: [{containerPort: 8080, hostPort: 80}]
      initContainers:
        - name: init
          image: registry.local/init:1
          ports: [{containerPort: 9000, hostPort: 9000}]
`

const nodePortService = `apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  type: NodePort
  clusterIP: 10.96.0.50
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: 8080, nodePort: 30080}, {name: admin, port: 81, nodePort: 30081}]
`

const headlessService = `apiVersion: v1
kind: Service
metadata: {name: db, namespace: shop}
spec:
  clusterIP: None
  selector: {app: db}
  ports: [{port: 5432}]
`

const hostNetworkDaemonSet = `apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent, namespace: shop}
spec:
  selector: {matchLabels: {app: agent}}
  template:
    metadata: {labels: {app: agent}}
    spec:
      hostNetwork: true
      containers: [{name: agent, image: registry.local/agent:1, ports: [{containerPort: 9100}]}]
`

const machine = `apiVersion: bosun.dev/v1alpha1
kind: Machine
metadata: {name: db-1}
spec:
  address: 192.0.2.21
  hostKey: "SHA256:nR/ocfKOyyJOFJcC7+9JXsOB/PuLEG+0qde1pFhRYcs"
`

func TestRewrite(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string
		// check inspects the rewritten objects by "Kind/name".
		check       func(t *testing.T, objs map[string]resource.Object)
		wantSkipped []Skipped
		wantErrs    []string // substrings of the errors, in order
	}{
		{
			name:  "deployment: namespace, labels, host ports",
			files: map[string]string{"ns.yaml": shopNamespace, "web.yaml": webDeployment},
			check: func(t *testing.T, objs map[string]resource.Object) {
				d := objs["Deployment/web"].(*appsv1.Deployment)
				if d.Namespace != "pr-7" {
					t.Errorf("namespace %q, want pr-7", d.Namespace)
				}
				if diff := cmp.Diff(map[string]string{"tier": "front", resource.LabelPreview: "7"}, d.Labels); diff != "" {
					t.Errorf("labels (-want +got):\n%s", diff)
				}
				if diff := cmp.Diff(map[string]string{"app": "web", resource.LabelPreview: "7"}, d.Spec.Template.Labels); diff != "" {
					t.Errorf("pod template labels (-want +got):\n%s", diff)
				}
				if diff := cmp.Diff(map[string]string{"app": "web"}, d.Spec.Selector.MatchLabels); diff != "" {
					t.Errorf("the selector changed (-want +got):\n%s", diff)
				}
				if p := d.Spec.Template.Spec.Containers[0].Ports[0]; p.HostPort != 0 || p.ContainerPort != 8080 {
					t.Errorf("container port %+v, want 8080 without hostPort", p)
				}
				if p := d.Spec.Template.Spec.InitContainers[0].Ports[0]; p.HostPort != 0 {
					t.Errorf("init container port %+v, want no hostPort", p)
				}
			},
			wantSkipped: []Skipped{{Kind: "Namespace", Name: "shop", File: "apps/ns.yaml", Line: 1, Reason: ReasonClusterScoped}},
		},
		{
			name:  "services: ClusterIP only, no node ports, no fixed cluster IP; headless kept",
			files: map[string]string{"ns.yaml": shopNamespace, "svc.yaml": nodePortService + "---\n" + headlessService},
			check: func(t *testing.T, objs map[string]resource.Object) {
				s := objs["Service/web"].(*corev1.Service)
				if s.Spec.Type != corev1.ServiceTypeClusterIP || s.Spec.ClusterIP != "" || len(s.Spec.ClusterIPs) != 0 {
					t.Errorf("service web: type %s clusterIP %q %v, want ClusterIP with none fixed", s.Spec.Type, s.Spec.ClusterIP, s.Spec.ClusterIPs)
				}
				for _, p := range s.Spec.Ports {
					if p.NodePort != 0 {
						t.Errorf("service web port %s keeps nodePort %d", p.Name, p.NodePort)
					}
				}
				if s.Spec.ExternalTrafficPolicy != "" {
					t.Errorf("externalTrafficPolicy %q on a ClusterIP service", s.Spec.ExternalTrafficPolicy)
				}
				if s.Labels[resource.LabelPreview] != "7" || s.Namespace != "pr-7" {
					t.Errorf("service web: labels %v namespace %q", s.Labels, s.Namespace)
				}
				if diff := cmp.Diff(map[string]string{"app": "web"}, s.Spec.Selector); diff != "" {
					t.Errorf("the selector changed (-want +got):\n%s", diff)
				}
				h := objs["Service/db"].(*corev1.Service)
				if h.Spec.ClusterIP != corev1.ClusterIPNone {
					t.Errorf("headless service db: clusterIP %q, want None", h.Spec.ClusterIP)
				}
			},
			wantSkipped: []Skipped{{Kind: "Namespace", Name: "shop", File: "apps/ns.yaml", Line: 1, Reason: ReasonClusterScoped}},
		},
		{
			name: "hostNetwork workloads and cluster-scoped kinds skipped",
			files: map[string]string{"ns.yaml": shopNamespace, "agent.yaml": hostNetworkDaemonSet, "cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings, namespace: shop}\n",
				"../machines/db-1.yaml": machine},
			check: func(t *testing.T, objs map[string]resource.Object) {
				if _, ok := objs["ConfigMap/settings"]; !ok || len(objs) != 1 {
					t.Errorf("objects %v, want the ConfigMap alone", keys(objs))
				}
			},
			wantSkipped: []Skipped{
				{Kind: "DaemonSet", Namespace: "shop", Name: "agent", File: "apps/agent.yaml", Line: 1, Reason: ReasonHostNetwork},
				{Kind: "Namespace", Name: "shop", File: "apps/ns.yaml", Line: 1, Reason: ReasonClusterScoped},
				{Kind: "Machine", Name: "db-1", File: "machines/db-1.yaml", Line: 1, Reason: ReasonClusterScoped},
			},
		},
		{
			name: "one name in two namespaces collides in the preview",
			files: map[string]string{"ns.yaml": shopNamespace + "---\napiVersion: v1\nkind: Namespace\nmetadata: {name: blog}\n",
				"a.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings, namespace: blog}\n",
				"b.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings, namespace: shop}\n",
				"c.yaml": "apiVersion: v1\nkind: Secret\nmetadata: {name: settings, namespace: shop}\n"},
			wantErrs: []string{`apps/b.yaml:1: metadata.namespace: ConfigMap "settings" is also declared in namespace blog (apps/a.yaml:1); a preview puts every namespace into pr-7`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			files := map[string]string{}
			for name, content := range tt.files {
				files[filepath.Join("apps", name)] = content
			}
			set := load(t, files)
			before := snapshot(t, set)
			env, errs := Rewrite(set, ".", 7)
			if after := snapshot(t, set); after != before {
				t.Error("Rewrite changed the loaded objects, which the loader shares across loads")
			}
			if tt.wantErrs != nil {
				if len(errs) != len(tt.wantErrs) {
					t.Fatalf("errors %v, want %d", errs, len(tt.wantErrs))
				}
				for i, want := range tt.wantErrs {
					if !strings.Contains(errs[i].Error(), want) {
						t.Errorf("error %d: %q, want it to contain %q", i, errs[i].Error(), want)
					}
				}
				return
			}
			if errs != nil {
				t.Fatalf("errors: %v", errs)
			}
			if env.Namespace != "pr-7" {
				t.Errorf("namespace %q, want pr-7", env.Namespace)
			}
			objs := map[string]resource.Object{}
			for _, o := range env.Objects {
				objs[o.Resource.Kind+"/"+o.Object.GetName()] = o.Object
				if o.Object.GetNamespace() != "pr-7" || o.Object.GetLabels()[resource.LabelPreview] != "7" {
					t.Errorf("%s %s: namespace %q labels %v", o.Resource.Kind, o.Object.GetName(), o.Object.GetNamespace(), o.Object.GetLabels())
				}
				if !strings.HasPrefix(o.File, "apps/") {
					t.Errorf("%s %s: file %q, want it relative to the repository root", o.Resource.Kind, o.Object.GetName(), o.File)
				}
				raw, _ := json.Marshal(o.Object)
				if string(raw) != string(o.Raw) {
					t.Errorf("%s %s: Raw is not the rewritten object, so the applied hash would miss a rewrite", o.Resource.Kind, o.Object.GetName())
				}
			}
			if tt.check != nil {
				tt.check(t, objs)
			}
			if diff := cmp.Diff(tt.wantSkipped, env.Skipped); diff != "" {
				t.Errorf("skipped (-want +got):\n%s", diff)
			}
		})
	}
}

// TestRewriteDirectory checks that files are named from the repository root when the operator
// loads a sub-directory (--path).
func TestRewriteDirectory(t *testing.T) {
	set := load(t, map[string]string{"cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings, namespace: default}\n"})
	env, errs := Rewrite(set, "deploy/prod", 12)
	if errs != nil {
		t.Fatal(errs)
	}
	if len(env.Objects) != 1 || env.Objects[0].File != "deploy/prod/cm.yaml" || env.Objects[0].Object.GetNamespace() != "pr-12" {
		t.Errorf("objects %+v, want deploy/prod/cm.yaml in pr-12", env.Objects)
	}
}

func TestSkippedNote(t *testing.T) {
	got := skippedNote([]Skipped{
		{Kind: "DaemonSet", Name: "agent", Reason: ReasonHostNetwork},
		{Kind: "Namespace", Name: "shop", Reason: ReasonClusterScoped},
		{Kind: "Machine", Name: "db-1", Reason: ReasonClusterScoped},
	})
	if want := "skipped (hostNetwork): daemonset agent; 2 cluster-scoped objects not previewed"; got != want {
		t.Errorf("note %q, want %q", got, want)
	}
}

func snapshot(t *testing.T, set *repolayout.Set) string {
	t.Helper()
	var b strings.Builder
	for _, o := range set.Objects {
		raw, err := json.Marshal(o.Object)
		if err != nil {
			t.Fatal(err)
		}
		b.Write(raw)
	}
	return b.String()
}

func keys(m map[string]resource.Object) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
