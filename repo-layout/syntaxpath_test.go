package repolayout

import "testing"

func TestYAMLPathAt(t *testing.T) {
	deployment := `apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels:
    app: web
spec:
  template:
    spec:
      containers:
      - name: a
        image: x
        env:
        - name: A
          value: "1"
        - {name: B, value: "2"}
      - name: b
        ports:
          - containerPort: 80
          - containerPort: 81
      volumes:
      - name: v
`
	tests := []struct {
		name string
		data string
		line int
		want string
	}{
		{"top-level key", deployment, 2, "kind"},
		{"nested key", deployment, 4, "metadata.name"},
		{"deeper key", deployment, 6, "metadata.labels.app"},
		{"first list item, key on the dash line", deployment, 11, "spec.template.spec.containers[0].name"},
		{"key of a list item", deployment, 12, "spec.template.spec.containers[0].image"},
		{"list inside a list item", deployment, 15, "spec.template.spec.containers[0].env[0].value"},
		{"flow item", deployment, 16, "spec.template.spec.containers[0].env[1]"},
		{"second item", deployment, 17, "spec.template.spec.containers[1].name"},
		{"indented list", deployment, 20, "spec.template.spec.containers[1].ports[1].containerPort"},
		{"sibling after a list at the key's indent", deployment, 21, "spec.template.spec.volumes"},
		{"second document", "a: 1\nb:\n  c: 2\n---\nkind: x\nmetadata:\n  name: [\n", 7, "metadata.name"},
		{"comments and blank lines", "# c\nmetadata:\n\n  # c\n  name: x\n", 5, "metadata.name"},
		{"quoted key", "data:\n  'a b': [\n", 2, "data.a b"},
		{"tab-indented line: its parent", "metadata:\n  labels:\n\tfoo: bar\n", 3, "metadata.labels"},
		{"no key on the line", "a:\n  b: |\n    text\n", 3, "a.b"},
		{"first line", "kind: [\n", 1, "kind"},
		{"past the end", "a: 1\n", 9, "a"},
		{"nothing", "", 1, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := yamlPathAt([]byte(tt.data), tt.line); got != tt.want {
				t.Errorf("yamlPathAt(line %d) = %q, want %q", tt.line, got, tt.want)
			}
		})
	}
}

func TestJSONPathAt(t *testing.T) {
	tests := []struct{ data, want string }{
		{`{"kind": }`, "kind"},
		{`{"a": 1,}`, ""},
		{`{"metadata": {"name": "x",}}`, "metadata"},
		{`{"spec": {"containers": [{"name": "a"}, {"name": "b", "image": x}]}}`, "spec.containers[1].image"},
		{`{"a": [1, 2, ]}`, "a[2]"},
		{`{"a": [[1], [2, }`, "a[1][1]"},
		{`{"a": [x]}`, "a[0]"},
		{`{"a": {"b": 1} "c": 2}`, ""},
		{`{"a": "b"}`, ""},
		{`[`, ""},
	}
	for _, tt := range tests {
		if got := jsonPathAt([]byte(tt.data)); got != tt.want {
			t.Errorf("jsonPathAt(%s) = %q, want %q", tt.data, got, tt.want)
		}
	}
}
