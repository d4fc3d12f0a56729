package repolayout

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"go.yaml.in/yaml/v3"
)

// plainCases are documents for TestConvertPlainMatchesGeneral; plain tells whether convertPlain
// takes them (false: the general path does).
var plainCases = []struct {
	name  string
	yaml  string
	plain bool
}{
	{"manifest", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, labels: {app.kubernetes.io/name: web}}\ndata: {k: v}\n", true},
	{"quoted numbers", "a: \"123\"\nb: '0777'\nc: \"1.5\"\nd: \"true\"\ne: \"null\"\n", true},
	{"yes and no are strings", "a: yes\nb: no\nc: on\nd: off\ne: y\nf: N\n", true},
	{"booleans", "a: true\nb: True\nc: TRUE\nd: false\ne: False\nf: FALSE\n", true},
	{"nulls", "a: null\nb: ~\nc:\nd: Null\ne: NULL\n", true},
	{"integers", "a: 0\nb: -0\nc: 42\nd: -17\ne: 9223372036854775807\nf: -9223372036854775808\n", true},
	{"floats", "a: 1.5\nb: .5\nc: -.5\nd: 1e3\ne: 1.0\nf: 1E-7\ng: 1e21\nh: 0.000001\ni: 3.\nj: +1.5\n", true},
	{"strings that need escaping", "a: '<b>&amp;</b>'\nb: \"tab\\there\"\nc: \"quote \\\" backslash \\\\\"\nd: \"bell \\a\"\ne: \"\\u2028 line separator\"\n", true},
	{"non-ASCII strings", "a: café\nb: 日本語\nc: \"emoji 🙂\"\n", true},
	{"block scalars", "a: |\n  line 1\n  line 2\nb: >\n  folded\n  text\nc: |-\n  kept\n", true},
	{"empty collections", "a: {}\nb: []\nc: {d: []}\n", true},
	{"flow style", "a: {b: 1, c: [x, 'y', \"z\"]}\n", true},
	{"keys that look like paths", "metadata:\n  annotations:\n    example.com/a.b: x\n    \"[weird]\": y\n", true},
	{"sorted keys", "z: 1\na: 2\nm: {y: 1, b: 2}\n", true},
	{"unused anchor", "a: &x 1\nb: 2\n", true},
	{"non-specific tag", "a: ! 12\nb: ! text\n", true},

	{"alias", "a: &x {b: 1}\nc: *x\n", false},
	{"merge key", "base: &b {x: 1, y: 2}\nderived:\n  <<: *b\n  y: 3\n", false},
	{"merge key list", "a: &a {x: 1}\nb: &b {y: 2}\nc: {<<: [*a, *b], z: 3}\n", false},
	{"timestamp", "a: 2001-12-14\nb: 2001-12-14T21:59:43.10Z\n", false},
	{"big integer", "a: 12345678901234567890\n", false},
	{"negative integer beyond int64 (a float for yaml.v3)", "a: -12345678901234567890\n", true},
	{"octal", "a: 0777\n", false},
	{"yaml 1.2 octal", "a: 0o17\n", false},
	{"hex", "a: 0x1F\n", false},
	{"binary", "a: 0b101\n", false},
	{"underscores", "a: 1_000\n", false},
	{"plus sign", "a: +12\n", false},
	{"infinity", "a: .inf\n", false},
	{"not a number", "a: .nan\n", false},
	{"explicit str tag", "a: !!str 123\n", false},
	{"explicit int tag", "a: !!int \"42\"\n", false},
	{"explicit float tag on int", "a: !!float 3\n", false},
	{"binary tag", "a: !!binary aGVsbG8=\n", false},
	{"custom tag", "a: !thing {b: 1}\n", false},
	{"integer key", "1: a\n2: b\n", false},
	{"boolean key", "true: a\n", false},
	{"null key", "~: a\n", false},
	{"float key", "1.5: a\n", false},
	{"duplicate key", "a: 1\na: 2\n", false},
	{"duplicate of a quoted key", "a: 1\n'a': 2\n", false},
	{"mapping key", "? {a: 1}\n: b\n", false},
}

