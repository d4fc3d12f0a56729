// Package plan turns what a sync would do (gitsync.Plan) into a report a person reads: objects
// to create, update (a field diff with Secret values masked) and prune, the consequences that
// matter ("deployment web: 3 → 5 replicas"), and validation errors with file:line. The report
// is printed by `bosun plan`, served by the API and posted on pull requests.
//
//	gitsync.PlanRef / PlanSet ─> gitsync.Plan ─> Build ─> Report ─┬─ Text()        (CLI)
//	                                                               ├─ JSON          (API)
//	                                                               └─ Markdown(max) (PR comment)
package plan

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"github.com/bosun-gitops/bosun/internal/resource"
	"github.com/bosun-gitops/bosun/operator/gitsync"
)

// Report is a plan as people and the API see it.
type Report struct {
	Commit    string      `json:"commit,omitempty"`
	Items     []Item      `json:"items,omitempty"`
	Unchanged int         `json:"unchanged"`
	Errors    []FileError `json:"errors,omitempty"`
	Summary   Summary     `json:"summary"`
}

// Summary counts the items by action.
type Summary struct {
	Create int `json:"create"`
	Update int `json:"update"`
	Delete int `json:"delete"`
}

// Changes is the number of objects the sync would write.
func (s Summary) Changes() int { return s.Create + s.Update + s.Delete }

// Item is one object to create, update, adopt or delete.
type Item struct {
	Action    string `json:"action"`
	Kind      string `json:"kind"`
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name"`
	File      string `json:"file,omitempty"`
	Line      int    `json:"line,omitempty"`
	// Diff lists changed fields for updates (and every field for creates is left out: the
	// manifest is the diff).
	Diff []FieldDiff `json:"diff,omitempty"`
	// Consequences are one-line summaries such as "3 → 5 replicas".
	Consequences []string `json:"consequences,omitempty"`
}

// FieldDiff is one changed field; Old or New is empty when the field is added or removed.
type FieldDiff struct {
	Path string `json:"path"`
	Old  string `json:"old,omitempty"`
	New  string `json:"new,omitempty"`
}

// FileError is one validation error.
type FileError struct {
	File   string `json:"file"`
	Line   int    `json:"line,omitempty"`
	Field  string `json:"field,omitempty"`
	Reason string `json:"reason"`
}

func (e FileError) String() string {
	s := e.File
	if e.Line > 0 {
		s += fmt.Sprintf(":%d", e.Line)
	}
	s += ": "
	if e.Field != "" {
		s += e.Field + ": "
	}
	return s + e.Reason
}

// Exit codes of `bosun plan`, as `flux diff` uses them.
const (
	ExitNoChanges = 0
	ExitChanges   = 1
	ExitInvalid   = 2
)

// Valid reports whether the planned commit passed validation.
func (r *Report) Valid() bool { return len(r.Errors) == 0 }

// ExitCode is 0 without changes, 1 with changes, 2 when invalid.
func (r *Report) ExitCode() int {
	switch {
	case !r.Valid():
		return ExitInvalid
	case r.Summary.Changes() > 0:
		return ExitChanges
	}
	return ExitNoChanges
}

// Build turns a plan into a report.
func Build(p *gitsync.Plan) (*Report, error) {
	r := &Report{Commit: p.Commit, Unchanged: p.Unchanged}
	for _, e := range p.Errors {
		r.Errors = append(r.Errors, FileError{File: e.File, Line: e.Line, Field: e.Field, Reason: e.Reason})
	}
	for _, c := range p.Changes {
		it := Item{Action: string(c.Action), Kind: c.Resource.Kind, Namespace: c.Namespace, Name: c.Name, File: c.File, Line: c.Line}
		switch c.Action {
		case gitsync.ActionCreate:
			r.Summary.Create++
		case gitsync.ActionDelete:
			r.Summary.Delete++
			if f := c.Live.GetAnnotations()[resource.AnnotationSource]; f != "" {
				it.File = f
			}
		default:
			r.Summary.Update++
		}
		var err error
		if it.Diff, err = diffObjects(c.Resource, c.Live, c.Desired); err != nil {
			return nil, fmt.Errorf("diffing %s %s: %w", c.Resource.Kind, c.Name, err)
		}
		if c.Action == gitsync.ActionCreate || c.Action == gitsync.ActionDelete {
			it.Diff = nil // the manifest, or the removed file, says it all
		}
		it.Consequences = consequences(c.Resource, c.Live, c.Desired)
		r.Items = append(r.Items, it)
	}
	sort.SliceStable(r.Items, func(i, j int) bool { return actionRank(r.Items[i].Action) < actionRank(r.Items[j].Action) })
	return r, nil
}

