package repolayout

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation/field"
)

// A syntax error stops the parser before any object exists, so its field path is found from the
// text: yamlPathAt follows the block structure (indentation, "key:", "- ") of the document up to
// the error's line, jsonPathAt the tokens up to the error. Both are best effort: "" when nothing
// encloses the error.

// pathFrame is one level of a YAML block structure: a key, or an item of a list (key == "").
type pathFrame struct {
	indent int
	key    string
	index  int
}

// fieldPath renders frames as a field path ("spec.containers[0].image").
func fieldPath(frames []pathFrame) string {
	var p *field.Path
	for _, f := range frames {
		switch {
		case f.key == "":
			p = p.Index(f.index)
		case p == nil:
			p = field.NewPath(f.key)
		default:
			p = p.Child(f.key)
		}
	}
	if p == nil {
		return "" // field.Path's String says "<nil>"
	}
	return p.String()
}

// yamlPathAt returns the field path of the block-style YAML line `line` (1-based) of data: the
// keys and list items that enclose it, and the key it starts, if any.
func yamlPathAt(data []byte, line int) string {
	var stack []pathFrame
	for i, text := range bytes.Split(data, []byte("\n")) {
		if i >= line {
			break
		}
		s := strings.TrimRight(string(text), " \r")
		trimmed := strings.TrimLeft(s, " ")
		if trimmed == "" || strings.HasPrefix(trimmed, "#") {
			continue
		}
		if strings.HasPrefix(s, "---") || strings.HasPrefix(s, "...") {
			stack = stack[:0] // a new document
			continue
		}
		if strings.HasPrefix(trimmed, "\t") {
			continue // a tab cannot indent YAML: no place in the structure (often the error itself)
		}
		indent := len(s) - len(trimmed)
		for strings.HasPrefix(trimmed, "- ") || trimmed == "-" {
			// A list item: the next of a list at this indent, or the first of a new one.
			for len(stack) > 0 && stack[len(stack)-1].indent > indent {
				stack = stack[:len(stack)-1]
			}
			if n := len(stack); n > 0 && stack[n-1].key == "" && stack[n-1].indent == indent {
				stack[n-1].index++
			} else {
				stack = append(stack, pathFrame{indent: indent, index: 0})
			}
			rest := strings.TrimLeft(strings.TrimPrefix(trimmed, "-"), " ")
			indent += len(trimmed) - len(rest)
			trimmed = rest
		}
		key, ok := yamlKey(trimmed)
		if !ok {
			continue
		}
		for len(stack) > 0 && stack[len(stack)-1].indent >= indent {
			stack = stack[:len(stack)-1]
		}
		stack = append(stack, pathFrame{indent: indent, key: key})
	}
	return fieldPath(stack)
}

// yamlKey returns the key a block mapping line starts with ("name: x", "'a b': c", "data:").
func yamlKey(s string) (string, bool) {
	if s == "" || strings.ContainsRune("#{[&*!|>%@`", rune(s[0])) {
		return "", false
	}
	if q := s[0]; q == '"' || q == '\'' {
		end := strings.IndexByte(s[1:], q)
		if end < 0 || !strings.HasPrefix(s[end+2:], ":") {
			return "", false
		}
		return s[1 : end+1], true
	}
	i := strings.Index(s, ":")
	if i <= 0 || (i+1 < len(s) && s[i+1] != ' ') {
		return "", false
	}
	return strings.TrimRight(s[:i], " "), true
}

// jsonPathAt returns the field path at which decoding data as JSON fails: the keys and array
// indices open when the error is met.
func jsonPathAt(data []byte) string {
	type level struct {
		object bool
		key    string
		index  int
		// wantKey: the next string token in this object is a key.
		wantKey bool
	}
	var stack []level
	// value notes that a value starts in the innermost level: the next index of an array.
	value := func() {
		if n := len(stack); n > 0 && !stack[n-1].object {
			stack[n-1].index++
		}
	}
	// valueDone notes that a value ended in the innermost level: an object's next string is a key.
	valueDone := func() {
		if n := len(stack); n > 0 && stack[n-1].object {
			stack[n-1].wantKey = true
		}
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			return ""
		}
		if err != nil {
			value() // in an array, the error is in the value after the last one read
			var frames []pathFrame
			for _, l := range stack {
				switch {
				case l.object && l.key != "" && !l.wantKey:
					frames = append(frames, pathFrame{key: l.key})
				case !l.object && l.index >= 0:
					frames = append(frames, pathFrame{index: l.index})
				}
			}
			return fieldPath(frames)
		}
		switch t := tok.(type) {
		case json.Delim:
			if t == '{' || t == '[' {
				value()
				stack = append(stack, level{object: t == '{', index: -1, wantKey: t == '{'})
				continue
			}
			stack = stack[:len(stack)-1]
		case string:
			if n := len(stack); n > 0 && stack[n-1].object && stack[n-1].wantKey {
				stack[n-1].key, stack[n-1].wantKey = t, false
				continue
			}
			value()
		default:
			value()
		}
		valueDone()
	}
}

// tabIndented reports whether line `line` (1-based) of data is indented with a tab.
func tabIndented(data []byte, line int) bool {
	lines := bytes.SplitN(data, []byte("\n"), line+1)
	if line < 1 || line > len(lines) {
		return false
	}
	return bytes.HasPrefix(bytes.TrimLeft(lines[line-1], " "), []byte("\t"))
}

// lastLine is the 1-based number of data's last line that is not blank.
func lastLine(data []byte) int {
	return max(lineAt(data, len(bytes.TrimRight(data, " \t\r\n"))), 1)
}
