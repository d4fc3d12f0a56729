package repolayout

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strconv"
	"strings"
)

// A syntax error stops the parser before any object exists, so its field path is found from the
// text: yamlPathAt follows the block structure (indentation, "key:", "- ") of the document up to
// the error's line, jsonPathAt the tokens up to the error. Both are best effort: "" when nothing
// encloses the error.

// pathFrame is one level of a field path: a key, or an item of a list (key == "").
type pathFrame struct {
	indent int
	key    string
	index  int
}

func renderPath(frames []pathFrame) string {
	var b strings.Builder
	for _, f := range frames {
		if f.key == "" {
			b.WriteString("[" + strconv.Itoa(f.index) + "]")
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		b.WriteString(f.key)
	}
	return b.String()
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
	return renderPath(stack)
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
	dec := json.NewDecoder(bytes.NewReader(data))
	var stack []level
	var frames []pathFrame
	path := func() string {
		frames = frames[:0]
		for _, l := range stack {
			switch {
			case l.object && l.key != "" && !l.wantKey:
				frames = append(frames, pathFrame{key: l.key})
			case !l.object && l.index >= 0:
				frames = append(frames, pathFrame{index: l.index})
			}
		}
		return renderPath(frames)
	}
	// value notes that a value starts in the innermost level.
	value := func() {
		if n := len(stack); n > 0 && !stack[n-1].object {
			stack[n-1].index++
		}
	}
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			return ""
		}
		if err != nil {
			// In an array, the error is in the value after the last one read.
			if n := len(stack); n > 0 && !stack[n-1].object {
				stack[n-1].index++
			}
			return path()
		}
		n := len(stack)
		switch t := tok.(type) {
		case json.Delim:
			switch t {
			case '{', '[':
				value()
				stack = append(stack, level{object: t == '{', index: -1, wantKey: t == '{'})
			default:
				stack = stack[:n-1]
				if n > 1 && stack[n-2].object {
					stack[n-2].wantKey = true
				}
			}
		case string:
			if n > 0 && stack[n-1].object && stack[n-1].wantKey {
				stack[n-1].key, stack[n-1].wantKey = t, false
				continue
			}
			value()
			if n > 0 && stack[n-1].object {
				stack[n-1].wantKey = true
			}
		default:
			value()
			if n > 0 && stack[n-1].object {
				stack[n-1].wantKey = true
			}
		}
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
