package repolayout

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
)

// document is one YAML or JSON document of a file, or one item of a List.
type document struct {
	file string
	line int
	// node is the document's root mapping, used to find the line of any field.
	node *yaml.Node
	// value is the document as generic JSON data (objects are map[string]any).
	value map[string]any
	// raw is value encoded as JSON: the document as written.
	raw []byte
	// prefix is prepended to field paths in errors ("items[2]." for an item of a List).
	prefix string
	// lines holds the lines of a few fields once node has been released (see released).
	lines []fieldLine
}

// fieldLine is the line of one field of a document.
type fieldLine struct {
	field string
	line  int
}

// released returns the document without its YAML nodes, remembering the lines of fields.
func (d document) released(fields []string) document {
	d.lines = make([]fieldLine, len(fields))
	for i, f := range fields {
		d.lines[i] = fieldLine{f, lineOf(d.node, f)}
	}
	d.node = nil
	return d
}

// lineOf returns the line of fieldPath in the document: from its nodes, or from the lines kept
// when they were released (else the document's first line).
func (d document) lineOf(fieldPath string) int {
	if d.node != nil {
		return lineOf(d.node, fieldPath)
	}
	for _, fl := range d.lines {
		if fl.field == fieldPath {
			return fl.line
		}
	}
	return d.line
}

var yamlLineError = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)
var yamlTypeErrorLine = regexp.MustCompile(`^line (\d+): (.*)$`)

// lineAt returns the 1-based line of byte offset off in data.
func lineAt(data []byte, off int) int {
	if off > len(data) {
		off = len(data)
	}
	return bytes.Count(data[:off], []byte("\n")) + 1
}

// splitDocuments parses a file into its non-empty documents. A syntax error ends the file: later
// documents cannot be located reliably.
func splitDocuments(file string, data []byte, isJSON bool) ([]document, ErrorList) {
	if !utf8.Valid(data) {
		off := 0
		for off < len(data) {
			r, size := utf8.DecodeRune(data[off:])
			if r == utf8.RuneError && size <= 1 {
				break
			}
			off += size
		}
		return nil, ErrorList{{File: file, Line: lineAt(data, off),
			Reason: fmt.Sprintf("invalid UTF-8 at byte offset %d; manifests must be UTF-8 text", off)}}
	}
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
	if isJSON {
		var v any
		if err := json.Unmarshal(data, &v); err != nil {
			var se *json.SyntaxError
			line := 0
			if errors.As(err, &se) {
				line = lineAt(data, int(se.Offset))
			}
			return nil, ErrorList{{File: file, Line: line, Field: jsonPathAt(data),
				Reason: "invalid JSON: " + strings.TrimPrefix(err.Error(), "json: ")}}
		}
	}
	var docs []document
	var errs ErrorList
	if !isJSON {
		if roots, ok := fastParse(data); ok {
			for _, root := range roots {
				doc, derrs := newDocument(file, root)
				errs = append(errs, derrs...)
				if doc != nil {
					docs = append(docs, *doc)
				}
			}
			return docs, errs
		}
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var n yaml.Node
		err := dec.Decode(&n)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			e := yamlError(file, err, 0)
			// At the end of the stream yaml.v3 may name the line after the last one.
			e.Line = min(e.Line, lastLine(data))
			e.Field = yamlPathAt(data, e.Line)
			if tabIndented(data, e.Line) {
				e.Reason += " (YAML is indented with spaces, not tabs)"
			}
			errs = append(errs, e)
			break
		}
		doc, derrs := newDocument(file, &n)
		errs = append(errs, derrs...)
		if doc != nil {
			docs = append(docs, *doc)
		}
	}
	return docs, errs
}

// yamlParserErrors are the messages of yaml.v3's parser (not its scanner). It reports their
// line 0-based: the line of the collection being parsed (the "[" left open, the mapping a key is
// missing from) minus one.
var yamlParserErrors = map[string]bool{
	"did not find expected <document start>": true,
	"did not find expected node content":     true,
	"did not find expected key":              true,
	"did not find expected '-' indicator":    true,
	"did not find expected ',' or ']'":       true,
	"did not find expected ',' or '}'":       true,
}

// yamlError turns a yaml.v3 error into an Error at the line it names (else at line).
func yamlError(file string, err error, line int) Error {
	msg := err.Error()
	if m := yamlLineError.FindStringSubmatch(msg); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = m[2]
		if yamlParserErrors[msg] {
			line++
		}
	} else {
		msg = strings.TrimPrefix(msg, "yaml: ")
	}
	return Error{File: file, Line: line, Reason: invalidSyntax(file) + msg}
}

// invalidSyntax starts the reason of a syntax error: JSON files are read as the YAML they also
// are, but their errors say JSON.
func invalidSyntax(file string) string {
	if strings.HasSuffix(file, ".json") {
		return "invalid JSON: "
	}
	return "invalid YAML: "
}

