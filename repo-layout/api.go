package repolayout

import (
	"fmt"
	"strings"

	"github.com/bosun-gitops/bosun/internal/resource"
	bosunv1 "github.com/bosun-gitops/bosun/repo-layout/v1alpha1"
)

// Object is one validated, defaulted object declared in the repository.
type Object struct {
	Resource *resource.Resource
	// Object is typed (for example *appsv1.Deployment), with apiVersion and kind set, defaults
	// applied and the namespace filled in for namespaced kinds.
	Object resource.Object
	// File is the path relative to the repository root (or to the loaded sub-directory), with
	// forward slashes; Line is the first line of the object's document in it (1-based).
	File string
	Line int
	// Raw is the object's document as written in the file (JSON), before defaulting; Git sync
	// hashes it to tell unchanged objects apart.
	Raw []byte
}

// Set is everything a repository declares.
type Set struct {
	// Cluster is bosun.yaml, defaulted; never nil (an absent bosun.yaml yields the defaults).
	Cluster *bosunv1.Cluster
	// Objects holds every other object, Machines included, sorted by file then line.
	Objects []Object

	// clusterFile is where Cluster was declared, "" when it holds only defaults.
	clusterFile string
}

// Error is one problem with the repository, printed as "FILE:LINE: field.path: reason".
type Error struct {
	File   string
	Line   int    // 1 when the error is about the whole file (its size, a symlink), so file:line parsers place it
	Field  string // JSON field path such as "spec.template.spec.containers[0].image"; may be empty
	Reason string
}

func (e Error) Error() string {
	var b strings.Builder
	// Editors and CI annotations parse "file:line: message" and skip lines without a line.
	fmt.Fprintf(&b, "%s:%d: ", e.File, max(e.Line, 1))
	if e.Field != "" {
		b.WriteString(e.Field)
		b.WriteString(": ")
	}
	b.WriteString(e.Reason)
	return b.String()
}

// ErrorList is every error found in a repository, sorted by file and line. Loaders return it (as
// an error) when the repository is invalid; nothing from an invalid repository may be applied.
type ErrorList []Error

func (l ErrorList) Error() string {
	lines := make([]string, len(l))
	for i, e := range l {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}
