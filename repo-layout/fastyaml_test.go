package repolayout

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// yamlRoots parses data with yaml.v3 and returns the roots of its non-empty documents.
func yamlRoots(data []byte) ([]*yaml.Node, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var roots []*yaml.Node
	for {
		var n yaml.Node
		err := dec.Decode(&n)
		if errors.Is(err, io.EOF) {
			return roots, nil
		}
		if err != nil {
			return nil, err
		}
		if len(n.Content) == 0 || n.Content[0].Kind == yaml.ScalarNode && n.Content[0].Tag == "!!null" {
			continue
		}
		roots = append(roots, n.Content[0])
	}
}

// sameNode describes the first difference between two node trees ("" when none) in what
// yaml.v3's parser sets and the loader reads: comments aside.
func sameNode(want, got *yaml.Node, path string) string {
	if want.Kind != got.Kind || want.Tag != got.Tag || want.Value != got.Value || want.Style != got.Style ||
		want.Line != got.Line || want.Column != got.Column || len(want.Content) != len(got.Content) {
		return fmt.Sprintf("%s: yaml.v3 {kind %d tag %s value %q style %d at %d:%d, %d children}, fastParse {kind %d tag %s value %q style %d at %d:%d, %d children}",
			path, want.Kind, want.Tag, want.Value, want.Style, want.Line, want.Column, len(want.Content),
			got.Kind, got.Tag, got.Value, got.Style, got.Line, got.Column, len(got.Content))
	}
	for i := range want.Content {
		if d := sameNode(want.Content[i], got.Content[i], fmt.Sprintf("%s/%d", path, i)); d != "" {
			return d
		}
	}
	return ""
}

// checkFastParse fails t when fastParse accepts data but does not give yaml.v3's nodes.
func checkFastParse(t *testing.T, data []byte) bool {
	t.Helper()
	got, ok := fastParse(data)
	if !ok {
		return false
	}
	want, err := yamlRoots(data)
	if err != nil {
		t.Fatalf("fastParse accepted what yaml.v3 refuses (%v):\n%s", err, data)
	}
	if len(want) != len(got) {
		t.Fatalf("yaml.v3 found %d documents, fastParse %d:\n%s", len(want), len(got), data)
	}
	for i := range want {
		if d := sameNode(want[i], got[i], fmt.Sprintf("doc %d", i)); d != "" {
			t.Fatalf("%s\nin:\n%s", d, data)
		}
	}
	return true
}

