package gitsync

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/bosun-gitops/bosun/operator/store/storetest"
)

func TestRedactURL(t *testing.T) {
	tests := []struct{ repo, want string }{
		{"https://git.example.com/org/fleet.git", "https://git.example.com/org/fleet.git"},
		{"https://deploy@git.example.com/org/fleet.git", "https://deploy@git.example.com/org/fleet.git"},
		{"https://deploy:s3cret@git.example.com/org/fleet.git", "https://deploy:xxxxx@git.example.com/org/fleet.git"},
		{"https://deploy:p%40ss%2Fword@git.example.com:8443/fleet.git", "https://deploy:xxxxx@git.example.com:8443/fleet.git"},
		{"http://u:s3cret@127.0.0.1:3000/r.git", "http://u:xxxxx@127.0.0.1:3000/r.git"},
		{"ssh://git@git.example.com:2222/org/fleet.git", "ssh://git@git.example.com:2222/org/fleet.git"},
		{"ssh://git:s3cret@git.example.com/org/fleet.git", "ssh://git:xxxxx@git.example.com/org/fleet.git"},
		// Does not parse (a bad escape in the password): the whole userinfo goes.
		{"https://deploy:s3%zzcret@git.example.com/fleet.git", "https://xxxxx@git.example.com/fleet.git"},
		// git's scp-like form has no password...
		{"git@git.example.com:org/fleet.git", "git@git.example.com:org/fleet.git"},
		// ...but a user may still type one.
		{"git:s3cret@git.example.com:org/fleet.git", "git:xxxxx@git.example.com:org/fleet.git"},
		{"/srv/git/fleet.git", "/srv/git/fleet.git"},
		{"/srv/git/user:x@y.git", "/srv/git/user:x@y.git"},
		{"file:///srv/git/fleet.git", "file:///srv/git/fleet.git"},
		{"fleet", "fleet"},
	}
	for _, tt := range tests {
		if got := RedactURL(tt.repo); got != tt.want {
			t.Errorf("RedactURL(%q) = %q, want %q", tt.repo, got, tt.want)
		}
	}
}

func TestConfigRefusesSecretsInTheClear(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name string
		cfg  Config
		want []string // substrings of the error, nil = valid
	}{
		{"password in https url", Config{Repo: "https://deploy:s3cret@git.example.com/r.git"},
			[]string{"repo: https://deploy:xxxxx@git.example.com/r.git carries a password", "--git-token-file"}},
		{"token as password in http url", Config{Repo: "http://x:tok3n@127.0.0.1/r.git"}, []string{"carries a password", "--git-token-file"}},
		{"password in ssh url", Config{Repo: "ssh://git:s3cret@h/r.git", SSHKeyFile: "k", KnownHostsFile: "kh"}, []string{"carries a password"}},
		{"password in scp-like address", Config{Repo: "git:s3cret@h:r.git"}, []string{"carries a password"}},
		{"unparsable url with a password", Config{Repo: "https://u:s3%zzcret@h/r.git"}, []string{"parsing", "xxxxx@h/r.git"}},
		{"bare user in ssh url", Config{Repo: "ssh://git@h/r.git", SSHKeyFile: "k", KnownHostsFile: "kh"}, nil},
		{"bare user in scp-like address", Config{Repo: "git@h:r.git", SSHKeyFile: "k", KnownHostsFile: "kh"}, nil},
		{"bare user in https url", Config{Repo: "https://deploy@h/r.git", Token: "t"}, nil},

		{"token over http", Config{Repo: "http://git.example.com/r.git", Token: "t"},
			[]string{"token: refusing to send the Git token over plain http:// to git.example.com", "use the repository's https:// URL"}},
		{"token over http to a LAN address", Config{Repo: "http://192.168.1.10:3000/r.git", Token: "t"}, []string{"192.168.1.10:3000"}},
		{"token over http to 127.0.0.1", Config{Repo: "http://127.0.0.1:3000/r.git", Token: "t"}, nil},
		{"token over http to 127.1.2.3", Config{Repo: "http://127.1.2.3/r.git", Token: "t"}, nil},
		{"token over http to localhost", Config{Repo: "http://localhost:3000/r.git", Token: "t"}, nil},
		{"token over http to ::1", Config{Repo: "http://[::1]:3000/r.git", Token: "t"}, nil},
		{"http without token", Config{Repo: "http://git.example.com/r.git"}, nil},

		{"ca file with https", Config{Repo: "https://h/r.git", CAFile: "ca.pem"}, nil},
		{"ca file with ssh", Config{Repo: "git@h:r.git", SSHKeyFile: "k", KnownHostsFile: "kh", CAFile: "ca.pem"}, []string{"caFile: --git-ca-file only applies to https://"}},
		{"ca file with http", Config{Repo: "http://127.0.0.1/r.git", CAFile: "ca.pem"}, []string{"caFile:", "plain http://"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.WorkDir = dir
			err := tt.cfg.Validate()
			if (err == nil) != (tt.want == nil) {
				t.Fatalf("Validate() = %v, want errors %v", err, tt.want)
			}
			if err == nil {
				return
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate() = %v, want it to mention %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "s3cret") || strings.Contains(err.Error(), "tok3n") {
				t.Errorf("Validate() = %v: the password shows", err)
			}
		})
	}
}

