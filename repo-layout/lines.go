package repolayout

import (
	"fmt"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// pathSegment is one step of a field path: a key of an object or an index of a list.
type pathSegment struct {
	key   string
	index int // -1 for a key
}

// splitFieldPath parses a path as Kubernetes prints it: "spec.containers[0].ports[1].name" or
// "metadata.labels[app.kubernetes.io/name]" (a map key in brackets).
func splitFieldPath(p string) []pathSegment {
	var segs []pathSegment
	for len(p) > 0 {
		switch p[0] {
		case '.':
			p = p[1:]
		case '[':
			end := strings.IndexByte(p, ']')
			if end < 0 {
				return append(segs, pathSegment{key: p[1:], index: -1})
			}
			inner := p[1:end]
			if i, err := strconv.Atoi(inner); err == nil && i >= 0 {
				segs = append(segs, pathSegment{index: i})
			} else {
				segs = append(segs, pathSegment{key: inner, index: -1})
			}
			p = p[end+1:]
		default:
			end := strings.IndexAny(p, ".[")
			if end < 0 {
				end = len(p)
			}
			segs = append(segs, pathSegment{key: p[:end], index: -1})
			p = p[end:]
		}
	}
	return segs
}

// lineOf returns the line of the field at fieldPath inside node (a document's root mapping): the
// line of its key, or of its nearest ancestor present in the document when the field itself is
// absent (for example a defaulted or required field).
func lineOf(node *yaml.Node, fieldPath string) int {
	line, _ := locate(node, fieldPath)
	return line
}

// locate is lineOf that also returns the path with list indices filled in: JSON type errors
// name fields without them ("spec.containers.image"), and the first list element where the rest
// of the path exists is taken.
func locate(node *yaml.Node, fieldPath string) (int, string) {
	if node == nil {
		return 0, fieldPath
	}
	line, found, resolved := lineIn(node, splitFieldPath(fieldPath), node.Line, "", 0)
	if !found {
		return line, fieldPath
	}
	return line, resolved
}

// lineIn walks segs from n; found reports whether the whole path exists, and at is the path
// walked so far.
func lineIn(n *yaml.Node, segs []pathSegment, best int, at string, depth int) (line int, found bool, resolved string) {
	if depth > 200 {
		return best, false, at
	}
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	if len(segs) == 0 {
		return best, true, at
	}
	seg := segs[0]
	switch n.Kind {
	case yaml.MappingNode:
		if seg.index >= 0 {
			return best, false, at
		}
		if key, val := mappingEntry(n, seg.key, depth); key != nil {
			return lineIn(val, segs[1:], key.Line, joinKey(at, seg.key), depth+1)
		}
	case yaml.SequenceNode:
		if seg.index >= 0 {
			if seg.index < len(n.Content) {
				el := n.Content[seg.index]
				return lineIn(el, segs[1:], el.Line, fmt.Sprintf("%s[%d]", at, seg.index), depth+1)
			}
			return best, false, at
		}
		// A path without indices: take the first element where the rest of it exists.
		for i, el := range n.Content {
			if l, ok, r := lineIn(el, segs, el.Line, fmt.Sprintf("%s[%d]", at, i), depth+1); ok {
				return l, true, r
			}
		}
	}
	return best, false, at
}

// mappingEntry finds key in a mapping node, following YAML merge keys ("<<").
func mappingEntry(n *yaml.Node, key string, depth int) (k, v *yaml.Node) {
	if depth > 200 {
		return nil, nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key && n.Content[i].Kind == yaml.ScalarNode && n.Content[i].Tag != "!!merge" {
			return n.Content[i], n.Content[i+1]
		}
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Tag != "!!merge" {
			continue
		}
		merged := n.Content[i+1]
		for merged.Kind == yaml.AliasNode && merged.Alias != nil {
			merged = merged.Alias
		}
		candidates := []*yaml.Node{merged}
		if merged.Kind == yaml.SequenceNode {
			candidates = merged.Content
		}
		for _, c := range candidates {
			for c.Kind == yaml.AliasNode && c.Alias != nil {
				c = c.Alias
			}
			if c.Kind == yaml.MappingNode {
				if k, v := mappingEntry(c, key, depth+1); k != nil {
					return k, v
				}
			}
		}
	}
	return nil, nil
}