var fastCases = []struct {
	name string
	yaml string
	fast bool // whether fastParse covers it
}{
	{"mapping", "a: 1\nb: two\nc: true\nd: null\ne: ~\nf:\n", true},
	{"nested", "a:\n  b:\n    c: d\n  e: f\ng: h\n", true},
	{"sequence at the key's indent", "a:\n- x\n- y\nb: z\n", true},
	{"indented sequence", "a:\n  - x\n  -\n    - y\n  - \n", true},
	{"compact mappings", "items:\n- name: a\n  value: 1\n-   name: b\n    env:\n    - name: X\n      value: \"1\"\n", true},
	{"quoted", "a: \"x \\\"y\\\" \\\\ \\n \\t /\"\nb: 'it''s'\n'c d': e\n\"f\": g\n", true},
	{"comments", "# head\na: 1 # one\n# between\nb:   # nothing\n  c: d\n", true},
	{"documents", "---\na: 1\n---\n# empty\n---\nb: 2\n", true},
	{"flow", "args: [\"--x\", '--y', z, 1]\nempty: []\nm: {}\nsp: [ a , b ]\n", true},
	{"literal", "data:\n  conf: |\n    line 1\n      indented\n\n    # not a comment\n  strip: |-\n    x\n\n  keep: |+\n    y\n\n\nend: 1\n", true},
	{"literal at the end", "a: |\n  x\n", true},
	{"literal in a sequence", "- |\n  x\n- y\n", true},
	{"resources", "cpu: 100m\nmemory: 64Mi\nport: 8080\nneg: -3\nname: -foo\nzero: 0\n", true},
	{"keys", ".dockerconfigjson: x\nkey.with/slash: y\n", true},
	{"indented root", "  a: 1\n  b: 2\n", true},
	{"no final newline", "a: 1", true},
	{"only comments", "# nothing\n", true},
	{"url values", "url: http://x:80/p?q=1#frag\nimage: reg:5000/app:1.2\n", true},
	{"float", "a: 1.5\n", false},
	{"version string", "a: 1.2.3\n", true},
	{"timestamp", "a: 2024-01-02\n", false},
	{"hex", "a: 0x1F\n", false},
	{"octal", "a: 0755\n", false},
	{"anchor", "a: &x 1\nb: *x\n", false},
	{"tag", "a: !!str 1\n", false},
	{"folded", "a: >\n  x\n", false},
	{"multi-line plain", "a: x\n  y\n", false},
	{"flow mapping", "a: {b: 1}\n", false},
	{"duplicate key", "a: 1\na: 2\n", false},
	{"tab", "a:\t1\n", false},
	{"crlf", "a: 1\r\n", false},
	{"unicode", "# café — ok\nné: \"é\"\nb: [é, \"ü\"]\nc: |\n  ü\nd:\n", true},
	{"non-printable", "a: \u0085\u00a0\ufeff\n", false},
	{"merge", "<<: {}\n", false},
	{"mapping in value", "a: b: c\n", false},
	{"bad indent", "a:\n    b: 1\n  c: 2\n", false},
	{"directive", "%YAML 1.2\n---\na: 1\n", false},
	{"document end", "a: 1\n...\n", false},
	{"unclosed quote", "a: \"x\n", false},
	{"escape", "a: \"\\u00e9\"\n", false},
	{"yes", "a: yes\n", true},
	{"scalar root", "just a string\n", false},
}

// TestFastParse: fastParse gives yaml.v3's nodes where it claims to, and claims the YAML that
// manifests are written in.
func TestFastParse(t *testing.T) {
	for _, tc := range fastCases {
		t.Run(tc.name, func(t *testing.T) {
			if got := checkFastParse(t, []byte(tc.yaml)); got != tc.fast {
				t.Errorf("fastParse took it: %v, want %v", got, tc.fast)
			}
		})
	}
}

// TestFastParseManifests: the example repositories and the benchmark's Deployments go through
// fastParse (or are left to yaml.v3) with yaml.v3's result; the Deployments are all taken.
func TestFastParseManifests(t *testing.T) {
	taken := 0
	for _, dir := range []string{"examples/starter", "examples/valid", "examples/invalid"} {
		_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
			if err == nil && !d.IsDir() && isManifest(p) && !strings.HasSuffix(p, ".json") {
				data, err := os.ReadFile(p)
				if err != nil {
					t.Fatal(err)
				}
				if checkFastParse(t, data) {
					taken++
				}
			}
			return nil
		})
	}
	if taken == 0 {
		t.Error("fastParse took none of the example manifests")
	}
	for name, content := range benchFiles(100) {
		if !checkFastParse(t, []byte(content)) {
			t.Errorf("fastParse left %s to yaml.v3", name)
		}
	}
}

// FuzzFastParse holds fastParse to yaml.v3 on anything it accepts.
func FuzzFastParse(f *testing.F) {
	for _, tc := range fastCases {
		f.Add([]byte(tc.yaml))
	}
	for _, content := range benchFiles(20) {
		f.Add([]byte(content))
	}
	for _, dir := range []string{"examples/starter", "examples/valid"} {
		_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
			if err == nil && !d.IsDir() && isManifest(p) {
				if b, err := os.ReadFile(p); err == nil {
					f.Add(b)
				}
			}
			return nil
		})
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		checkFastParse(t, data)
	})
}
