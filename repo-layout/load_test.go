package repolayout

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite golden files under testdata/")

// writeTree writes files (slash-separated paths relative to the root) into a new directory.
func writeTree(t testing.TB, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// errorLines returns the loader's errors one per line, failing if err is not an ErrorList.
func errorLines(t *testing.T, err error) []string {
	t.Helper()
	if err == nil {
		return nil
	}
	var list ErrorList
	if !errors.As(err, &list) {
		t.Fatalf("error is %T (%v), want ErrorList", err, err)
	}
	lines := make([]string, len(list))
	for i, e := range list {
		lines[i] = e.Error()
	}
	return lines
}

const cm = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\ndata: {a: b}\n"

const deployment = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
        - name: web
          image: docker.io/library/busybox:1.36
`

// svcYAML is a Service manifest selecting app=web, with extra lines of its spec.
func svcYAML(name, extra string) string {
	return "apiVersion: v1\nkind: Service\nmetadata: {name: " + name + "}\nspec:\n  selector: {app: web}\n" + extra
}

func TestLoadErrors(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string
		want  []string
	}{
		{
			name:  "unknown kind",
			files: map[string]string{"a.yaml": "apiVersion: v1\nkind: Widget\nmetadata: {name: w}\n"},
			want:  []string{`a.yaml:2: kind: unknown kind "Widget"; the repository may declare Cluster, ConfigMap, DaemonSet, Deployment, Machine, Namespace, Pod, ReplicaSet, ReplicationController, Secret, Service`},
		},
		{
			name:  "kind in another apiVersion",
			files: map[string]string{"a.yaml": "apiVersion: extensions/v1beta1\nkind: Deployment\nmetadata: {name: w}\n"},
			want:  []string{"a.yaml:1: apiVersion: kind Deployment is not served in extensions/v1beta1; use apiVersion: apps/v1"},
		},
		{
			name:  "kind case",
			files: map[string]string{"a.yaml": "apiVersion: v1\nkind: configmap\nmetadata: {name: w}\n"},
			want:  []string{`a.yaml:2: kind: unknown kind "configmap"; did you mean ConfigMap?`},
		},
		{
			name:  "kind not in repo",
			files: map[string]string{"a.yaml": "apiVersion: v1\nkind: Node\nmetadata: {name: n}\n"},
			want:  []string{"a.yaml:2: kind: Node objects are managed by Bosun and cannot be declared in the repository"},
		},
		{
			name:  "missing kind apiVersion and name",
			files: map[string]string{"a.yaml": "metadata: {}\n"},
			want: []string{
				"a.yaml:1: apiVersion: Required value: every manifest needs apiVersion, kind and metadata.name",
				"a.yaml:1: kind: Required value: every manifest needs apiVersion, kind and metadata.name",
			},
		},
		{
			name:  "missing name",
			files: map[string]string{"a.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  labels: {a: b}\n"},
			want:  []string{"a.yaml:3: metadata.name: Required value: every manifest needs apiVersion, kind and metadata.name"},
		},
		{
			name:  "unknown field",
			files: map[string]string{"a.yaml": strings.Replace(deployment, "          image:", "          imagePolicy: Always\n          image:", 1)},
			want:  []string{`a.yaml:14: spec.template.spec.containers[0].imagePolicy: unknown field "imagePolicy"; check its spelling and indentation (Bosun decodes manifests strictly)`},
		},
		{
			name:  "wrong type",
			files: map[string]string{"a.yaml": strings.Replace(deployment, "spec:\n  selector", "spec:\n  replicas: two\n  selector", 1)},
			want:  []string{"a.yaml:6: spec.replicas: Invalid value: expected an integer, found string"},
		},
		{
			name: "duplicate object",
			files: map[string]string{
				"a.yaml":     cm,
				"sub/b.yaml": "# same object\n---\n" + strings.Replace(cm, "{name: settings}", "{name: settings, namespace: default}", 1),
			},
			want: []string{"sub/b.yaml:5: metadata.name: ConfigMap default/settings is declared twice: here and at a.yaml:1; keep one"},
		},
		{
			name:  "same name different kinds is fine",
			files: map[string]string{"a.yaml": cm + "---\n" + strings.Replace(strings.Replace(cm, "ConfigMap", "Secret", 1), "\ndata:", "\nstringData:", 1)},
		},
		{
			name:  "file too large",
			files: map[string]string{"big.yaml": cm + "# " + strings.Repeat("x", 1<<20) + "\n"},
			want:  []string{"big.yaml:1: file is 1048650 bytes, over the 1 MiB limit; split it into several files"},
		},
		{
			name:  "invalid UTF-8",
			files: map[string]string{"a.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: \xff}\n"},
			want:  []string{"a.yaml:3: invalid UTF-8 at byte offset 48; manifests must be UTF-8 text"},
		},
		{
			name:  "invalid YAML",
			files: map[string]string{"a.yaml": "apiVersion: v1\nkind: [ConfigMap\n"},
			want:  []string{"a.yaml:2: kind: invalid YAML: did not find expected ',' or ']'"},
		},
		{
			name:  "duplicate YAML key",
			files: map[string]string{"a.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\nkind: Secret\n"},
			want:  []string{`a.yaml:4: invalid YAML: mapping key "kind" already defined at line 2`},
		},
		{
			name:  "invalid JSON",
			files: map[string]string{"a.json": "{\"apiVersion\": \"v1\",\n\"kind\": }\n"},
			want:  []string{"a.json:2: kind: invalid JSON: invalid character '}' looking for beginning of value"},
		},
		{
			name:  "not a mapping",
			files: map[string]string{"a.yaml": "- a\n- b\n"},
			want:  []string{"a.yaml:1: a manifest must be an object with apiVersion, kind and metadata"},
		},
		{
			name:  "namespace on cluster-scoped kind",
			files: map[string]string{"a.yaml": "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: shop\n  namespace: default\n"},
			want:  []string{"a.yaml:5: metadata.namespace: Forbidden: Namespace is cluster-scoped; remove metadata.namespace"},
		},
		{
			name:  "status",
			files: map[string]string{"a.yaml": cm + "status:\n  phase: Active\n"},
			want:  []string{"a.yaml:5: status: Forbidden: status is written by Bosun's controllers, not by the repository; remove it"},
		},
		{
			name:  "secret data not base64",
			files: map[string]string{"a.yaml": "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\ndata:\n  password: hunter2!\n"},
			want:  []string{"a.yaml:5: data[password]: Invalid value: must be base64-encoded; use stringData for plain text"},
		},
		{
			name:  "empty status and null creationTimestamp are fine",
			files: map[string]string{"a.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, creationTimestamp: null}\nstatus: {}\n"},
		},
		{
			name:  "server-set metadata",
			files: map[string]string{"a.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n  resourceVersion: \"12\"\n  uid: 5f0c\n"},
			want: []string{
				"a.yaml:5: metadata.resourceVersion: Forbidden: set by the API server, not by manifests; remove it (was the file copied from `kubectl get -o yaml`?)",
				"a.yaml:6: metadata.uid: Forbidden: set by the API server, not by manifests; remove it (was the file copied from `kubectl get -o yaml`?)",
			},
		},
		{
			name:  "reserved annotation",
			files: map[string]string{"a.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n  annotations:\n    bosun.dev/source: x.yaml\n"},
			want:  []string{"a.yaml:6: metadata.annotations[bosun.dev/source]: Forbidden: annotations under bosun.dev/ are written by Bosun"},
		},
		{
			name:  "undeclared namespace",
			files: map[string]string{"a.yaml": strings.Replace(cm, "{name: settings}", "{name: settings, namespace: shop}", 1)},
			want:  []string{`a.yaml:3: metadata.namespace: namespace "shop" is not declared in the repository; add a Namespace manifest (apiVersion: v1, kind: Namespace, metadata.name: shop)`},
		},
		{
			name: "declared namespace",
			files: map[string]string{
				"a.yaml":  strings.Replace(cm, "{name: settings}", "{name: settings, namespace: shop}", 1),
				"ns.yaml": "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n",
			},
		},
		{
			name: "invalid names",
			files: map[string]string{"a.yaml": "apiVersion: v1\nkind: Namespace\nmetadata: {name: a.b}\n---\n" +
				"apiVersion: v1\nkind: Service\nmetadata: {name: 1svc}\nspec:\n  selector: {app: a}\n  ports: [{port: 80}]\n"},
			want: []string{
				`a.yaml:3: metadata.name: Invalid value: "a.b": must not contain dots`,
				`a.yaml:7: metadata.name: Invalid value: "1svc": a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')`,
			},
		},
		{
			name:  "invalid label",
			files: map[string]string{"a.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n  labels:\n    ok: yes-it-is\n    bad: \"-x\"\n"},
			want:  []string{`a.yaml:5: metadata.labels: Invalid value: "-x": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')`},
		},
		{
			name:  "selector does not match template",
			files: map[string]string{"a.yaml": strings.Replace(deployment, "labels: {app: web}", "labels: {app: api}", 1)},
			want:  []string{"a.yaml:10: spec.template.metadata.labels: Invalid value: {\"app\":\"api\"}: `selector` does not match template `labels`"},
		},
		{
			name:  "missing selector",
			files: map[string]string{"a.yaml": strings.Replace(deployment, "  selector:\n    matchLabels: {app: web}\n", "", 1)},
			want:  []string{"a.yaml:5: spec.selector: Required value: set matchLabels selecting the pod template's labels"},
		},
		{
			name: "containers",
			files: map[string]string{"a.yaml": strings.Replace(deployment, "          image: docker.io/library/busybox:1.36\n",
				"          image: \"\"\n          ports: [{containerPort: 0, name: http}, {containerPort: 81, name: http}]\n"+
					"        - name: Web\n          image: x\n          resources:\n            requests: {memory: 2Gi}\n            limits: {memory: 1Gi, cpu: lots}\n", 1)},
			want: []string{
				"a.yaml:14: spec.template.spec.containers[0].image: Required value: set the container image, for example docker.io/library/busybox:1.36",
				"a.yaml:15: spec.template.spec.containers[0].ports[0].containerPort: Invalid value: 0: must be between 1 and 65535, inclusive",
				`a.yaml:15: spec.template.spec.containers[0].ports[1].name: Duplicate value: "http"`,
				`a.yaml:16: spec.template.spec.containers[1].name: Invalid value: "Web": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')`,
				`a.yaml:19: spec.template.spec.containers[1].resources.requests[memory]: Invalid value: "2Gi": must be less than or equal to memory limit of 1Gi`,
				`a.yaml:20: spec.template.spec.containers[1].resources.limits[cpu]: Invalid value: "lots": must be a quantity such as 500m, 1, 128Mi`,
			},
		},
		{
			name: "volumes",
			files: map[string]string{"a.yaml": strings.Replace(deployment, "      containers:\n",
				"      volumes:\n        - {name: data, emptyDir: {}}\n        - {name: data, hostPath: {path: rel}}\n        - {name: claim, persistentVolumeClaim: {claimName: c}}\n      containers:\n", 1) +
				"          volumeMounts: [{name: nope, mountPath: /x}]\n"},
			want: []string{
				`a.yaml:14: spec.template.spec.volumes[1].hostPath.path: Invalid value: "rel": must be an absolute path`,
				`a.yaml:14: spec.template.spec.volumes[1].name: Duplicate value: "data"`,
				"a.yaml:15: spec.template.spec.volumes[2].persistentVolumeClaim: Unsupported: Bosun does not implement persistentVolumeClaim yet (supported: emptyDir, hostPath, configMap, secret, downwardAPI, projected)",
				`a.yaml:19: spec.template.spec.containers[0].volumeMounts[0].name: Not found: "nope"`,
			},
		},
		{
			name: "downwardAPI and projected volumes",
			files: map[string]string{"a.yaml": strings.Replace(deployment, "      containers:\n",
				"      volumes:\n"+
					"        - name: info\n          downwardAPI:\n            items:\n"+
					"              - {path: labels, fieldRef: {fieldPath: metadata.labels}}\n"+
					"              - {path: ip, fieldRef: {fieldPath: status.podIP}}\n"+
					"              - {path: mem, resourceFieldRef: {resource: limits.memory}}\n"+
					"              - {path: cpu, resourceFieldRef: {containerName: web, resource: limits.cpu, divisor: lots}}\n"+
					"              - {path: ../up, fieldRef: {fieldPath: \"metadata.annotations['a']\"}, mode: 01000}\n"+
					"        - name: all\n          projected:\n            sources:\n"+
					"              - configMap: {name: cfg, items: [{key: a, path: a}]}\n"+
					"              - serviceAccountToken: {path: token}\n"+
					"      containers:\n", 1)},
			want: []string{
				`a.yaml:17: spec.template.spec.volumes[0].downwardAPI.items[1].fieldRef.fieldPath: Unsupported value: "status.podIP": supported values: "metadata.name", "metadata.namespace", "metadata.uid", "metadata.labels", "metadata.annotations", "metadata.labels['<KEY>']", "metadata.annotations['<KEY>']"`,
				"a.yaml:18: spec.template.spec.volumes[0].downwardAPI.items[2].resourceFieldRef.containerName: Required value: a downwardAPI volume names the container whose resources it shows",
				`a.yaml:19: spec.template.spec.volumes[0].downwardAPI.items[3].resourceFieldRef.divisor: Invalid value: "lots": must be a quantity such as 500m, 1, 128Mi`,
				`a.yaml:20: spec.template.spec.volumes[0].downwardAPI.items[4].mode: Invalid value: 512: must be a number between 0 and 0777 (octal), both inclusive`,
				`a.yaml:20: spec.template.spec.volumes[0].downwardAPI.items[4].path: Invalid value: "../up": must not contain '..'`,
				"a.yaml:25: spec.template.spec.volumes[1].projected.sources[1].serviceAccountToken: Unsupported: Bosun does not implement serviceAccountToken yet (supported: configMap, secret, downwardAPI)",
			},
		},
		{
			name: "downwardAPI references and projected paths",
			files: map[string]string{"a.yaml": strings.Replace(deployment, "      containers:\n",
				"      volumes:\n"+
					"        - name: info\n          downwardAPI:\n            items:\n"+
					"              - {path: cpu, resourceFieldRef: {containerName: nope, resource: limits.gpu}}\n"+
					"        - name: all\n          projected:\n            sources:\n"+
					"              - configMap: {name: cfg, items: [{key: a, path: same}]}\n"+
					"              - secret: {name: sec, items: [{key: b, path: same}]}\n"+
					"              - {}\n"+
					"      containers:\n", 1)},
			want: []string{
				`a.yaml:16: spec.template.spec.volumes[0].downwardAPI.items[0].resourceFieldRef.containerName: Not found: "nope"`,
				`a.yaml:16: spec.template.spec.volumes[0].downwardAPI.items[0].resourceFieldRef.resource: Unsupported value: "limits.gpu": supported values: "limits.cpu", "limits.memory", "limits.ephemeral-storage", "requests.cpu", "requests.memory", "requests.ephemeral-storage"`,
				`a.yaml:21: spec.template.spec.volumes[1].projected.sources[1].secret.items[0].path: Invalid value: "same": conflicting duplicate paths: also written by spec.template.spec.volumes[1].projected.sources[0].configMap.items[0].path`,
				"a.yaml:22: spec.template.spec.volumes[1].projected.sources[2]: Required value: must specify a source (configMap, secret or downwardAPI)",
			},
		},
		{
			name:  "unsupported pod fields",
			files: map[string]string{"a.yaml": strings.Replace(deployment, "      containers:\n", "      hostPID: true\n      hostIPC: true\n      dnsPolicy: ClusterFirstWithFriends\n      containers:\n", 1)},
			want: []string{
				`a.yaml:12: spec.template.spec.hostPID: Unsupported: Bosun does not implement this field yet; remove it`,
				`a.yaml:13: spec.template.spec.hostIPC: Unsupported: Bosun does not implement this field yet; remove it`,
				`a.yaml:14: spec.template.spec.dnsPolicy: Unsupported value: "ClusterFirstWithFriends": Bosun does not implement it yet (supported: "ClusterFirst", "ClusterFirstWithHostNet", "Default", "None")`,
			},
		},
		{
			name: "hostNetwork containers listen on the node's ports",
			files: map[string]string{"a.yaml": strings.Replace(deployment, "      containers:\n", "      hostNetwork: true\n      dnsPolicy: ClusterFirstWithHostNet\n      containers:\n", 1) +
				"          ports: [{containerPort: 80}, {containerPort: 81, hostPort: 9081}]\n"},
			want: []string{
				`a.yaml:17: spec.template.spec.containers[0].ports[1].hostPort: Invalid value: 9081: must match containerPort when hostNetwork is true (the container listens on the node's own ports)`,
			},
		},
		{
			name: "fields the pod workers implement load; postStart and sidecars do not",
			files: map[string]string{"a.yaml": strings.Replace(deployment, "      containers:\n",
				"      dnsPolicy: None\n      dnsConfig: {nameservers: [192.0.2.53]}\n      hostAliases: [{ip: 192.0.2.1, hostnames: [db]}]\n"+
					"      subdomain: web\n      setHostnameAsFQDN: true\n      imagePullSecrets: [{name: regcred}]\n"+
					"      volumes: [{name: tmp, emptyDir: {medium: Memory}}]\n"+
					"      initContainers:\n        - name: init\n          image: docker.io/library/busybox:1.36\n"+
					"          env: [{name: MEM, valueFrom: {resourceFieldRef: {resource: limits.memory}}}]\n"+
					"        - {name: sidecar, image: docker.io/library/busybox:1.36, restartPolicy: Always, tty: true}\n      containers:\n", 1) +
				"          startupProbe: {tcpSocket: {port: 80}}\n          lifecycle: {preStop: {exec: {command: [sleep, \"1\"]}}, postStart: {exec: {command: [\"true\"]}}}\n" +
				"          volumeMounts: [{name: tmp, mountPath: /tmp, subPathExpr: $(POD)}]\n"},
			want: []string{
				`a.yaml:23: spec.template.spec.initContainers[1].restartPolicy: Unsupported: Bosun does not implement this field yet; remove it`,
				`a.yaml:23: spec.template.spec.initContainers[1].tty: Unsupported: Bosun does not implement this field yet; remove it`,
				`a.yaml:28: spec.template.spec.containers[0].lifecycle.postStart: Unsupported: Bosun does not implement this field yet; remove it`,
			},
		},
		{
			name: "the security settings the agent implements load",
			files: map[string]string{"a.yaml": strings.Replace(deployment, "      containers:\n",
				"      securityContext: {runAsNonRoot: true, runAsUser: 1000, runAsGroup: 1000, supplementalGroups: [5, 6]}\n"+
					"      initContainers:\n        - name: init\n          image: docker.io/library/busybox:1.36\n"+
					"          securityContext: {runAsGroup: 7, capabilities: {drop: [ALL]}, procMount: Default, seccompProfile: {type: RuntimeDefault}}\n      containers:\n", 1) +
				"          securityContext:\n            privileged: false\n            readOnlyRootFilesystem: true\n" +
				"            allowPrivilegeEscalation: false\n            capabilities: {add: [NET_BIND_SERVICE, cap_net_raw], drop: [all]}\n" +
				"        - name: root\n          image: docker.io/library/busybox:1.36\n" +
				"          securityContext: {runAsNonRoot: false, runAsUser: 0, privileged: true, allowPrivilegeEscalation: true, capabilities: {add: [ALL]}}\n"},
		},
		{
			name: "security settings Kubernetes or the kubelet refuse, and those Bosun does not implement",
			files: map[string]string{"a.yaml": strings.Replace(deployment, "      containers:\n",
				"      securityContext:\n        runAsNonRoot: true\n        runAsUser: 0\n        supplementalGroups: [5, -2]\n"+
					"        seccompProfile: {type: Localhost, localhostProfile: my.json}\n      containers:\n", 1) +
				"          securityContext:\n            privileged: true\n            allowPrivilegeEscalation: false\n" +
				"            capabilities: {add: [NET_ADMIN, sys_admin, FLY], drop: [ALL, CAP_NOPE]}\n" +
				"            runAsGroup: -1\n            procMount: Unmasked\n" +
				"        - name: other\n          image: docker.io/library/busybox:1.36\n" +
				"          securityContext: {runAsUser: 0, runAsNonRoot: true}\n" +
				"        - name: third\n          image: docker.io/library/busybox:1.36\n"},
			want: []string{
				"a.yaml:14: spec.template.spec.securityContext.runAsUser: Invalid value: 0: runAsNonRoot is true, so the container would never start; set a non-zero runAsUser or remove runAsNonRoot",
				"a.yaml:15: spec.template.spec.securityContext.supplementalGroups[1]: Invalid value: -2: must be between 0 and 2147483647, inclusive",
				"a.yaml:16: spec.template.spec.securityContext.seccompProfile.localhostProfile: Unsupported: Bosun does not implement this field yet; remove it",
				`a.yaml:16: spec.template.spec.securityContext.seccompProfile.type: Unsupported value: "Localhost": Bosun does not implement it yet (supported: "RuntimeDefault", "Unconfined")`,
				"a.yaml:22: spec.template.spec.containers[0].securityContext.allowPrivilegeEscalation: Invalid value: false: cannot set `allowPrivilegeEscalation` to false and `capabilities.Add` CAP_SYS_ADMIN",
				"a.yaml:22: spec.template.spec.containers[0].securityContext.allowPrivilegeEscalation: Invalid value: false: cannot set `allowPrivilegeEscalation` to false and `privileged` to true",
				`a.yaml:23: spec.template.spec.containers[0].securityContext.capabilities.add[2]: Invalid value: "FLY": not a Linux capability; use a name from capabilities(7) with or without CAP_ (NET_ADMIN, CAP_NET_ADMIN) or ALL`,
				`a.yaml:23: spec.template.spec.containers[0].securityContext.capabilities.drop[1]: Invalid value: "CAP_NOPE": not a Linux capability; use a name from capabilities(7) with or without CAP_ (NET_ADMIN, CAP_NET_ADMIN) or ALL`,
				"a.yaml:24: spec.template.spec.containers[0].securityContext.runAsGroup: Invalid value: -1: must be between 0 and 2147483647, inclusive",
				`a.yaml:25: spec.template.spec.containers[0].securityContext.procMount: Unsupported value: "Unmasked": Bosun does not implement it yet (supported: "Default")`,
				// The pod's runAsUser 0 is reported once, at the pod; the container's own at the container.
				"a.yaml:28: spec.template.spec.containers[1].securityContext.runAsUser: Invalid value: 0: runAsNonRoot is true, so the container would never start; set a non-zero runAsUser or remove runAsNonRoot",
			},
		},
		{
			name: "affinity: required node affinity is implemented, pod anti-affinity is not",
			files: map[string]string{"a.yaml": strings.Replace(deployment, "      containers:\n",
				"      affinity:\n        nodeAffinity:\n          requiredDuringSchedulingIgnoredDuringExecution:\n"+
					"            nodeSelectorTerms: [{matchExpressions: [{key: disk, operator: In, values: [ssd]}]}]\n"+
					"        podAntiAffinity: {requiredDuringSchedulingIgnoredDuringExecution: [{topologyKey: zone}]}\n      containers:\n", 1)},
			want: []string{
				`a.yaml:16: spec.template.spec.affinity.podAntiAffinity: Unsupported: Bosun does not implement this field yet; remove it`,
			},
		},
		{
			name: "service",
			files: map[string]string{"a.yaml": "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec:\n  type: LoadBalancer\n" +
				"  ports:\n    - {name: a, port: 80, targetPort: \"-x\"}\n    - {name: a, port: 80}\n"},
			want: []string{
				"a.yaml:4: spec.selector: Required value: Bosun computes endpoints from the selector; a Service without one is not supported",
				`a.yaml:5: spec.type: Unsupported value: "LoadBalancer": Bosun does not implement it yet (supported: "ClusterIP", "NodePort")`,
				`a.yaml:7: spec.ports[0].targetPort: Invalid value: "-x": must not begin or end with a hyphen`,
				`a.yaml:8: spec.ports[1]: Duplicate value: "80/TCP"`,
				`a.yaml:8: spec.ports[1].name: Duplicate value: "a"`,
			},
		},
		{
			name:  "cluster outside bosun.yaml",
			files: map[string]string{"conf/bosun.yaml": "apiVersion: bosun.dev/v1alpha1\nkind: Cluster\nmetadata: {name: c}\n"},
			want:  []string{"conf/bosun.yaml:2: kind: a Cluster may only be declared in bosun.yaml at the repository root"},
		},
		{
			name:  "two clusters",
			files: map[string]string{"bosun.yaml": "apiVersion: bosun.dev/v1alpha1\nkind: Cluster\nmetadata: {name: c}\n---\napiVersion: bosun.dev/v1alpha1\nkind: Cluster\nmetadata: {name: d}\n"},
			want:  []string{"bosun.yaml:5: a second Cluster; a repository declares at most one, in bosun.yaml (the first is at line 1)"},
		},
		{
			name: "cluster",
			files: map[string]string{"bosun.yaml": "apiVersion: bosun.dev/v1alpha1\nkind: Cluster\nmetadata: {name: c}\nspec:\n" +
				"  podCIDR: 10.0.0.0/25\n  serviceCIDR: 10.0.0.0/8\n  clusterDomain: Cluster_Local\n  podEvictionTimeout: 5\n  proxyMode: ipvs\n"},
			want: []string{
				`bosun.yaml:5: spec.podCIDR: Invalid value: "10.0.0.0/25": must be /24 or larger: it is split into one /24 per node (spec.nodeCIDRMaskSize)`,
				`bosun.yaml:6: spec.serviceCIDR: Invalid value: "10.0.0.0/8": overlaps podCIDR 10.0.0.0/25`,
				`bosun.yaml:7: spec.clusterDomain: Invalid value: "Cluster_Local": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')`,
				"bosun.yaml:8: spec.podEvictionTimeout: Invalid value: 5: must be a duration such as 40s or 5m",
				`bosun.yaml:9: spec.proxyMode: Unsupported value: "ipvs": supported values: "iptables", "nftables"`,
			},
		},
		{
			name: "node CIDR mask size",
			files: map[string]string{
				"bosun.yaml": "apiVersion: bosun.dev/v1alpha1\nkind: Cluster\nmetadata: {name: c}\nspec:\n" +
					"  podCIDR: 10.244.0.0/22\n  nodeCIDRMaskSize: 26\n",
				"machines/a.yaml": "apiVersion: bosun.dev/v1alpha1\nkind: Machine\nmetadata: {name: a}\nspec: {address: 192.0.2.1, hostKey: \"SHA256:" + strings.Repeat("A", 43) + "\", podCIDR: 10.244.1.0/24}\n",
				"machines/b.yaml": "apiVersion: bosun.dev/v1alpha1\nkind: Machine\nmetadata: {name: b}\nspec: {address: 192.0.2.2, hostKey: \"SHA256:" + strings.Repeat("A", 43) + "\", podCIDR: 10.244.1.64/26}\n",
			},
			want: []string{`machines/a.yaml:4: spec.podCIDR: Invalid value: "10.244.1.0/24": must be a /26, the size of every node's pod CIDR (bosun.yaml spec.nodeCIDRMaskSize)`},
		},
		{
			name:  "node CIDR mask size out of range",
			files: map[string]string{"bosun.yaml": "apiVersion: bosun.dev/v1alpha1\nkind: Cluster\nmetadata: {name: c}\nspec:\n  nodeCIDRMaskSize: 30\n"},
			want:  []string{"bosun.yaml:5: spec.nodeCIDRMaskSize: Invalid value: 30: must be between 16 and 28: each node gets one /30 of podCIDR (24, the default, leaves 254 pod addresses per node)"},
		},
		{
			name: "webhook secret reference fields",
			files: map[string]string{"bosun.yaml": "apiVersion: bosun.dev/v1alpha1\nkind: Cluster\nmetadata: {name: c}\nspec:\n" +
				"  webhook:\n    secretRef: {name: Hook, key: \"a b\"}\n"},
			want: []string{
				"bosun.yaml:6: spec.webhook.secretRef.key: Invalid value: \"a b\": a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')",
				`bosun.yaml:6: spec.webhook.secretRef.name: Invalid value: "Hook": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')`,
				"bosun.yaml:6: spec.webhook.secretRef.namespace: Required value: the Secret's namespace",
			},
		},
		{
			name: "webhook secret not in the repository",
			files: map[string]string{"bosun.yaml": "apiVersion: bosun.dev/v1alpha1\nkind: Cluster\nmetadata: {name: c}\nspec:\n" +
				"  webhook:\n    secretRef:\n      namespace: kube-system\n      name: hook\n      key: secret\n"},
			want: []string{`bosun.yaml:8: spec.webhook.secretRef.name: Not found: Secret kube-system/hook is not declared in the repository; add it (with the key "secret") or fix the reference`},
		},
		{
			name: "webhook secret without the key",
			files: map[string]string{
				"bosun.yaml": "apiVersion: bosun.dev/v1alpha1\nkind: Cluster\nmetadata: {name: c}\nspec:\n" +
					"  webhook:\n    secretRef:\n      namespace: kube-system\n      name: hook\n      key: secret\n",
				"hook.yaml": "apiVersion: v1\nkind: Secret\nmetadata: {name: hook, namespace: kube-system}\nstringData: {token: x, other: y}\n",
			},
			want: []string{`bosun.yaml:9: spec.webhook.secretRef.key: Invalid value: "secret": Secret kube-system/hook (hook.yaml:1) has no such key (its keys: other, token)`},
		},
		{
			name:  "machine outside machines/",
			files: map[string]string{"machines/sub/m.yaml": "apiVersion: bosun.dev/v1alpha1\nkind: Machine\nmetadata: {name: m}\nspec: {address: 192.0.2.1}\n"},
			want:  []string{"machines/sub/m.yaml:2: kind: a Machine may only be declared in machines/*.yaml; move it there"},
		},
		{
			name: "machine",
			files: map[string]string{"machines/m.yaml": "apiVersion: bosun.dev/v1alpha1\nkind: Machine\nmetadata: {name: m}\nspec:\n" +
				"  address: 192.0.2.1\n  user: \"root; rm\"\n  hostKey: SHA256:short\n  taints: [{key: a, effect: NoSchedule}, {key: a, effect: NoSchedule}, {key: b}]\n"},
			want: []string{
				`machines/m.yaml:6: spec.user: Invalid value: "root; rm": must be a Unix user name (lower case letters, digits, '_' and '-', starting with a letter or '_', at most 32 characters)`,
				`machines/m.yaml:7: spec.hostKey: Invalid value: "SHA256:short": a SHA256 fingerprint is 43 base64 characters, as printed by ssh-keygen -lf`,
				`machines/m.yaml:8: spec.taints[1]: Duplicate value: "a:NoSchedule"`,
				`machines/m.yaml:8: spec.taints[2].effect: Required value: one of NoSchedule, PreferNoSchedule, NoExecute`,
			},
		},
		{
			name:  "machine without host key",
			files: map[string]string{"machines/m.yaml": "apiVersion: bosun.dev/v1alpha1\nkind: Machine\nmetadata: {name: m}\nspec:\n  address: 192.0.2.1\n"},
			want:  []string{"machines/m.yaml:4: spec.hostKey: Required value: pin the machine's SSH host key (ssh-keyscan -t ed25519 192.0.2.1), or set spec.trustOnFirstUse: true in bosun.yaml"},
		},
		{
			name: "jump host with an unknown field",
			files: map[string]string{"machines/m.yaml": "apiVersion: bosun.dev/v1alpha1\nkind: Machine\nmetadata: {name: m}\nspec:\n" +
				"  address: 192.0.2.1\n  hostKey: SHA256:nR/ocfKOyyJOFJcC7+9JXsOB/PuLEG+0qde1pFhRYcs\n  proxyJump:\n" +
				"    address: bastion-1\n    port: 2222\n    user: admin\n    hostKey: SHA256:nR/ocfKOyyJOFJcC7+9JXsOB/PuLEG+0qde1pFhRYcs\n    forward: yes\n"},
			want: []string{`machines/m.yaml:12: spec.proxyJump.forward: unknown field "forward"; check its spelling and indentation (Bosun decodes manifests strictly)`},
		},
		{
			name: "jump host fields",
			files: map[string]string{"machines/m.yaml": "apiVersion: bosun.dev/v1alpha1\nkind: Machine\nmetadata: {name: m}\nspec:\n" +
				"  address: 192.0.2.1\n  hostKey: SHA256:nR/ocfKOyyJOFJcC7+9JXsOB/PuLEG+0qde1pFhRYcs\n  proxyJump:\n" +
				"    address: bastion_1\n    port: 70000\n    user: Admin\n    hostKey: ssh-ed25519 AAAAnotakey\n"},
			want: []string{
				`machines/m.yaml:8: spec.proxyJump.address: Invalid value: "bastion_1": must be an IP address or a DNS name`,
				`machines/m.yaml:9: spec.proxyJump.port: Invalid value: 70000: must be between 1 and 65535, inclusive`,
				`machines/m.yaml:10: spec.proxyJump.user: Invalid value: "Admin": must be a Unix user name (lower case letters, digits, '_' and '-', starting with a letter or '_', at most 32 characters)`,
				`machines/m.yaml:11: spec.proxyJump.hostKey: Invalid value: "ssh-ed25519 AAAAnotakey": must be an SSH public key such as "ssh-ed25519 AAAA..." (from ssh-keyscan or /etc/ssh/ssh_host_ed25519_key.pub) or a "SHA256:..." fingerprint`,
			},
		},
		{
			name: "jump host is the machine itself",
			files: map[string]string{"machines/m.yaml": "apiVersion: bosun.dev/v1alpha1\nkind: Machine\nmetadata: {name: m}\nspec:\n" +
				"  address: 192.0.2.1\n  hostKey: SHA256:nR/ocfKOyyJOFJcC7+9JXsOB/PuLEG+0qde1pFhRYcs\n  proxyJump: {address: 192.0.2.1}\n"},
			want: []string{
				`machines/m.yaml:7: spec.proxyJump.address: Invalid value: "192.0.2.1": is the machine itself; a jump host is another machine that reaches this one`,
			},
		},
		{
			name: "jump host without host key",
			files: map[string]string{"machines/m.yaml": "apiVersion: bosun.dev/v1alpha1\nkind: Machine\nmetadata: {name: m}\nspec:\n" +
				"  address: 192.0.2.1\n  hostKey: SHA256:nR/ocfKOyyJOFJcC7+9JXsOB/PuLEG+0qde1pFhRYcs\n  proxyJump:\n    address: 192.0.2.2\n"},
			want: []string{"machines/m.yaml:7: spec.proxyJump.hostKey: Required value: pin the jump host's SSH host key (ssh-keyscan -t ed25519 192.0.2.2), or set spec.trustOnFirstUse: true in bosun.yaml"},
		},
		{
			name: "jump host key learned on first use",
			files: map[string]string{
				"bosun.yaml":      "apiVersion: bosun.dev/v1alpha1\nkind: Cluster\nmetadata: {name: c}\nspec: {trustOnFirstUse: true}\n",
				"machines/m.yaml": "apiVersion: bosun.dev/v1alpha1\nkind: Machine\nmetadata: {name: m}\nspec:\n  address: 192.0.2.1\n  proxyJump: {address: 192.0.2.2}\n",
			},
			want: nil,
		},
		{
			name:  "duplicate JSON key",
			files: map[string]string{"c.json": `{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "data": {"a": "1", "a": "2"}}`},
			want:  []string{`c.json:1: invalid JSON: mapping key "a" already defined at line 1`},
		},
		{
			name: "invalid selector operator, and the template still checked",
			files: map[string]string{"d.yaml": "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec:\n  selector:\n" +
				"    matchExpressions:\n    - {key: app, operator: Inn, values: [web]}\n  template:\n    metadata: {labels: {app: web}}\n" +
				"    spec:\n      containers: [{name: C_bad, image: busybox}]\n"},
			want: []string{
				`d.yaml:7: spec.selector.matchExpressions[0].operator: Invalid value: "Inn": not a valid selector operator`,
				`d.yaml:11: spec.template.spec.containers[0].name: Invalid value: "C_bad": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')`,
			},
		},
		{
			name: "service addresses",
			files: map[string]string{
				"bosun.yaml": "apiVersion: bosun.dev/v1alpha1\nkind: Cluster\nmetadata: {name: c}\nspec: {serviceCIDR: 10.96.0.0/24}\n",
				"a.yaml": svcYAML("outside", "  clusterIP: 10.0.0.1\n  ports: [{port: 80}]\n") + "---\n" +
					svcYAML("reserved", "  clusterIP: 10.96.0.1\n  ports: [{port: 80}]\n") + "---\n" +
					svcYAML("broadcast", "  clusterIP: 10.96.0.255\n  ports: [{port: 80}]\n") + "---\n" +
					svcYAML("first", "  clusterIP: 10.96.0.10\n  type: NodePort\n  ports:\n  - {name: a, port: 80, nodePort: 30080}\n  - {name: b, port: 81, protocol: UDP, nodePort: 30080}\n"),
				"b.yaml": svcYAML("second", "  type: NodePort\n  clusterIP: 10.96.0.10\n  ports:\n  - {port: 80, nodePort: 30080}\n") + "---\n" +
					svcYAML("headless", "  clusterIP: None\n  ports: [{port: 80}]\n") + "---\n" +
					svcYAML("fine", "  clusterIP: 10.96.0.11\n  ports: [{port: 80}]\n"),
			},
			want: []string{
				"a.yaml:6: spec.clusterIP: 10.0.0.1 is not in the cluster's service range 10.96.0.0/24 (bosun.yaml spec.serviceCIDR); choose an address in it, or remove spec.clusterIP to get one allocated",
				"a.yaml:14: spec.clusterIP: 10.96.0.1 is reserved for the API service default/kubernetes; choose another address, or remove spec.clusterIP",
				"a.yaml:22: spec.clusterIP: 10.96.0.255 is the network or broadcast address of the service range 10.96.0.0/24; choose another address, or remove spec.clusterIP",
				"b.yaml:7: spec.clusterIP: cluster IP 10.96.0.10 is also asked for by Service default/first at a.yaml:30; every Service needs its own, remove spec.clusterIP from one of them",
				"b.yaml:9: spec.ports[0].nodePort: node port 30080 is also asked for by Service default/first at a.yaml:33; every Service needs its own, remove nodePort from one of them to get one allocated",
			},
		},
		{
			name: "list",
			files: map[string]string{"l.yaml": "apiVersion: v1\nkind: List\nitems:\n  - " + strings.ReplaceAll(strings.TrimSpace(cm), "\n", "\n    ") +
				"\n  - apiVersion: v1\n    kind: Secret\n    metadata: {name: s}\n    bogus: 1\n"},
			want: []string{`l.yaml:11: items[1].bogus: unknown field "bogus"; check its spelling and indentation (Bosun decodes manifests strictly)`},
		},
		{
			name: "ignored and hidden files",
			files: map[string]string{
				".bosunignore":          "drafts/\n*.tmp.yaml\n!keep.tmp.yaml\n",
				"drafts/a.yaml":         "garbage: [",
				"x.tmp.yaml":            "garbage: [",
				".hidden/a.yaml":        "garbage: [",
				"dir/.also-hidden.yaml": "garbage: [",
				"README.md":             "garbage: [",
				"keep.tmp.yaml":         "garbage: [",
			},
			want: []string{"keep.tmp.yaml:1: garbage: invalid YAML: did not find expected node content"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := writeTree(t, tt.files)
			_, err := LoadDir(dir)
			if diff := cmp.Diff(tt.want, errorLines(t, err)); diff != "" {
				t.Errorf("errors (-want +got):\n%s", diff)
			}
		})
	}
}

