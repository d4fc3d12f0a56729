package repolayout

import (
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
)

// fastParse parses a YAML stream into the root nodes of its non-empty documents as yaml.v3's
// parser builds them (kind, tag, value, style, line, column, content; comments are left out,
// which nothing here reads) in about 40% of the time. It covers the block-style YAML that
// manifests are written in: block mappings and sequences, single-line plain and quoted
// scalars, literal block scalars, one-line flow sequences of scalars and empty flow mappings.
// Anything else — anchors, tags, folded or multi-line scalars, flow mappings, tabs, CRLF line
// ends, directives, duplicate keys, anything malformed — returns ok false, and
// yaml.v3 parses the stream (and reports its errors). FuzzFastParse holds it to yaml.v3's
// output.
func fastParse(data []byte) (roots []*yaml.Node, ok bool) {
	for i := 0; i < len(data); {
		c := data[i]
		if c < 0x80 {
			if c < 0x20 && c != '\n' || c == 0x7f {
				return nil, false // tabs, CRs and control characters: left to yaml.v3
			}
			i++
			continue
		}
		r, size := utf8.DecodeRune(data[i:])
		if r == utf8.RuneError && size == 1 || !printable(r) {
			return nil, false
		}
		i += size
	}
	p := &fastParser{finalNewline: len(data) > 0 && data[len(data)-1] == '\n'}
	for i, text := range strings.Split(string(data), "\n") {
		indent := len(text) - len(strings.TrimLeft(text, " "))
		p.lines = append(p.lines, fastLine{no: i + 1, indent: indent, text: text[indent:]})
	}
	for {
		p.skipBlank()
		if p.pos >= len(p.lines) {
			return roots, true
		}
		l := p.lines[p.pos]
		switch {
		case l.indent == 0 && isMarker(l.text, "---"):
			p.pos++
			continue
		case l.indent == 0 && (strings.HasPrefix(l.text, "---") || strings.HasPrefix(l.text, "...") || strings.HasPrefix(l.text, "%")):
			return nil, false // content after a marker, document ends, directives
		}
		root, ok := p.block(l.indent)
		if !ok {
			return nil, false
		}
		p.skipBlank()
		if p.pos < len(p.lines) && !(p.lines[p.pos].indent == 0 && isMarker(p.lines[p.pos].text, "---")) {
			return nil, false // more content that does not belong to the root
		}
		roots = append(roots, root)
	}
}

// printable reports whether r, a character beyond ASCII, is printable and no line break for
// yaml.v3 (which also breaks lines at U+0085, U+2028 and U+2029). The BOM, which
// splitDocuments strips, is left to yaml.v3 too.
func printable(r rune) bool {
	switch {
	case r == 0x2028 || r == 0x2029 || r == 0xFEFF:
		return false
	case r >= 0xA0 && r <= 0xD7FF, r >= 0xE000 && r <= 0xFFFD, r >= 0x10000 && r <= 0x10FFFF:
		return true
	}
	return false
}

// isMarker reports whether text is the marker alone, or followed by a comment.
func isMarker(text, marker string) bool {
	rest, ok := strings.CutPrefix(text, marker)
	if !ok {
		return false
	}
	rest = strings.TrimLeft(rest, " ")
	return rest == "" || rest[0] == '#' && len(rest) < len(text)-len(marker)
}

// fastLine is one line of the stream: its number, its indentation and the text after it.
type fastLine struct {
	no     int
	indent int
	text   string
}

// column is the column (1-based, in characters, as yaml.v3 counts) of the byte at offset in the
// line's text.
func (l fastLine) column(offset int) int {
	return l.indent + 1 + utf8.RuneCountInString(l.text[:offset])
}

type fastParser struct {
	lines []fastLine
	pos   int
	// finalNewline is whether the stream ends with a line break.
	finalNewline bool
}

// skipBlank moves past empty and comment-only lines.
func (p *fastParser) skipBlank() {
	for p.pos < len(p.lines) {
		t := p.lines[p.pos].text
		if t != "" && t[0] != '#' {
			return
		}
		p.pos++
	}
}

