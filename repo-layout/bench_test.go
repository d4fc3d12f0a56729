package repolayout

import (
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"
)

// benchFiles returns n Deployments, 10 per file, in 10 declared namespaces: the shape of Git
// sync's push-to-visible benchmark.
func benchFiles(n int) map[string]string {
	files := map[string]string{}
	for i := 0; i < 10; i++ {
		files[fmt.Sprintf("namespaces/ns-%d.yaml", i)] = fmt.Sprintf("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: ns-%d\n", i)
	}
	for file := 0; file < n; file += 10 {
		var b strings.Builder
		for i := file; i < file+10 && i < n; i++ {
			fmt.Fprintf(&b, `---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: app-%[2]d
  namespace: ns-%[1]d
  labels:
    app: app-%[2]d
    tier: backend
spec:
  replicas: 2
  selector:
    matchLabels:
      app: app-%[2]d
  template:
    metadata:
      labels:
        app: app-%[2]d
        tier: backend
    spec:
      containers:
      - name: app
        image: registry.example.com/team/app-%[2]d:1.2.3
        args: ["--listen=:8080", "--log-level=info", "--cache-size=128"]
        env:
        - name: MODE
          value: production
        ports:
        - containerPort: 8080
          name: http
        resources:
          requests:
            cpu: 100m
            memory: 64Mi
          limits:
            cpu: 500m
            memory: 256Mi
`, i%10, i)
		}
		files[fmt.Sprintf("apps/%04d.yaml", file/10)] = b.String()
	}
	return files
}

// BenchmarkLoadTree loads 10 000 Deployments from a commit's tree, from scratch and through a
// Loader whose cache holds every file (what one changed file costs).
func BenchmarkLoadTree(b *testing.B) {
	_, tree := gitRepo(b, benchFiles(10000), nil)
	b.Run("cold", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			set, err := LoadTree(tree)
			if err != nil {
				b.Fatal(err)
			}
			if len(set.Objects) != 10010 {
				b.Fatalf("%d objects", len(set.Objects))
			}
		}
	})
}

// BenchmarkParse parses and validates the 10 000 Deployments of benchFiles from memory: the
// loader's CPU work without reading a Git tree.
func BenchmarkParse(b *testing.B) {
	files := benchFiles(10000)
	src := memSource{}
	for name, content := range files {
		src[name] = []byte(content)
	}
	b.ReportAllocs()
	cpu := processCPU(b)
	for b.Loop() {
		l := &loader{src: src}
		for name, data := range src {
			if err := l.loadFile(name, name, entry{name: name, kind: kindFile, size: int64(len(data))}); err != nil {
				b.Fatal(err)
			}
		}
		l.parseFiles()
		set := l.finish()
		if len(l.errs) > 0 || len(set.Objects) != 10010 {
			b.Fatalf("%d objects, errors: %v", len(set.Objects), l.errs)
		}
	}
	b.ReportMetric(float64((processCPU(b)-cpu).Milliseconds())/float64(b.N), "cpu-ms/op")
}

// processCPU returns the CPU time (user and system) the process has used: on a shared machine
// it varies less than wall time.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
