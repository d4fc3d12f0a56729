package repolayout

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"regexp"
	"sort"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation/field"
	sigsjson "sigs.k8s.io/json"

	bosunres "github.com/bosun-gitops/bosun/internal/resource"
)

// errorf returns an Error at field (a path relative to the document) on the field's line.
func (d document) errorf(fieldPath, format string, args ...any) Error {
	return Error{File: d.file, Line: d.lineOf(fieldPath), Field: d.prefix + fieldPath, Reason: fmt.Sprintf(format, args...)}
}

// fieldErrors converts Kubernetes validation errors into Errors located in the document.
func (d document) fieldErrors(errs field.ErrorList) ErrorList {
	out := make(ErrorList, 0, len(errs))
	for _, e := range errs {
		out = append(out, Error{File: d.file, Line: lineOf(d.node, e.Field), Field: d.prefix + e.Field, Reason: e.ErrorBody()})
	}
	return out
}

// listItems splits a "kind: List" document into one document per item.
func listItems(doc document) (items []document, isList bool, errs ErrorList) {
	if kind, _ := doc.value["kind"].(string); kind != "List" {
		return nil, false, nil
	}
	if doc.prefix != "" {
		return nil, true, ErrorList{doc.errorf("kind", "a List may not contain another List")}
	}
	if av, _ := doc.value["apiVersion"].(string); av != "v1" {
		errs = append(errs, doc.errorf("apiVersion", "kind List has apiVersion v1"))
	}
	for k := range doc.value {
		switch k {
		case "apiVersion", "kind", "metadata", "items":
		default:
			errs = append(errs, doc.errorf(k, "unknown field %q", k))
		}
	}
	_, itemsNode := mappingEntry(doc.node, "items", 0)
	for itemsNode != nil && itemsNode.Kind == yaml.AliasNode && itemsNode.Alias != nil {
		itemsNode = itemsNode.Alias
	}
	if itemsNode == nil || (itemsNode.Kind == yaml.ScalarNode && itemsNode.Tag == "!!null") {
		return nil, true, errs
	}
	if itemsNode.Kind != yaml.SequenceNode {
		return nil, true, append(errs, doc.errorf("items", "must be a list of objects"))
	}
	for i, n := range itemsNode.Content {
		for n.Kind == yaml.AliasNode && n.Alias != nil {
			n = n.Alias
		}
		prefix := fmt.Sprintf("items[%d].", i)
		if n.Kind != yaml.MappingNode {
			errs = append(errs, Error{File: doc.file, Line: n.Line, Field: strings.TrimSuffix(prefix, "."),
				Reason: "a List item must be an object with apiVersion, kind and metadata"})
			continue
		}
		item, ierrs := documentFromNode(doc.file, n, prefix)
		errs = append(errs, ierrs...)
		if item != nil {
			items = append(items, *item)
		}
	}
	return items, true, errs
}

// forbiddenMetadata are fields the API server sets; a manifest that has them was most likely
// copied from `kubectl get -o yaml`.
var forbiddenMetadata = []string{
	"uid", "resourceVersion", "generation", "selfLink", "deletionTimestamp",
	"deletionGracePeriodSeconds", "managedFields", "ownerReferences",
}

// decodeDocument identifies the document's kind, decodes it strictly into its Go type, applies
// defaults and validates it. The object is nil when it could not be decoded; with errors, it is
// still returned for the checks that span objects (duplicates, namespaces).
func decodeDocument(doc document) (*bosunres.Resource, bosunres.Object, ErrorList) {
	var err error
	r, errs := identify(doc)
	if r == nil {
		return nil, nil, errs
	}
	errs = append(errs, checkMetadata(doc, r)...)
	errs = append(errs, checkStatus(doc)...)
	errs = append(errs, checkUnsupported(doc, r)...)
	// Quantities and durations decode through custom unmarshalers whose errors carry no field
	// path, so they are checked on the generic document first.
	raw := doc.raw
	pre, bad := checkCustomTypes(doc)
	errs = append(errs, pre...)
	if _, hasStatus := doc.value["status"]; hasStatus {
		// Reported by checkStatus when it matters; some kinds have no status field at all.
		bad = append(bad, "status")
	}
	if len(bad) > 0 {
		// Decode the rest anyway, without the bad values, to report every other error too.
		if raw, err = withoutPaths(doc.raw, bad); err != nil {
			return nil, nil, errs
		}
	}

	obj := r.New()
	strictErrs, err := sigsjson.UnmarshalStrict(raw, obj, sigsjson.DisallowUnknownFields, sigsjson.DisallowDuplicateFields)
	for _, se := range strictErrs {
		errs = append(errs, strictError(doc, se))
	}
	if err != nil {
		errs = append(errs, typeError(doc, err))
	}
	if err != nil || obj.GetName() == "" {
		return nil, nil, errs
	}
	// What checkMetadata refused is cleared so that validation does not report it again.
	obj.SetOwnerReferences(nil)
	obj.SetFinalizers(nil)
	obj.SetGenerateName("")
	if !r.Namespaced {
		obj.SetNamespace("")
	} else if obj.GetNamespace() == "" {
		obj.SetNamespace("default")
	}
	setDefaults(obj)
	errs = append(errs, doc.fieldErrors(validateObject(r, obj))...)
	return r, obj, errs
}