// TestConvertPlainMatchesGeneral checks that convertPlain gives exactly what the general path
// (yaml.v3's decoder, toJSONValue, encoding/json) gives: the same generic value and the same
// JSON bytes, which are part of every object's applied hash.
func TestConvertPlainMatchesGeneral(t *testing.T) {
	for _, tc := range plainCases {
		t.Run(tc.name, func(t *testing.T) {
			roots, err := mappingRoots([]byte(tc.yaml))
			if err != nil {
				t.Fatal(err)
			}
			plain := 0
			for _, root := range roots {
				if comparePlain(t, root) {
					plain++
				}
			}
			if got := plain > 0; got != tc.plain {
				t.Errorf("convertPlain took the document: %v, want %v", got, tc.plain)
			}
		})
	}
}

// TestConvertPlainOnExamples runs the comparison on every manifest of the example repositories
// and of testdata, List items included.
func TestConvertPlainOnExamples(t *testing.T) {
	files, plain := 0, 0
	for _, dir := range []string{"examples", "testdata"} {
		err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() || !isManifest(p) {
				return err
			}
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			files++
			roots, _ := mappingRoots(data) // some invalid examples end in a syntax error
			for _, root := range roots {
				if comparePlain(t, root) {
					plain++
				}
				_, items := mappingEntry(root, "items", 0)
				if items != nil && items.Kind == yaml.SequenceNode {
					for _, item := range items.Content {
						if item.Kind == yaml.MappingNode && comparePlain(t, item) {
							plain++
						}
					}
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if files < 10 || plain < 20 {
		t.Fatalf("only %d manifest files found under examples/ and testdata/, %d documents compared", files, plain)
	}
	t.Logf("%d files, %d documents compared", files, plain)
}

// FuzzConvertPlain feeds arbitrary YAML to both paths: whenever convertPlain takes a document,
// the general path must accept it too and agree on the value and the bytes.
func FuzzConvertPlain(f *testing.F) {
	for _, tc := range plainCases {
		f.Add([]byte(tc.yaml))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		dec := yaml.NewDecoder(bytes.NewReader(data))
		for {
			var n yaml.Node
			if err := dec.Decode(&n); err != nil {
				return
			}
			if n.Kind == yaml.DocumentNode && len(n.Content) == 1 && n.Content[0].Kind == yaml.MappingNode {
				comparePlain(t, n.Content[0])
			}
		}
	})
}

// mappingRoots parses data and returns the root mapping of each document, up to the first
// syntax error, if any.
func mappingRoots(data []byte) ([]*yaml.Node, error) {
	var roots []*yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var n yaml.Node
		err := dec.Decode(&n)
		if errors.Is(err, io.EOF) {
			return roots, nil
		}
		if err != nil {
			return roots, err
		}
		if n.Kind == yaml.DocumentNode && len(n.Content) == 1 && n.Content[0].Kind == yaml.MappingNode {
			roots = append(roots, n.Content[0])
		}
	}
}

// comparePlain compares both paths on one mapping node; it reports whether convertPlain took it.
func comparePlain(t testing.TB, root *yaml.Node) bool {
	t.Helper()
	value, raw, ok := convertPlain(root)
	if !ok {
		return false
	}
	general, errs := documentFromNodeGeneral("x.yaml", root, "")
	if len(errs) > 0 {
		t.Fatalf("convertPlain took a document that the general path refuses: %v\n%s", errs, raw)
	}
	if diff := cmp.Diff(general.value, value); diff != "" {
		t.Errorf("value (-general +plain):\n%s", diff)
	}
	if !bytes.Equal(general.raw, raw) {
		t.Errorf("JSON differs:\ngeneral: %s\nplain:   %s", general.raw, raw)
	}
	return true
}