// isSeqItem reports whether a line's text starts a block sequence item.
func isSeqItem(text string) bool {
	return text == "-" || strings.HasPrefix(text, "- ")
}

// block parses the block node whose first line is the current one, at indent.
func (p *fastParser) block(indent int) (*yaml.Node, bool) {
	l := p.lines[p.pos]
	if l.indent != indent {
		return nil, false
	}
	if isSeqItem(l.text) {
		return p.sequence(indent)
	}
	return p.mapping(indent)
}

// nested parses the value of a mapping key or sequence item written on the lines below it:
// a more indented block, a sequence at the key's own indent (inMapping), or else null, placed
// where yaml.v3 places it (line, col).
func (p *fastParser) nested(indent int, inMapping bool, line, col int) (*yaml.Node, bool) {
	p.skipBlank()
	if p.pos < len(p.lines) {
		l := p.lines[p.pos]
		switch {
		case l.indent == 0 && (strings.HasPrefix(l.text, "---") || strings.HasPrefix(l.text, "...")):
		case l.indent > indent:
			return p.block(l.indent)
		case l.indent == indent && inMapping && isSeqItem(l.text):
			return p.sequence(indent)
		}
	}
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null", Line: line, Column: col}, true
}

// afterInline checks that no more indented line follows a value written inline (that would be
// a multi-line scalar or a syntax error).
func (p *fastParser) afterInline(indent int) bool {
	p.skipBlank()
	return p.pos >= len(p.lines) || p.lines[p.pos].indent <= indent
}

func (p *fastParser) sequence(indent int) (*yaml.Node, bool) {
	first := p.lines[p.pos]
	seq := &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq", Line: first.no, Column: indent + 1}
	for {
		p.skipBlank()
		if p.pos >= len(p.lines) {
			break
		}
		l := p.lines[p.pos]
		if l.indent < indent || l.indent == indent && !isSeqItem(l.text) {
			break
		}
		if l.indent > indent {
			return nil, false
		}
		rest := strings.TrimLeft(l.text[1:], " ")
		at := indent + len(l.text) - len(rest) // where rest starts: "-" and spaces before it
		var item *yaml.Node
		var ok bool
		switch {
		case rest == "" || rest[0] == '#':
			p.pos++
			item, ok = p.nested(indent, false, l.no, indent+2)
		case isSeqItem(rest):
			return nil, false // "- - x"
		case isKeyLine(rest):
			p.lines[p.pos] = fastLine{no: l.no, indent: at, text: rest} // "- key: v" as a line of its own
			item, ok = p.mapping(at)
		default:
			item, ok = p.inline(rest, l.no, at+1)
			ok = ok && p.afterInline(indent)
		}
		if !ok {
			return nil, false
		}
		seq.Content = append(seq.Content, item)
	}
	return seq, true
}

func (p *fastParser) mapping(indent int) (*yaml.Node, bool) {
	first := p.lines[p.pos]
	m := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Line: first.no, Column: indent + 1}
	for {
		p.skipBlank()
		if p.pos >= len(p.lines) {
			break
		}
		l := p.lines[p.pos]
		if l.indent < indent || l.indent == 0 && (strings.HasPrefix(l.text, "---") || strings.HasPrefix(l.text, "...")) {
			break
		}
		if l.indent > indent || isSeqItem(l.text) {
			return nil, false
		}
		k, rest, ok := splitKey(l.text)
		if !ok || hasKey(m, k) {
			return nil, false // not a key, or a duplicate (yaml.v3 reports those)
		}
		key := &yaml.Node{Kind: yaml.ScalarNode, Tag: k.tag, Value: k.value, Style: k.style, Line: l.no, Column: indent + 1}
		afterColon := l.column(len(l.text) - len(rest))
		rest = strings.TrimLeft(rest, " ")
		var value *yaml.Node
		if rest == "" || rest[0] == '#' {
			p.pos++
			value, ok = p.nested(indent, true, l.no, afterColon)
		} else {
			value, ok = p.inline(rest, l.no, l.column(len(l.text)-len(rest)))
			ok = ok && p.afterInline(indent)
		}
		if !ok {
			return nil, false
		}
		m.Content = append(m.Content, key, value)
	}
	return m, true
}