func actionRank(a string) int {
	switch gitsync.Action(a) {
	case gitsync.ActionCreate:
		return 0
	case gitsync.ActionUpdate, gitsync.ActionAdopt:
		return 1
	}
	return 2
}

// ignoredPaths are fields that change on every sync or belong to the store and controllers;
// they say nothing about what the commit changes.
var ignoredPaths = []string{
	"metadata.resourceVersion", "metadata.uid", "metadata.creationTimestamp", "metadata.generation",
	"metadata.managedFields", "metadata.annotations." + resource.AnnotationCommit,
	"metadata.annotations." + resource.AnnotationAppliedHash, "metadata.annotations." + resource.AnnotationSourceLine,
	"metadata.deletionTimestamp", "status",
}

func ignored(p string) bool {
	for _, ig := range ignoredPaths {
		if p == ig || strings.HasPrefix(p, ig+".") || strings.HasPrefix(p, ig+"[") {
			return true
		}
	}
	return false
}

// toMap renders an object as generic JSON.
func toMap(obj resource.Object) (map[string]any, error) {
	if obj == nil {
		return map[string]any{}, nil
	}
	b, err := json.Marshal(obj)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	return m, nil
}

// toJSON renders any value as generic JSON (maps, slices, scalars).
func toJSON(v any) (any, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	var out any
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, err
	}
	return out, nil
}

// masked is what a Secret value shows as.
const masked = "(sensitive)"

// diffObjects compares live and desired field by field.
func diffObjects(res *resource.Resource, live, desired resource.Object) ([]FieldDiff, error) {
	a, err := toMap(live)
	if err != nil {
		return nil, err
	}
	b, err := toMap(desired)
	if err != nil {
		return nil, err
	}
	var out []FieldDiff
	walkDiff("", a, b, &out)
	if res == resource.Secrets {
		for i := range out {
			if secretPath(out[i].Path) {
				if out[i].Old != "" {
					out[i].Old = masked
				}
				if out[i].New != "" {
					out[i].New = masked
				}
			}
		}
	}
	return out, nil
}

func secretPath(p string) bool {
	for _, f := range []string{"data", "stringData"} {
		if p == f || strings.HasPrefix(p, f+".") {
			return true
		}
	}
	return false
}

func join(prefix, key string) string {
	if prefix == "" {
		return key
	}
	return prefix + "." + key
}

func walkDiff(p string, a, b any, out *[]FieldDiff) {
	if ignored(p) {
		return
	}
	switch av := a.(type) {
	case map[string]any:
		if bv, ok := b.(map[string]any); ok {
			keys := map[string]bool{}
			for k := range av {
				keys[k] = true
			}
			for k := range bv {
				keys[k] = true
			}
			sorted := make([]string, 0, len(keys))
			for k := range keys {
				sorted = append(sorted, k)
			}
			sort.Strings(sorted)
			for _, k := range sorted {
				walkDiff(join(p, k), av[k], bv[k], out)
			}
			return
		}
	case []any:
		if bv, ok := b.([]any); ok && len(av) == len(bv) {
			for i := range av {
				walkDiff(fmt.Sprintf("%s[%d]", p, i), av[i], bv[i], out)
			}
			return
		}
	}
	if a == nil && b == nil {
		return
	}
	if a != nil && b != nil && scalar(a) && scalar(b) && render(a) == render(b) {
		return
	}
	if !scalar(a) || !scalar(b) {
		if render(a) == render(b) {
			return
		}
	}
	*out = append(*out, FieldDiff{Path: p, Old: render(a), New: render(b)})
}

func scalar(v any) bool {
	switch v.(type) {
	case map[string]any, []any:
		return false
	}
	return true
}

// render prints a value compactly: strings bare, the rest as JSON.
func render(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	}
	b, _ := json.Marshal(v)
	return string(b)
}