func TestSymlinksInDir(t *testing.T) {
	dir := writeTree(t, map[string]string{"shared/cm.txt": cm, "outside.yaml": cm})
	outside := t.TempDir()
	for _, l := range []struct{ target, link string }{
		{"../shared/cm.txt", "apps/cm.yaml"},   // followed: a file inside the repository
		{"../shared", "apps/shared-dir"},       // followed: a directory, but it holds no manifest
		{"../../etc/passwd", "apps/evil.yaml"}, // leaves the repository
		{outside, "abs"},                       // absolute
		{"..", "apps/loop"},                    // a loop
		{"cm.yaml", "apps/chain.yaml"},         // a link to a link
	} {
		p := filepath.Join(dir, filepath.FromSlash(l.link))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(l.target, p); err != nil {
			t.Fatal(err)
		}
	}
	_, err := LoadDir(dir)
	want := []string{
		`abs:1: symlink to "` + outside + `" leaves the repository; link to a path inside it, relatively`,
		`apps/chain.yaml:1: symlink to "cm.yaml" points to another symlink; only one level of links is followed`,
		`apps/evil.yaml:1: symlink to "../../etc/passwd" leaves the repository; link to a path inside it`,
		`apps/loop:1: symlink to ".." points to a directory that contains it (a loop)`,
		`outside.yaml:3: metadata.name: ConfigMap default/settings is declared twice: here and at apps/cm.yaml:1; keep one`,
	}
	if diff := cmp.Diff(want, errorLines(t, err)); diff != "" {
		t.Errorf("errors (-want +got):\n%s", diff)
	}
}

