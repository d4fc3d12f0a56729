package main

import (
	"os"
	"path/filepath"
	"testing"
)

func TestPathInRepository(t *testing.T) {
	root := t.TempDir()
	for _, d := range []string{".git", "apps/web", "outside"} {
		os.MkdirAll(filepath.Join(root, "repo", d), 0o755)
	}
	os.MkdirAll(filepath.Join(root, "plain"), 0o755)
	tests := []struct {
		dir    string
		want   string
		wantOK bool
	}{
		{"repo", ".", true},
		{"repo/apps", "apps", true},
		{"repo/apps/web/", "apps/web", true},
		{"plain", "", false},
	}
	for _, tt := range tests {
		got, ok := pathInRepository(filepath.Join(root, tt.dir))
		if got != tt.want || ok != tt.wantOK {
			t.Errorf("pathInRepository(%s) = %q, %v; want %q, %v", tt.dir, got, ok, tt.want, tt.wantOK)
		}
	}
}