// newDocument converts a parsed YAML document; it returns nil for an empty document.
func newDocument(file string, n *yaml.Node) (*document, ErrorList) {
	root := n
	if n.Kind == yaml.DocumentNode {
		if len(n.Content) == 0 {
			return nil, nil
		}
		root = n.Content[0]
	}
	if root.Kind == yaml.ScalarNode && root.Tag == "!!null" {
		return nil, nil // "---" alone, or only comments
	}
	for root.Kind == yaml.AliasNode && root.Alias != nil {
		root = root.Alias
	}
	if root.Kind != yaml.MappingNode {
		return nil, ErrorList{{File: file, Line: root.Line,
			Reason: "a manifest must be an object with apiVersion, kind and metadata"}}
	}
	return documentFromNode(file, root, "")
}

// documentFromNode decodes a mapping node into a document.
func documentFromNode(file string, root *yaml.Node, prefix string) (*document, ErrorList) {
	if m, raw, ok := convertPlain(root); ok {
		return &document{file: file, line: root.Line, node: root, value: m, raw: raw, prefix: prefix}, nil
	}
	return documentFromNodeGeneral(file, root, prefix)
}

// documentFromNodeGeneral is documentFromNode for any YAML: yaml.v3 decodes the tree (aliases,
// merge keys, tags), toJSONValue makes it JSON data and encoding/json encodes it.
func documentFromNodeGeneral(file string, root *yaml.Node, prefix string) (*document, ErrorList) {
	var v any
	if err := root.Decode(&v); err != nil {
		var te *yaml.TypeError
		if errors.As(err, &te) {
			var errs ErrorList
			for _, m := range te.Errors {
				e := Error{File: file, Line: root.Line, Reason: invalidSyntax(file) + m}
				if sm := yamlTypeErrorLine.FindStringSubmatch(m); sm != nil {
					e.Line, _ = strconv.Atoi(sm[1])
					e.Reason = invalidSyntax(file) + sm[2]
				}
				errs = append(errs, e)
			}
			return nil, errs
		}
		return nil, ErrorList{yamlError(file, err, root.Line)}
	}
	jv, field, err := toJSONValue(v, "", 0)
	if err != nil {
		return nil, ErrorList{{File: file, Line: lineOf(root, field), Field: prefix + field, Reason: err.Error()}}
	}
	m, ok := jv.(map[string]any)
	if !ok {
		return nil, ErrorList{{File: file, Line: root.Line,
			Reason: "a manifest must be an object with apiVersion, kind and metadata"}}
	}
	raw, err := json.Marshal(m)
	if err != nil {
		return nil, ErrorList{{File: file, Line: root.Line, Reason: "cannot encode as JSON: " + err.Error()}}
	}
	return &document{file: file, line: root.Line, node: root, value: m, raw: raw, prefix: prefix}, nil
}

// toJSONValue converts what yaml.v3 decodes into data that encoding/json accepts: object keys
// become strings (as sigs.k8s.io/yaml does), and values JSON cannot hold are refused with the
// path of the field.
func toJSONValue(v any, path string, depth int) (any, string, error) {
	if depth > 1000 {
		return nil, path, errors.New("document is nested too deeply")
	}
	switch t := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(t))
		for k, e := range t {
			c, p, err := toJSONValue(e, joinKey(path, k), depth+1)
			if err != nil {
				return nil, p, err
			}
			out[k] = c
		}
		return out, "", nil
	case map[any]any:
		out := make(map[string]any, len(t))
		for k, e := range t {
			var ks string
			switch kk := k.(type) {
			case string:
				ks = kk
			case int, int64, uint64, float64, bool:
				ks = fmt.Sprint(kk)
			case nil:
				ks = "null"
			default:
				return nil, path, fmt.Errorf("object keys must be strings, found %T", k)
			}
			if _, dup := out[ks]; dup {
				return nil, path, fmt.Errorf("key %q appears twice", ks)
			}
			c, p, err := toJSONValue(e, joinKey(path, ks), depth+1)
			if err != nil {
				return nil, p, err
			}
			out[ks] = c
		}
		return out, "", nil
	case []any:
		out := make([]any, len(t))
		for i, e := range t {
			c, p, err := toJSONValue(e, fmt.Sprintf("%s[%d]", path, i), depth+1)
			if err != nil {
				return nil, p, err
			}
			out[i] = c
		}
		return out, "", nil
	case float64:
		if math.IsInf(t, 0) || math.IsNaN(t) {
			return nil, path, fmt.Errorf("%v is not a JSON number", t)
		}
		return t, "", nil
	case nil, string, bool, int, int64, uint64:
		return t, "", nil
	default:
		// Timestamps and binary values: keep their text form, as Kubernetes does for strings.
		return fmt.Sprint(t), "", nil
	}
}

// joinKey appends an object key to a field path, bracketing keys that contain dots.
func joinKey(path, key string) string {
	if strings.ContainsAny(key, ".[]") {
		return path + "[" + key + "]"
	}
	if path == "" {
		return key
	}
	return path + "." + key
}