// identify maps apiVersion and kind to a resource Bosun accepts in the repository, in the file
// where the document is.
func identify(doc document) (*bosunres.Resource, ErrorList) {
	var errs ErrorList
	apiVersion, avOK := doc.value["apiVersion"].(string)
	kind, kOK := doc.value["kind"].(string)
	if !avOK || apiVersion == "" {
		errs = append(errs, doc.errorf("apiVersion", "Required value: every manifest needs apiVersion, kind and metadata.name"))
	}
	if !kOK || kind == "" {
		errs = append(errs, doc.errorf("kind", "Required value: every manifest needs apiVersion, kind and metadata.name"))
	}
	if len(errs) > 0 {
		return nil, errs
	}
	r, ok := bosunres.ForKind(apiVersion, kind)
	if !ok {
		versions := bosunres.KindKnown(kind)
		if len(versions) > 0 {
			return nil, ErrorList{doc.errorf("apiVersion", "kind %s is not served in %s; use apiVersion: %s", kind, apiVersion, strings.Join(versions, " or "))}
		}
		if alt := kindCaseInsensitive(kind); alt != "" {
			return nil, ErrorList{doc.errorf("kind", "unknown kind %q; did you mean %s?", kind, alt)}
		}
		return nil, ErrorList{doc.errorf("kind", "unknown kind %q; the repository may declare %s", kind, strings.Join(repoKinds(), ", "))}
	}
	if !r.InRepo {
		return nil, ErrorList{doc.errorf("kind", "%s objects are managed by Bosun and cannot be declared in the repository", kind)}
	}
	switch r {
	case bosunres.Clusters:
		if doc.file != clusterFile {
			return nil, ErrorList{doc.errorf("kind", "a Cluster may only be declared in %s at the repository root", clusterFile)}
		}
	case bosunres.Machines:
		if path.Dir(doc.file) != machinesDir {
			return nil, ErrorList{doc.errorf("kind", "a Machine may only be declared in %s/*.yaml; move it there", machinesDir)}
		}
	}
	return r, nil
}

func repoKinds() []string {
	var kinds []string
	for _, r := range bosunres.All {
		if r.InRepo {
			kinds = append(kinds, r.Kind)
		}
	}
	sort.Strings(kinds)
	return kinds
}

func kindCaseInsensitive(kind string) string {
	for _, r := range bosunres.All {
		if r.InRepo && strings.EqualFold(r.Kind, kind) {
			return r.Kind
		}
	}
	return ""
}

