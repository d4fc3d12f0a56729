package repolayout

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	bosunres "github.com/bosun-gitops/bosun/internal/resource"
)

// unsupportedField is a field that Kubernetes accepts but Bosun does not implement yet. Setting
// it is an error naming the field: it is never silently dropped. When a later change implements
// a field, it removes the field's entry here.
type unsupportedField struct {
	// path is a pattern relative to the object: "." separates keys, "[*]" is any list element,
	// "*" is any key of an object.
	path string
	// allowed, when set, lists the values Bosun implements; any other value is an error.
	allowed []string
	// onlyKeys, when set, lists the keys Bosun implements inside the object at path.
	onlyKeys []string
}

// podSpecUnsupported is relative to a pod spec. What the node agent's pod workers implement
// (nodeagent/pods) is not listed: init containers, startup probes, preStop hooks,
// imagePullSecrets, hostAliases, dnsConfig, dnsPolicy None, memory-backed emptyDirs,
// resourceFieldRef, subdomain, setHostnameAsFQDN, subPathExpr, hostNetwork, gRPC probes,
// downwardAPI and projected volumes, and of securityContext: runAsUser, runAsGroup, runAsNonRoot,
// supplementalGroups, capabilities, privileged, readOnlyRootFilesystem, allowPrivilegeEscalation
// (TestEverySecurityFieldImplementedOrRefused holds each securityContext field to one side).
var podSpecUnsupported = withInitContainers([]unsupportedField{
	{path: "ephemeralContainers"},
	// Required node affinity is scheduled (issue 3); preferences and pod (anti-)affinity are not.
	{path: "affinity.nodeAffinity.preferredDuringSchedulingIgnoredDuringExecution"},
	{path: "affinity.podAffinity"},
	{path: "affinity.podAntiAffinity"},
	{path: "topologySpreadConstraints"},
	{path: "priorityClassName"},
	{path: "priority"},
	{path: "preemptionPolicy"},
	{path: "runtimeClassName"},
	{path: "overhead"},
	{path: "readinessGates"},
	{path: "resourceClaims"},
	{path: "resources"},
	{path: "schedulingGates"},
	{path: "hostUsers"},
	{path: "os"},
	{path: "hostPID"},
	{path: "hostIPC"},
	{path: "shareProcessNamespace"},
	{path: "dnsPolicy", allowed: []string{"ClusterFirst", "ClusterFirstWithHostNet", "Default", "None"}},
	{path: "activeDeadlineSeconds"},
	{path: "serviceAccountName", allowed: []string{"default"}},
	{path: "serviceAccount", allowed: []string{"default"}},
	{path: "automountServiceAccountToken"},
	{path: "securityContext.seLinuxOptions"},
	{path: "securityContext.windowsOptions"},
	// RuntimeDefault is containerd's default profile; Localhost profiles would have to be on every node.
	{path: "securityContext.seccompProfile.type", allowed: []string{"RuntimeDefault", "Unconfined"}},
	{path: "securityContext.seccompProfile.localhostProfile"},
	{path: "securityContext.appArmorProfile"},
	{path: "securityContext.sysctls"},
	{path: "securityContext.fsGroup"},
	{path: "securityContext.fsGroupChangePolicy"},
	{path: "securityContext.seLinuxChangePolicy"},
	{path: "securityContext.supplementalGroupsPolicy"},
	{path: "volumes[*]", onlyKeys: []string{"name", "emptyDir", "hostPath", "configMap", "secret", "downwardAPI", "projected"}},
	// Bosun has no service accounts or trust bundles to project.
	{path: "volumes[*].projected.sources[*]", onlyKeys: []string{"configMap", "secret", "downwardAPI"}},
	{path: "volumes[*].emptyDir.medium", allowed: []string{"", "Memory"}},
	{path: "containers[*].lifecycle.postStart"},
	{path: "containers[*].lifecycle.stopSignal"},
	{path: "containers[*].resizePolicy"},
	// For init containers it makes sidecars (init containers that keep running): not implemented.
	{path: "containers[*].restartPolicy"},
	{path: "containers[*].restartPolicyRules"},
	{path: "containers[*].volumeDevices"},
	{path: "containers[*].stdin"},
	{path: "containers[*].stdinOnce"},
	{path: "containers[*].tty"},
	{path: "containers[*].securityContext.seLinuxOptions"},
	{path: "containers[*].securityContext.windowsOptions"},
	{path: "containers[*].securityContext.seccompProfile.type", allowed: []string{"RuntimeDefault", "Unconfined"}},
	{path: "containers[*].securityContext.seccompProfile.localhostProfile"},
	{path: "containers[*].securityContext.appArmorProfile"},
	// The default is the runtime's masked and read-only /proc paths; Unmasked needs user namespaces.
	{path: "containers[*].securityContext.procMount", allowed: []string{"Default"}},
	{path: "containers[*].env[*].valueFrom.fileKeyRef"},
	{path: "containers[*].volumeMounts[*].mountPropagation"},
	{path: "containers[*].volumeMounts[*].recursiveReadOnly"},
	{path: "containers[*].ports[*].hostIP"},
	{path: "containers[*].ports[*].protocol", allowed: []string{"TCP", "UDP"}},
})