// maxKeyBytes bounds the keys fastParse takes: YAML limits implicit keys to 1024 characters,
// and yaml.v3 reports longer ones.
const maxKeyBytes = 1000

// fastKey is a mapping key as splitKey reads it.
type fastKey struct {
	value, tag string
	style      yaml.Style
}

// hasKey reports whether mapping m has key already.
func hasKey(m *yaml.Node, key fastKey) bool {
	for i := 0; i < len(m.Content); i += 2 {
		if k := m.Content[i]; k.Value == key.value && k.Tag == key.tag {
			return true
		}
	}
	return false
}

// isKeyLine reports whether text starts with a mapping key and its colon.
func isKeyLine(text string) bool {
	_, _, ok := splitKey(text)
	return ok
}

// splitKey splits a "key: value" line's text into the key and what follows its colon.
func splitKey(text string) (fastKey, string, bool) {
	if text == "" {
		return fastKey{}, "", false
	}
	var key fastKey
	var after string
	switch text[0] {
	case '"', '\'':
		value, n, ok := quoted(text)
		if !ok {
			return fastKey{}, "", false
		}
		key = fastKey{value: value, tag: "!!str", style: quoteStyle(text[0])}
		after = strings.TrimLeft(text[n:], " ")
		if !strings.HasPrefix(after, ":") {
			return fastKey{}, "", false
		}
		after = after[1:]
	default:
		i := strings.Index(text, ": ")
		if i < 0 {
			if !strings.HasSuffix(text, ":") {
				return fastKey{}, "", false
			}
			i = len(text) - 1
		}
		raw := text[:i]
		if strings.Contains(raw, " #") || strings.HasSuffix(raw, " ") || !plainStart(raw) {
			return fastKey{}, "", false
		}
		tag, ok := resolvePlain(raw)
		if !ok {
			return fastKey{}, "", false
		}
		key = fastKey{value: raw, tag: tag}
		after = text[i+1:]
	}
	if after != "" && after[0] != ' ' || len(text)-len(after) > maxKeyBytes {
		return fastKey{}, "", false
	}
	return key, after, true
}

// plainStart reports whether s may start a plain scalar in block context (no indicator first).
func plainStart(s string) bool {
	if s == "" {
		return false
	}
	switch s[0] {
	case '-':
		return len(s) > 1 && s[1] != ' '
	case '?', ':', ',', '[', ']', '{', '}', '#', '&', '*', '!', '|', '>', '\'', '"', '%', '@', '`':
		return false
	}
	return true
}

func quoteStyle(q byte) yaml.Style {
	if q == '"' {
		return yaml.DoubleQuotedStyle
	}
	return yaml.SingleQuotedStyle
}

// quoted reads the quoted scalar text starts with (closed on the same line): its value and the
// bytes it took.
func quoted(text string) (string, int, bool) {
	q := text[0]
	var b strings.Builder
	for i := 1; i < len(text); i++ {
		c := text[i]
		switch {
		case c == q && q == '\'' && i+1 < len(text) && text[i+1] == '\'':
			b.WriteByte('\'')
			i++
		case c == q:
			return b.String(), i + 1, true
		case c == '\\' && q == '"':
			if i+1 >= len(text) {
				return "", 0, false
			}
			i++
			switch text[i] {
			case '\\', '"':
				b.WriteByte(text[i])
			case 'n':
				b.WriteByte('\n')
			case 't':
				b.WriteByte('\t')
			default:
				return "", 0, false
			}
		default:
			b.WriteByte(c)
		}
	}
	return "", 0, false
}