// checkMetadata refuses what the generic metadata must not have; the typed validation checks
// the rest.
func checkMetadata(doc document, r *bosunres.Resource) ErrorList {
	md, ok := doc.value["metadata"].(map[string]any)
	if !ok {
		if _, present := doc.value["metadata"]; present {
			return ErrorList{doc.errorf("metadata", "must be an object")}
		}
		return ErrorList{doc.errorf("metadata.name", "Required value: every manifest needs apiVersion, kind and metadata.name")}
	}
	var errs ErrorList
	if name, _ := md["name"].(string); name == "" {
		reason := "Required value: every manifest needs apiVersion, kind and metadata.name"
		if _, gen := md["generateName"]; gen {
			reason = "Required value: objects in Git need a fixed name; generateName is not supported"
		}
		errs = append(errs, doc.errorf("metadata.name", "%s", reason))
	}
	for _, f := range forbiddenMetadata {
		if _, set := md[f]; set {
			errs = append(errs, doc.errorf("metadata."+f, "Forbidden: set by the API server, not by manifests; remove it (was the file copied from `kubectl get -o yaml`?)"))
		}
	}
	if ts, set := md["creationTimestamp"]; set && ts != nil {
		// kubectl's --dry-run output has "creationTimestamp: null", which is harmless.
		errs = append(errs, doc.errorf("metadata.creationTimestamp", "Forbidden: set by the API server, not by manifests; remove it"))
	}
	if ns, set := md["namespace"]; set && !r.Namespaced && ns != nil && ns != "" {
		errs = append(errs, doc.errorf("metadata.namespace", "Forbidden: %s is cluster-scoped; remove metadata.namespace", r.Kind))
	}
	if fin, ok := md["finalizers"].([]any); ok && len(fin) > 0 {
		errs = append(errs, doc.errorf("metadata.finalizers", "Forbidden: finalizers are not supported in manifests"))
	}
	if ann, ok := md["annotations"].(map[string]any); ok {
		keys := make([]string, 0, len(ann))
		for k := range ann {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if strings.HasPrefix(k, "bosun.dev/") {
				errs = append(errs, doc.errorf("metadata.annotations["+k+"]", "Forbidden: annotations under bosun.dev/ are written by Bosun"))
			}
		}
	}
	return errs
}

// checkStatus refuses a non-empty status. The API server ignores status on create, but Git is
// the desired state: a status in a manifest would look meaningful while being discarded, so it
// is an error rather than silently dropped. An empty "status: {}" (kubectl --dry-run output) is
// accepted.
func checkStatus(doc document) ErrorList {
	st, set := doc.value["status"]
	if !set || isEmptyValue(st) {
		return nil
	}
	return ErrorList{doc.errorf("status", "Forbidden: status is written by Bosun's controllers, not by the repository; remove it")}
}

// checkCustomTypes validates fields whose Go types decode through custom unmarshalers (whose
// errors carry no field path). It returns the errors and the paths of the invalid values.
func checkCustomTypes(doc document) (ErrorList, []string) {
	var errs ErrorList
	var bad []string
	quantity := func(p string, v any) {
		var s string
		switch t := v.(type) {
		case string:
			s = t
		case int, int64, uint64, float64:
			s = fmt.Sprint(t)
		default:
			errs = append(errs, doc.errorf(p, "Invalid value: %v: must be a quantity such as 500m, 1, 128Mi", v))
			bad = append(bad, p)
			return
		}
		if _, err := resource.ParseQuantity(s); err != nil {
			errs = append(errs, doc.errorf(p, "Invalid value: %q: must be a quantity such as 500m, 1, 128Mi", s))
			bad = append(bad, p)
		}
	}
	for _, pod := range podSpecPrefixes(doc) {
		patterns, ok := quantityPatterns[pod]
		if !ok {
			patterns = podQuantityPatterns(pod)
		}
		patterns.match(doc.value, func(_ int, p string, v any) { quantity(p, v) })
	}
	if kind, _ := doc.value["kind"].(string); kind == "Cluster" {
		for _, f := range []string{"spec.nodeMonitorGracePeriod", "spec.podEvictionTimeout"} {
			matchPaths(doc.value, f, func(p string, v any) {
				s, ok := v.(string)
				if _, err := time.ParseDuration(s); !ok || err != nil {
					errs = append(errs, doc.errorf(p, "Invalid value: %v: must be a duration such as 40s or 5m", quoteIfString(v)))
					bad = append(bad, p)
				}
			})
		}
	}
	if kind, _ := doc.value["kind"].(string); kind == "Secret" {
		matchPaths(doc.value, "data.*", func(p string, v any) {
			s, ok := v.(string)
			if _, err := base64.StdEncoding.DecodeString(s); !ok || err != nil {
				errs = append(errs, doc.errorf(p, "Invalid value: must be base64-encoded; use stringData for plain text"))
				bad = append(bad, p)
			}
		})
	}
	return errs, bad
}

// quantityPatterns are the paths of the quantities of a pod spec, compiled for each place where
// podSpecPrefixes finds one.
var quantityPatterns = map[string]patternSet{
	"spec.":               podQuantityPatterns("spec."),
	"spec.template.spec.": podQuantityPatterns("spec.template.spec."),
}