func TestExampleValid(t *testing.T) {
	set, err := LoadDir("examples/valid")
	if err != nil {
		t.Fatalf("LoadDir: %v", err)
	}
	var got []string
	for _, o := range set.Objects {
		got = append(got, o.File+":"+strconv.Itoa(o.Line)+" "+o.Resource.Kind+" "+o.Object.GetNamespace()+"/"+o.Object.GetName())
	}
	want := []string{
		"apps/shop/all.yaml:3 Namespace /shop",
		"apps/shop/all.yaml:10 Deployment shop/api",
		"apps/shop/all.yaml:48 Service shop/api",
		"apps/shop/config.json:5 ConfigMap shop/api-config",
		"apps/shop/config.json:11 Secret shop/api-secret",
		"infra/node-exporter.yaml:1 DaemonSet kube-system/node-exporter",
		"infra/node-exporter.yaml:23 ReplicationController default/legacy",
		"infra/node-exporter.yaml:35 ReplicaSet default/plain",
		"infra/node-exporter.yaml:51 Pod default/once",
		"machines/db-1.yaml:1 Machine /db-1",
		"machines/web-1.yml:2 Machine /web-1",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("objects (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(Stats{Objects: 12, Files: 6}, set.Stats()); diff != "" {
		t.Errorf("stats (-want +got):\n%s", diff)
	}
	if set.Cluster.Name != "lab" || !set.Cluster.Spec.TrustOnFirstUse {
		t.Errorf("cluster = %+v, want lab with trustOnFirstUse", set.Cluster)
	}
}

// TestExampleInvalid compares every error of examples/invalid with testdata/invalid.golden;
// go test -run TestExampleInvalid -update rewrites it.
func TestExampleInvalid(t *testing.T) {
	_, err := LoadDir("examples/invalid")
	got := strings.Join(errorLines(t, err), "\n") + "\n"
	golden := filepath.Join("testdata", "invalid.golden")
	if *update {
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if diff := cmp.Diff(string(want), got); diff != "" {
		t.Errorf("errors (-want +got):\n%s", diff)
	}
}

func TestLoadDirIOError(t *testing.T) {
	_, err := LoadDir(filepath.Join(t.TempDir(), "absent"))
	var list ErrorList
	if err == nil || errors.As(err, &list) {
		t.Fatalf("err = %v, want an I/O error that is not an ErrorList", err)
	}
}