// inline parses a value written after "key: " or "- " (text, at column col); the current line
// is consumed.
func (p *fastParser) inline(text string, line, col int) (*yaml.Node, bool) {
	node := &yaml.Node{Kind: yaml.ScalarNode, Line: line, Column: col}
	switch text[0] {
	case '"', '\'':
		value, n, ok := quoted(text)
		if !ok || !onlyComment(text[n:]) {
			return nil, false
		}
		node.Tag, node.Value, node.Style = "!!str", value, quoteStyle(text[0])
	case '[':
		return p.flowSequence(text, line, col)
	case '{':
		rest, ok := strings.CutPrefix(text, "{}")
		if !ok || !onlyComment(rest) {
			return nil, false
		}
		node.Kind, node.Tag, node.Style = yaml.MappingNode, "!!map", yaml.FlowStyle
	case '|':
		return p.literal(text, line, col)
	default:
		value, ok := plainValue(text)
		if !ok {
			return nil, false
		}
		tag, ok := resolvePlain(value)
		if !ok {
			return nil, false
		}
		node.Tag, node.Value = tag, value
	}
	p.pos++
	return node, true
}

// onlyComment reports whether what follows a value is blank or a comment after a space.
func onlyComment(rest string) bool {
	t := strings.TrimLeft(rest, " ")
	return t == "" || t[0] == '#' && len(t) < len(rest)
}

// plainValue returns the plain scalar text holds in block context, without its comment.
func plainValue(text string) (string, bool) {
	if !plainStart(text) {
		return "", false
	}
	if i := strings.Index(text, " #"); i >= 0 {
		text = text[:i]
	}
	text = strings.TrimRight(text, " ")
	if strings.Contains(text, ": ") || strings.HasSuffix(text, ":") {
		return "", false // a mapping where none may start
	}
	return text, true
}

// flowSequence parses a one-line flow sequence of scalars.
func (p *fastParser) flowSequence(text string, line, col int) (*yaml.Node, bool) {
	seq := &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq", Style: yaml.FlowStyle, Line: line, Column: col}
	i := 1
	skip := func() {
		for i < len(text) && text[i] == ' ' {
			i++
		}
	}
	skip()
	if i < len(text) && text[i] == ']' {
		i++
	} else {
		for {
			skip()
			if i >= len(text) {
				return nil, false
			}
			item := &yaml.Node{Kind: yaml.ScalarNode, Line: line, Column: col + utf8.RuneCountInString(text[:i])}
			switch c := text[i]; c {
			case '"', '\'':
				value, n, ok := quoted(text[i:])
				if !ok {
					return nil, false
				}
				item.Tag, item.Value, item.Style = "!!str", value, quoteStyle(c)
				i += n
			default:
				j := i
				for j < len(text) && text[j] != ',' && text[j] != ']' {
					switch text[j] {
					case '[', '{', '}', ':', '#', '"', '\'':
						return nil, false
					}
					j++
				}
				value := strings.TrimRight(text[i:j], " ")
				if !plainStart(value) {
					return nil, false
				}
				tag, ok := resolvePlain(value)
				if !ok {
					return nil, false
				}
				item.Tag, item.Value = tag, value
				i = j
			}
			seq.Content = append(seq.Content, item)
			skip()
			if i >= len(text) {
				return nil, false
			}
			if text[i] == ']' {
				i++
				break
			}
			if text[i] != ',' {
				return nil, false
			}
			i++
			skip()
			if i < len(text) && text[i] == ']' {
				return nil, false // a trailing comma
			}
		}
	}
	if !onlyComment(text[i:]) {
		return nil, false
	}
	p.pos++
	return seq, true
}

