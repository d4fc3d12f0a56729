package operator

import (
	"strings"
	"testing"
)

// TestValidateRefusesGitSecretsInTheClear: the operator stops at start, before anything logs the
// address or sends the token, on a password in --repo or a token bound for plain http://.
func TestValidateRefusesGitSecretsInTheClear(t *testing.T) {
	tests := []struct {
		name                string
		repo, token, caFile string
		want                []string // substrings of the error; nil = valid
	}{
		{name: "password in --repo", repo: "https://deploy:s3cret@git.example.com/fleet.git",
			want: []string{"carries a password", "--git-token-file"}},
		{name: "token over plain http", repo: "http://git.example.com/fleet.git", token: "t0ken",
			want: []string{"refusing to send the Git token over plain http:// to git.example.com", "https://"}},
		{name: "ca file for ssh", repo: "git@git.example.com:fleet.git", caFile: "ca.pem",
			want: []string{"--git-ca-file only applies to https://"}},
		{name: "user name in --repo", repo: "ssh://git@git.example.com/fleet.git"},
		{name: "token and ca file over https", repo: "https://git.example.com/fleet.git", token: "t0ken", caFile: "ca.pem"},
		{name: "token over http to loopback", repo: "http://127.0.0.1:3000/fleet.git", token: "t0ken"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := Config{DataDir: t.TempDir(), Repo: tt.repo, GitToken: tt.token, GitCAFile: tt.caFile,
				SSHKeyFile: "key", KnownHostsFile: "known_hosts"}
			err := cfg.Validate()
			if (err == nil) != (tt.want == nil) {
				t.Fatalf("Validate() = %v, want errors %q", err, tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate() = %v, want it to say %q", err, w)
				}
			}
			if err != nil && (strings.Contains(err.Error(), "s3cret") || strings.Contains(err.Error(), "t0ken")) {
				t.Errorf("Validate() = %v: it shows the secret", err)
			}
		})
	}
}

// TestValidateStorageMediaType: protobuf by default, JSON on request, anything else refused with
// the values that work.
func TestValidateStorageMediaType(t *testing.T) {
	for _, tt := range []struct{ in, want, err string }{
		{in: "", want: "application/vnd.kubernetes.protobuf"},
		{in: "application/json", want: "application/json"},
		{in: "yaml", err: `--storage-media-type: storage media type "yaml": must be application/vnd.kubernetes.protobuf or application/json`},
	} {
		cfg := Config{DataDir: t.TempDir(), Repo: "/srv/fleet.git", StorageMediaType: tt.in}
		err := cfg.Validate()
		switch {
		case tt.err != "" && (err == nil || err.Error() != tt.err):
			t.Errorf("%q: Validate() = %v, want %q", tt.in, err, tt.err)
		case tt.err == "" && err != nil:
			t.Errorf("%q: Validate() = %v", tt.in, err)
		case tt.err == "" && cfg.StorageMediaType != tt.want:
			t.Errorf("%q: media type %q, want %q", tt.in, cfg.StorageMediaType, tt.want)
		}
	}
}
