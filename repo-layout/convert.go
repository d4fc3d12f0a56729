package repolayout

import (
	"encoding/json"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// convertPlain converts a document's YAML tree into its generic value and that value's JSON
// encoding in one walk, giving exactly what the general path of documentFromNode gives
// (yaml.v3's decoder, toJSONValue, encoding/json: the same Go types, the same bytes, keys in
// sorted order). It covers the YAML that manifests are written in: mappings with string keys,
// sequences, and untagged strings, decimal integers, finite floats, booleans and nulls.
// Anything else — aliases, merge keys, explicit tags, timestamps, binary values, non-string or
// duplicate keys, other integer notations, excessive nesting — returns ok false: the general
// path handles it and reports the errors.
func convertPlain(root *yaml.Node) (value map[string]any, raw []byte, ok bool) {
	c := converter{buf: make([]byte, 0, 1024)}
	v, ok := c.convert(root, 0)
	if !ok {
		return nil, nil, false
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, nil, false
	}
	return m, c.buf, true
}

// converter appends the JSON of the nodes it converts to buf.
type converter struct {
	buf []byte
	// order is scratch space for sorting the keys of a mapping.
	order []keyIndex
}

// keyIndex is a mapping key and the index of its node in the mapping's Content.
type keyIndex struct {
	key string
	at  int
}

// maxPlainDepth is the nesting that toJSONValue accepts; deeper documents take the general path,
// which refuses them.
const maxPlainDepth = 1000

func (c *converter) convert(n *yaml.Node, depth int) (any, bool) {
	if depth > maxPlainDepth || n.Style&yaml.TaggedStyle != 0 {
		return nil, false
	}
	switch n.Kind {
	case yaml.MappingNode:
		return c.mapping(n, depth)
	case yaml.SequenceNode:
		if n.Tag != "!!seq" {
			return nil, false
		}
		out := make([]any, len(n.Content))
		c.buf = append(c.buf, '[')
		for i, e := range n.Content {
			if i > 0 {
				c.buf = append(c.buf, ',')
			}
			v, ok := c.convert(e, depth+1)
			if !ok {
				return nil, false
			}
			out[i] = v
		}
		c.buf = append(c.buf, ']')
		return out, true
	case yaml.ScalarNode:
		return c.scalar(n)
	}
	return nil, false // aliases
}

func (c *converter) mapping(n *yaml.Node, depth int) (any, bool) {
	if n.Tag != "!!map" || len(n.Content)%2 != 0 {
		return nil, false
	}
	// Keys must be plain strings (what yaml.v3 decodes into a map[string]any), each once.
	start := len(c.order)
	for i := 0; i < len(n.Content); i += 2 {
		k := n.Content[i]
		if k.Kind != yaml.ScalarNode || k.Tag != "!!str" || k.Style&yaml.TaggedStyle != 0 {
			return nil, false
		}
		c.order = append(c.order, keyIndex{k.Value, i})
	}
	keys := c.order[start:]
	slices.SortFunc(keys, func(a, b keyIndex) int { return strings.Compare(a.key, b.key) })
	for i := 1; i < len(keys); i++ {
		if keys[i].key == keys[i-1].key {
			return nil, false
		}
	}
	out := make(map[string]any, len(keys))
	c.buf = append(c.buf, '{')
	// keys may move when c.order grows below: index it afresh every time.
	for j := range len(n.Content) / 2 {
		ki := c.order[start+j]
		if j > 0 {
			c.buf = append(c.buf, ',')
		}
		c.appendString(ki.key)
		c.buf = append(c.buf, ':')
		v, ok := c.convert(n.Content[ki.at+1], depth+1)
		if !ok {
			return nil, false
		}
		out[ki.key] = v
	}
	c.buf = append(c.buf, '}')
	c.order = c.order[:start]
	return out, true
}

// scalar resolves an untagged scalar as yaml.v3 does when decoding into an interface: the
// parser has already resolved its tag.
func (c *converter) scalar(n *yaml.Node) (any, bool) {
	switch n.Tag {
	case "!!str":
		c.appendString(n.Value)
		return n.Value, true
	case "!!null":
		c.buf = append(c.buf, "null"...)
		return nil, true
	case "!!bool":
		switch n.Value {
		case "true", "True", "TRUE":
			c.buf = append(c.buf, "true"...)
			return true, true
		case "false", "False", "FALSE":
			c.buf = append(c.buf, "false"...)
			return false, true
		}
	case "!!int":
		if !isPlainDecimal(n.Value) {
			return nil, false // 0x, 0o, 0b, 0777, +1, 1_000, and ints beyond int64
		}
		i, err := strconv.ParseInt(n.Value, 10, 64)
		if err != nil || int64(int(i)) != i {
			return nil, false
		}
		c.buf = strconv.AppendInt(c.buf, i, 10)
		return int(i), true
	case "!!float":
		if strings.ContainsRune(n.Value, '_') {
			return nil, false
		}
		f, err := strconv.ParseFloat(n.Value, 64)
		if err != nil {
			return nil, false // .inf and .nan are not JSON numbers
		}
		// Floats are rare in manifests: encoding/json formats them exactly as the general path.
		b, err := json.Marshal(f)
		if err != nil {
			return nil, false
		}
		c.buf = append(c.buf, b...)
		return f, true
	}
	return nil, false
}

// isPlainDecimal reports whether s is -?(0|[1-9][0-9]*): an integer that yaml.v3 and
// strconv.ParseInt(s, 10, 64) read alike.
func isPlainDecimal(s string) bool {
	s = strings.TrimPrefix(s, "-")
	if s == "" || (s[0] == '0' && len(s) > 1) {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// appendString appends s as encoding/json encodes a string: strings that need no escaping are
// copied, the others are encoded by encoding/json itself.
func (c *converter) appendString(s string) {
	for i := 0; i < len(s); i++ {
		if b := s[i]; b < 0x20 || b >= 0x80 || b == '"' || b == '\\' || b == '<' || b == '>' || b == '&' {
			enc, _ := json.Marshal(s) // a string always encodes
			c.buf = append(c.buf, enc...)
			return
		}
	}
	c.buf = append(c.buf, '"')
	c.buf = append(c.buf, s...)
	c.buf = append(c.buf, '"')
}
