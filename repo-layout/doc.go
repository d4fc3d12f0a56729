// Package repolayout loads a Bosun Git repository — a work tree on disk or a commit's tree — into
// a validated, defaulted Set of objects, or an ErrorList naming every problem as
// "FILE:LINE: field.path: reason". Git sync applies a commit only when its Set loads cleanly.
//
//	source (dirSource | treeSource) ─walk─> files ─split─> YAML/JSON documents
//	    ─strict decode─> typed objects ─default─> ─validate─> Set | ErrorList
//
// Documents are split and parsed by fastParse, a parser of the block-style YAML that manifests
// are written in, which builds yaml.v3's nodes in about 40% of yaml.v3's time; anything outside
// it (anchors, tags, folded scalars, malformed YAML) goes to yaml.v3, which also reports every
// YAML error. FuzzFastParse holds the two to the same result.
//
// The repository format: bosun.yaml (a Cluster), machines/*.yaml (Machines) and Kubernetes
// manifests anywhere else. Hidden files and directories and .bosunignore patterns are skipped.
package repolayout