// TestFailedFetchHidesSecrets: whatever a remote answers (here it quotes the credentials it
// got, as a careless proxy might), the error, the status and the log hold neither the token nor
// the basic-auth header that carries it.
func TestFailedFetchHidesSecrets(t *testing.T) {
	const token = "tok-5d1e9a-secret"
	basic := base64.StdEncoding.EncodeToString([]byte("deploy:" + token))
	for _, status := range []int{http.StatusUnauthorized, http.StatusForbidden, http.StatusNotFound, http.StatusInternalServerError} {
		t.Run(fmt.Sprint(status), func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				user, password, _ := r.BasicAuth()
				http.Error(w, fmt.Sprintf("no: user=%s password=%s url-encoded=%s header=%q", user, password, token, r.Header.Get("Authorization")), status)
			}))
			defer srv.Close()
			repo := strings.Replace(srv.URL, "http://", "http://deploy@", 1) + "/org/fleet.git"
			st := storetest.NewStore(t)
			log, logs := bufferLogger(t)
			s, err := New(Config{Repo: repo, WorkDir: t.TempDir(), Interval: time.Hour, Token: token}, st, log)
			if err != nil {
				t.Fatal(err)
			}
			_, err = s.SyncOnce(context.Background())
			if err == nil {
				t.Fatal("the sync succeeded")
			}
			if _, perr := s.PlanRef(context.Background(), "feature", ""); perr == nil {
				t.Fatal("the plan succeeded")
			} else {
				err = fmt.Errorf("%w; plan: %w", err, perr)
			}
			for what, text := range map[string]string{"error": err.Error(), "status": gitSyncStatus(t, st, "default").Message, "log": logs.String(), "GitSync object": storedGitSync(t, st)} {
				for _, secret := range []string{token, basic} {
					if strings.Contains(text, secret) {
						t.Errorf("the %s holds %q:\n%s", what, secret, text)
					}
				}
			}
			if !strings.Contains(err.Error(), "deploy@") {
				t.Errorf("error %q does not name the repository with its user", err)
			}
		})
	}
}

// TestPrintedAddressesAreRedacted: Validate refuses a password in the address; should one get
// past it, what is printed and stored still shows it masked.
func TestPrintedAddressesAreRedacted(t *testing.T) {
	const repo = "https://deploy:s3cret@git.example.com/org/fleet.git"
	cfg := Config{Repo: repo, WorkDir: t.TempDir(), Branch: "main"}
	s := &Syncer{cfg: cfg}
	g, err := openGitRepo(cfg)
	if err != nil {
		t.Fatal(err)
	}
	printed := map[string]string{
		"GitSync spec.repo": s.specFromConfig().Repo,
		"fetch address":     g.display,
		"branch not found":  fetchMessage(cfg, ErrBranchNotFound, ""),
		"no answer":         fetchMessage(cfg, ErrNoAnswer, ""),
		"other error":       fetchMessage(cfg, fmt.Errorf("dial tcp: refused"), ""),
	}
	for what, text := range printed {
		if strings.Contains(text, "s3cret") || !strings.Contains(text, "deploy:xxxxx@git.example.com") {
			t.Errorf("%s = %q, want the address with its password masked", what, text)
		}
	}
}