// literal parses a literal block scalar ("|", "|-" or "|+" and the more indented lines below).
func (p *fastParser) literal(text string, line, col int) (*yaml.Node, bool) {
	header := text[1:]
	chomp := byte(0)
	if header != "" && (header[0] == '-' || header[0] == '+') {
		chomp, header = header[0], header[1:]
	}
	if !onlyComment(header) || header != "" && header[0] != ' ' {
		return nil, false
	}
	parent := p.lines[p.pos].indent
	p.pos++
	// The block's indentation is its first line's; a leading empty line is left to yaml.v3.
	if p.pos >= len(p.lines) || p.lines[p.pos].text == "" || p.lines[p.pos].indent <= parent {
		return nil, false
	}
	indent := p.lines[p.pos].indent
	var body []string
	for p.pos < len(p.lines) {
		l := p.lines[p.pos]
		if l.text == "" {
			if l.indent > indent {
				return nil, false // spaces beyond the indentation are content: left to yaml.v3
			}
			body = append(body, "")
			p.pos++
			continue
		}
		if l.indent < indent {
			break
		}
		body = append(body, strings.Repeat(" ", l.indent-indent)+l.text)
		p.pos++
	}
	// Trailing empty lines belong to the scalar only under "+"; the parser resumes after them
	// either way.
	content := len(body)
	for content > 0 && body[content-1] == "" {
		content--
	}
	atEnd := p.pos >= len(p.lines)
	switch {
	case atEnd && p.finalNewline:
		body = body[:len(body)-1] // the stream's final line break makes an empty last "line"
	case atEnd && content < len(body):
		return nil, false // blank lines without a final line break: left to yaml.v3
	}
	value := strings.Join(body[:content], "\n")
	if !atEnd || p.finalNewline || content < len(body) {
		// The last content line's break: kept unless stripped, and under "+" the empty lines'.
		switch chomp {
		case '-':
		case '+':
			value += strings.Repeat("\n", len(body)-content+1)
		default:
			value += "\n"
		}
	}
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: value, Style: yaml.LiteralStyle, Line: line, Column: col}, true
}

// yamlFloat is yaml.v3's float syntax.
var yamlFloat = regexp.MustCompile(`^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$`)

// resolvePlain returns the tag yaml.v3 resolves an untagged plain scalar to, for the strings,
// decimal integers, booleans and nulls it covers; ok false for everything that yaml.v3 might
// read otherwise (floats, timestamps, other integer notations, merge keys).
func resolvePlain(s string) (string, bool) {
	if s == "" {
		return "!!null", true
	}
	switch c := s[0]; {
	case c == '+' || c == '-' || c >= '0' && c <= '9':
		if isCanonicalInt(s) {
			return "!!int", true
		}
		plain := strings.ReplaceAll(s, "_", "")
		if _, err := strconv.ParseInt(plain, 0, 64); err == nil {
			return "", false
		}
		if _, err := strconv.ParseUint(plain, 0, 64); err == nil {
			return "", false
		}
		if yamlFloat.MatchString(plain) || looksLikeTimestamp(s) {
			return "", false
		}
		for _, prefix := range []string{"0b", "-0b", "0o", "-0o"} {
			if strings.HasPrefix(plain, prefix) {
				return "", false
			}
		}
		return "!!str", true
	case c == '.':
		if _, err := strconv.ParseFloat(s, 64); err == nil || strings.EqualFold(s, ".inf") || strings.EqualFold(s, ".nan") {
			return "", false
		}
		return "!!str", true
	case strings.IndexByte("yYnNtTfFoO~<", c) >= 0:
		switch s {
		case "true", "True", "TRUE", "false", "False", "FALSE":
			return "!!bool", true
		case "~", "null", "Null", "NULL":
			return "!!null", true
		case "<<":
			return "", false
		}
	}
	return "!!str", true
}

// isCanonicalInt reports whether s is a decimal integer without sign, leading zeros or
// underscores (a leading "-" allowed) that fits an int64.
func isCanonicalInt(s string) bool {
	d := strings.TrimPrefix(s, "-")
	if d == "" || len(d) > 18 || len(d) > 1 && d[0] == '0' {
		return false
	}
	for i := 0; i < len(d); i++ {
		if d[i] < '0' || d[i] > '9' {
			return false
		}
	}
	return true
}

// looksLikeTimestamp is yaml.v3's quick check before it tries timestamps: four digits and "-".
func looksLikeTimestamp(s string) bool {
	return len(s) > 4 && s[4] == '-' && strings.Trim(s[:4], "0123456789") == ""
}