// withInitContainers adds, for every containers[*] entry, the same entry for initContainers[*]:
// init containers are run by the same code as the others.
func withInitContainers(fields []unsupportedField) []unsupportedField {
	out := append([]unsupportedField{}, fields...)
	for _, f := range fields {
		if rest, ok := strings.CutPrefix(f.path, "containers[*]."); ok {
			f.path = "initContainers[*]." + rest
			out = append(out, f)
		}
	}
	return out
}

// serviceUnsupported is relative to a Service.
var serviceUnsupported = []unsupportedField{
	{path: "spec.type", allowed: []string{"ClusterIP", "NodePort"}},
	{path: "spec.externalName"},
	{path: "spec.externalIPs"},
	{path: "spec.loadBalancerIP"},
	{path: "spec.loadBalancerSourceRanges"},
	{path: "spec.loadBalancerClass"},
	{path: "spec.allocateLoadBalancerNodePorts"},
	{path: "spec.healthCheckNodePort"},
	{path: "spec.externalTrafficPolicy", allowed: []string{"Cluster"}},
	{path: "spec.internalTrafficPolicy", allowed: []string{"Cluster"}},
	{path: "spec.sessionAffinity", allowed: []string{"None"}},
	{path: "spec.sessionAffinityConfig"},
	{path: "spec.ipFamilies"},
	{path: "spec.ipFamilyPolicy", allowed: []string{"SingleStack"}},
	{path: "spec.publishNotReadyAddresses"},
	{path: "spec.trafficDistribution"},
	{path: "spec.ports[*].protocol", allowed: []string{"TCP", "UDP"}},
}

// unsupportedByKind is the table of unsupported field paths per kind.
var unsupportedByKind = map[string][]unsupportedField{
	"Pod":                   prefixed("spec.", podSpecUnsupported),
	"ReplicationController": prefixed("spec.template.spec.", podSpecUnsupported),
	"ReplicaSet":            prefixed("spec.template.spec.", podSpecUnsupported),
	"Deployment": append(prefixed("spec.template.spec.", podSpecUnsupported),
		unsupportedField{path: "spec.paused"}),
	"DaemonSet": prefixed("spec.template.spec.", podSpecUnsupported),
	"Service":   serviceUnsupported,
}

// unsupportedPatterns holds the paths of unsupportedByKind, per kind, for one walk of a
// document; the index of a pattern is that of its field.
var unsupportedPatterns = func() map[string]patternSet {
	out := make(map[string]patternSet, len(unsupportedByKind))
	for kind, fields := range unsupportedByKind {
		paths := make([]string, len(fields))
		for i, f := range fields {
			paths[i] = f.path
		}
		out[kind] = newPatternSet(paths)
	}
	return out
}()

func prefixed(prefix string, fields []unsupportedField) []unsupportedField {
	out := make([]unsupportedField, 0, len(fields))
	for _, f := range fields {
		f.path = prefix + f.path
		out = append(out, f)
	}
	return out
}

// checkUnsupported reports every unsupported field the document sets.
func checkUnsupported(doc document, r *bosunres.Resource) ErrorList {
	var errs ErrorList
	fields := unsupportedByKind[r.Kind]
	unsupportedPatterns[r.Kind].match(doc.value, func(i int, p string, v any) {
		f := fields[i]
		switch {
		case f.onlyKeys != nil:
			m, ok := v.(map[string]any)
			if !ok {
				return
			}
			keys := make([]string, 0, len(m))
			for k := range m {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				if !contains(f.onlyKeys, k) && !isEmptyValue(m[k]) {
					supported := slices.DeleteFunc(slices.Clone(f.onlyKeys), func(k string) bool { return k == "name" })
					errs = append(errs, doc.errorf(joinKey(p, k), "Unsupported: Bosun does not implement %s yet (supported: %s)",
						k, strings.Join(supported, ", ")))
				}
			}
		case f.allowed != nil:
			s := fmt.Sprint(v)
			if v == nil || contains(f.allowed, s) {
				return
			}
			errs = append(errs, doc.errorf(p, "Unsupported value: %q: Bosun does not implement it yet (supported: %s)",
				s, strings.Join(quoteAll(f.allowed), ", ")))
		case !isEmptyValue(v):
			errs = append(errs, doc.errorf(p, "Unsupported: Bosun does not implement this field yet; remove it"))
		}
	})
	return errs
}

