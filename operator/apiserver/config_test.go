package apiserver

import (
	"strings"
	"testing"

	"github.com/bosun-gitops/bosun/operator/store"
)

func TestConfigValidate(t *testing.T) {
	good := Config{Listen: "127.0.0.1:0", DataDir: "/tmp/x", Store: &store.Store{}}
	for _, tc := range []struct {
		name    string
		edit    func(*Config)
		wantErr string
	}{
		{"valid", func(*Config) {}, ""},
		{"no listen", func(c *Config) { c.Listen = "" }, "Listen is required"},
		{"bad listen", func(c *Config) { c.Listen = "6443" }, "Listen \"6443\""},
		{"no data dir", func(c *Config) { c.DataDir = "" }, "DataDir is required"},
		{"no store", func(c *Config) { c.Store = nil }, "Store is required"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := good
			tc.edit(&c)
			err := c.Validate()
			if tc.wantErr == "" {
				if err != nil {
					t.Errorf("Validate: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("Validate = %v, want error containing %q", err, tc.wantErr)
			}
		})
	}
}