// podQuantityPatterns returns the paths of the quantities of the pod spec at prefix pod.
func podQuantityPatterns(pod string) patternSet {
	var paths []string
	for _, c := range []string{"containers", "initContainers", "ephemeralContainers"} {
		paths = append(paths,
			pod+c+"[*].resources.limits.*",
			pod+c+"[*].resources.requests.*",
			pod+c+"[*].env[*].valueFrom.resourceFieldRef.divisor")
	}
	paths = append(paths,
		pod+"volumes[*].emptyDir.sizeLimit",
		pod+"volumes[*].downwardAPI.items[*].resourceFieldRef.divisor",
		pod+"volumes[*].projected.sources[*].downwardAPI.items[*].resourceFieldRef.divisor",
		pod+"overhead.*")
	return newPatternSet(paths)
}

// withoutPaths returns the JSON document raw without the values at paths.
func withoutPaths(raw []byte, paths []string) ([]byte, error) {
	var v map[string]any
	if err := json.Unmarshal(raw, &v); err != nil {
		return nil, err
	}
	for _, p := range paths {
		deletePath(v, splitFieldPath(p))
	}
	return json.Marshal(v)
}

func quoteIfString(v any) string {
	if s, ok := v.(string); ok {
		return fmt.Sprintf("%q", s)
	}
	return fmt.Sprint(v)
}

// deletePath removes the value at segs from generic JSON data.
func deletePath(v any, segs []pathSegment) {
	for len(segs) > 1 {
		switch t := v.(type) {
		case map[string]any:
			v = t[segs[0].key]
		case []any:
			if segs[0].index < 0 || segs[0].index >= len(t) {
				return
			}
			v = t[segs[0].index]
		default:
			return
		}
		segs = segs[1:]
	}
	if m, ok := v.(map[string]any); ok && len(segs) == 1 {
		delete(m, segs[0].key)
	}
}

// podSpecPrefixes returns the path prefixes of the pod specs in a document of the given kind.
func podSpecPrefixes(doc document) []string {
	kind, _ := doc.value["kind"].(string)
	switch kind {
	case "Pod":
		return []string{"spec."}
	case "ReplicationController", "ReplicaSet", "Deployment", "DaemonSet":
		return []string{"spec.template.spec."}
	}
	return nil
}

// strictError converts an unknown or duplicate field error from strict decoding.
func strictError(doc document, err error) Error {
	var fp interface{ FieldPath() string }
	if errors.As(err, &fp) {
		p := fp.FieldPath()
		if strings.HasPrefix(err.Error(), "duplicate field") {
			return doc.errorf(p, "duplicate field")
		}
		return doc.errorf(p, "unknown field %q; check its spelling and indentation (Bosun decodes manifests strictly)", lastSegment(p))
	}
	return doc.errorf("", "%s", strings.TrimPrefix(err.Error(), "json: "))
}

func lastSegment(p string) string {
	segs := splitFieldPath(p)
	if len(segs) == 0 {
		return p
	}
	return segs[len(segs)-1].key
}

var jsonTypeError = regexp.MustCompile(`cannot unmarshal (\S+) into Go (?:struct field [A-Za-z0-9_]+\.(\S+)|value) of type (\S+)`)

// typeError converts a JSON decoding error (a value of the wrong type) into an Error. The JSON
// decoder reports the field path without list indices; the first matching element is blamed.
func typeError(doc document, err error) Error {
	if m := jsonTypeError.FindStringSubmatch(err.Error()); m != nil {
		line, p := locate(doc.node, m[2])
		return Error{File: doc.file, Line: line, Field: doc.prefix + p,
			Reason: fmt.Sprintf("Invalid value: expected %s, found %s", goTypeName(m[3]), m[1])}
	}
	return doc.errorf("", "%s", strings.TrimPrefix(err.Error(), "json: "))
}

func goTypeName(t string) string {
	switch {
	case strings.HasPrefix(t, "int"), strings.HasPrefix(t, "uint"):
		return "an integer"
	case t == "string":
		return "a string"
	case t == "bool":
		return "true or false"
	case strings.HasPrefix(t, "[]"):
		return "a list"
	case strings.HasPrefix(t, "map["):
		return "an object"
	}
	return "an object (" + t + ")"
}