func quoteAll(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = fmt.Sprintf("%q", s)
	}
	return out
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// isEmptyValue reports whether a generic JSON value is null, false, zero or empty: setting a
// field to its zero value asks for nothing unsupported.
func isEmptyValue(v any) bool {
	switch t := v.(type) {
	case nil:
		return true
	case bool:
		return !t
	case string:
		return t == ""
	case int:
		return t == 0
	case int64:
		return t == 0
	case uint64:
		return t == 0
	case float64:
		return t == 0
	case map[string]any:
		return len(t) == 0
	case []any:
		return len(t) == 0
	}
	return false
}

// patternSet is a set of path patterns matched in one walk of a document. A pattern is keys
// separated by dots, "*" for every key of an object and "[*]" for every list element
// ("spec.containers[*].ports[*].protocol", "metadata.labels.*"). Patterns that share a prefix
// share its walk: a document is walked once for all the unsupported fields of its kind.
type patternSet struct{ root *patternNode }

// patternNode is where some patterns stand after the segments that lead to it.
type patternNode struct {
	ends    []int          // the patterns that end here, by index
	keys    []patternChild // children by a key of an object
	anyKey  *patternNode   // "*"
	anyElem *patternNode   // "[*]"
}

type patternChild struct {
	key  string
	node *patternNode
}

func newPatternSet(patterns []string) patternSet {
	root := &patternNode{}
	for i, p := range patterns {
		n := root
		for p != "" {
			var seg string
			seg, p = nextSegment(p)
			n = n.child(seg)
		}
		n.ends = append(n.ends, i)
	}
	return patternSet{root}
}

func (n *patternNode) child(seg string) *patternNode {
	next := func(c **patternNode) *patternNode {
		if *c == nil {
			*c = &patternNode{}
		}
		return *c
	}
	switch seg {
	case "*":
		return next(&n.anyKey)
	case "[*]":
		return next(&n.anyElem)
	}
	for _, c := range n.keys {
		if c.key == seg {
			return c.node
		}
	}
	c := &patternNode{}
	n.keys = append(n.keys, patternChild{seg, c})
	return c
}

// match calls fn for every value of v at one of the patterns, with the pattern's index and the
// concrete field path. The path string is only built for a match: most patterns match nothing
// in most documents.
func (s patternSet) match(v any, fn func(i int, path string, v any)) {
	if s.root == nil {
		return // the empty set
	}
	var steps [16]pathStep
	s.root.match(v, steps[:0], fn)
}

func (n *patternNode) match(v any, steps []pathStep, fn func(int, string, any)) {
	if len(n.ends) > 0 {
		path := renderSteps(steps)
		for _, i := range n.ends {
			fn(i, path, v)
		}
	}
	switch t := v.(type) {
	case map[string]any:
		for _, c := range n.keys {
			if e, ok := t[c.key]; ok {
				c.node.match(e, append(steps, pathStep{key: c.key, index: -1}), fn)
			}
		}
		if n.anyElem != nil {
			// In an object, "[*]" names a key like any other.
			if e, ok := t["[*]"]; ok {
				n.anyElem.match(e, append(steps, pathStep{key: "[*]", index: -1}), fn)
			}
		}
		if n.anyKey != nil {
			keys := make([]string, 0, len(t))
			for k := range t {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				n.anyKey.match(t[k], append(steps, pathStep{key: k, bracketed: true}), fn)
			}
		}
	case []any:
		if n.anyElem != nil {
			for i, e := range t {
				n.anyElem.match(e, append(steps, pathStep{index: i}), fn)
			}
		}
	}
}

// matchPaths calls fn for every value of v at pattern (see patternSet), with the concrete
// field path.
func matchPaths(v any, pattern string, fn func(path string, v any)) {
	newPatternSet([]string{pattern}).match(v, func(_ int, p string, v any) { fn(p, v) })
}

// pathStep is one step walked by a match: an object key (bracketed when matched by "*") or a
// list index.
type pathStep struct {
	key       string
	index     int
	bracketed bool
}

// nextSegment splits the first segment off pattern.
func nextSegment(p string) (seg, rest string) {
	if strings.HasPrefix(p, "[*]") {
		seg, rest = "[*]", p[3:]
	} else if end := strings.IndexAny(p, ".["); end >= 0 {
		seg, rest = p[:end], p[end:]
	} else {
		seg, rest = p, ""
	}
	return seg, strings.TrimPrefix(rest, ".")
}

func renderSteps(steps []pathStep) string {
	at := ""
	for _, s := range steps {
		switch {
		case s.bracketed:
			at += "[" + s.key + "]"
		case s.index >= 0:
			at = fmt.Sprintf("%s[%d]", at, s.index)
		default:
			at = joinKey(at, s.key)
		}
	}
	return at
}
