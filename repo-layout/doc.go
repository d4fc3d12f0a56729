// Package repolayout loads a Bosun Git repository — a work tree on disk or a commit's tree — into
// a validated, defaulted Set of objects, or an ErrorList naming every problem as
// "FILE:LINE: field.path: reason". Git sync applies a commit only when its Set loads cleanly.
//
//	source (dirSource | treeSource) ─walk─> files ─split─> YAML/JSON documents
//	    ─strict decode─> typed objects ─default─> ─validate─> Set | ErrorList
//
// The repository format: bosun.yaml (a Cluster), machines/*.yaml (Machines) and Kubernetes
// manifests anywhere else. Hidden files and directories and .bosunignore patterns are skipped.
package repolayout
