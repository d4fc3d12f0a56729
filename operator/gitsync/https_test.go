package gitsync

import (
	"context"
	"encoding/json"
	"fmt"
	stdlog "log"
	"log/slog"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bosun-gitops/bosun/internal/pki"
	"github.com/bosun-gitops/bosun/internal/resource"
	"github.com/bosun-gitops/bosun/internal/testutil"
	"github.com/bosun-gitops/bosun/operator/store"
	"github.com/bosun-gitops/bosun/operator/store/storetest"
	bosunv1 "github.com/bosun-gitops/bosun/repo-layout/v1alpha1"
	"github.com/google/go-cmp/cmp"
)

// httpsGitServer is git's own smart-HTTP server (`git http-backend`, run as CGI) behind an
// httptest TLS server that checks basic auth the way a forge does: the token is the password,
// the user name is free.
type httpsGitServer struct {
	url    string // https://127.0.0.1:PORT
	caFile string // the server's self-signed certificate, PEM: what --git-ca-file takes

	mu    sync.Mutex
	users []string // user names of the authenticated requests
}

// startHTTPSGit serves the bare repositories under root over HTTPS to requests whose basic-auth
// password is token. A refused request gets a 401 whose body quotes the credentials it got, as
// a careless proxy or forge might: what the operator prints must not repeat them.
func startHTTPSGit(t *testing.T, root, token string) *httpsGitServer {
	t.Helper()
	backend := filepath.Join(gitExecPath(t), "git-http-backend")
	if _, err := os.Stat(backend); err != nil {
		t.Skipf("git-http-backend is not installed (apt-get install git): %v", err)
	}
	s := &httpsGitServer{}
	cgiHandler := &cgi.Handler{
		Path: backend,
		Env:  []string{"GIT_PROJECT_ROOT=" + root, "GIT_HTTP_EXPORT_ALL=1", "GIT_CONFIG_NOSYSTEM=1"},
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, password, ok := r.BasicAuth()
		if !ok || password != token {
			w.Header().Set("WWW-Authenticate", `Basic realm="git"`)
			http.Error(w, fmt.Sprintf("bad credentials: user %q password %q (Authorization: %s)", user, password, r.Header.Get("Authorization")), http.StatusUnauthorized)
			return
		}
		s.mu.Lock()
		s.users = append(s.users, user)
		s.mu.Unlock()
		cgiHandler.ServeHTTP(w, r)
	}))
	srv.Config.ErrorLog = stdlog.New(testWriter{t}, "https git server: ", 0) // refused handshakes
	srv.StartTLS()
	t.Cleanup(srv.Close)
	s.url = srv.URL
	s.caFile = filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(s.caFile, pki.EncodeCert(srv.Certificate().Raw), 0o600); err != nil {
		t.Fatal(err)
	}
	return s
}

func (s *httpsGitServer) userNames() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.users...)
}

func gitExecPath(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("git", "--exec-path").Output()
	if err != nil {
		t.Skipf("git is not installed (apt-get install git): %v", err)
	}
	return strings.TrimSpace(string(out))
}

// bufferLogger logs to the test log and to a buffer the test can search.
func bufferLogger(t *testing.T) (*slog.Logger, *testutil.SyncBuffer) {
	var buf testutil.SyncBuffer
	h := slog.NewTextHandler(multiWriter{&buf, testWriter{t}}, &slog.HandlerOptions{Level: slog.LevelDebug})
	return slog.New(h), &buf
}

type multiWriter []interface{ Write([]byte) (int, error) }

func (m multiWriter) Write(p []byte) (int, error) {
	for _, w := range m {
		if _, err := w.Write(p); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

// storedGitSync is the GitSync object as the API serves it to any node.
func storedGitSync(t *testing.T, st *store.Store) string {
	t.Helper()
	obj, err := st.Get(context.Background(), resource.GitSyncs, "", "default")
	if err != nil {
		t.Fatal(err)
	}
	raw, err := json.Marshal(obj)
	if err != nil {
		t.Fatal(err)
	}
	return string(raw)
}

// TestSyncOverHTTPSWithTokenAndCA fetches from a real Git server over HTTPS with a certificate
// no system CA signs: without --git-ca-file the sync fails on the certificate, with a CA file
// that holds another CA too, a wrong token fails on authentication without the token showing
// anywhere, and the right token and CA sync the branch and plan a pull request's branch.
func TestSyncOverHTTPSWithTokenAndCA(t *testing.T) {
	const token, wrongToken = "tok-3f9a1c-right", "tok-77e2b0-wrong"
	st := storetest.NewStore(t)
	f := newGitFixture(t)
	f.write("a.yaml", configMap("default", "a", "1"))
	good := f.commitPush("a", "main")
	f.write("b.yaml", configMap("default", "b", "1"))
	f.commitPush("b", "feature")
	srv := startHTTPSGit(t, filepath.Dir(f.bare), token)
	repo := strings.Replace(srv.url, "https://", "https://deploy@", 1) + "/" + filepath.Base(f.bare)

	otherCA, err := pki.NewCA("another CA")
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(t.TempDir(), "git-ca.pem")
	if err := os.WriteFile(caFile, otherCA.CertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	log, logs := bufferLogger(t)
	newHTTPSSyncer := func(token, caFile string) *Syncer {
		s, err := New(Config{Repo: repo, WorkDir: t.TempDir(), Interval: time.Hour, Token: token, CAFile: caFile}, st, log)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	failedWith := func(name string, s *Syncer, wants ...string) {
		t.Helper()
		_, err := s.SyncOnce(context.Background())
		if err == nil {
			t.Fatalf("%s: the sync succeeded", name)
		}
		status := gitSyncStatus(t, st, "default")
		if status.State != bosunv1.SyncStateFailed || status.Applied.SHA != "" {
			t.Errorf("%s: status = %s (applied %q), want Failed with nothing applied", name, status.State, status.Applied.SHA)
		}
		for _, w := range wants {
			if !strings.Contains(status.Message, w) {
				t.Errorf("%s: status message %q does not say %q", name, status.Message, w)
			}
		}
		for what, text := range map[string]string{"error": err.Error(), "status": status.Message, "log": logs.String(), "GitSync object": storedGitSync(t, st)} {
			for _, secret := range []string{token, wrongToken} {
				if strings.Contains(text, secret) {
					t.Errorf("%s: the %s holds the token %q:\n%s", name, what, secret, text)
				}
			}
		}
		if got := names(t, st, resource.ConfigMaps); len(got) != 0 {
			t.Errorf("%s: config maps %v were applied", name, keys(got))
		}
	}

	host := strings.TrimPrefix(srv.url, "https://")
	failedWith("no CA file", newHTTPSSyncer(token, ""),
		"the TLS certificate of "+host+" is not signed by a CA this machine trusts", "--git-ca-file")

	s := newHTTPSSyncer(wrongToken, caFile)
	failedWith("CA file of another CA", s,
		"the TLS certificate of "+host+" is signed neither by a CA in "+caFile+" (--git-ca-file)")

	// The CA file is read again before each fetch: no restart after fixing it.
	data, err := os.ReadFile(srv.caFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(caFile, append(otherCA.CertPEM, data...), 0o600); err != nil {
		t.Fatal(err)
	}
	failedWith("wrong token", s, repo+" refused the token", "--git-token-file")

	s = newHTTPSSyncer(token, caFile)
	mustSync(t, s)
	status := gitSyncStatus(t, st, "default")
	if status.State != bosunv1.SyncStateSynced || status.Applied.SHA != good {
		t.Fatalf("status = %s %q, want Synced at %s", status.State, status.Message, good)
	}
	if diff := cmp.Diff([]string{"default/a"}, keys(names(t, st, resource.ConfigMaps))); diff != "" {
		t.Errorf("config maps after the sync over https (-want +got):\n%s", diff)
	}
	for _, u := range srv.userNames() {
		if u != "deploy" {
			t.Errorf("the server saw user %q, want deploy (the user name in --repo)", u)
		}
	}

	// A pull request's plan fetches through the same transport: the same CA and token.
	p, err := s.PlanRef(context.Background(), "feature", "")
	if err != nil {
		t.Fatalf("PlanRef over https: %v", err)
	}
	if len(p.Changes) != 1 || p.Changes[0].Desired == nil || p.Changes[0].Desired.GetName() != "b" {
		t.Errorf("plan of feature = %+v, want the creation of b", p.Changes)
	}
	if strings.Contains(logs.String(), token) || strings.Contains(storedGitSync(t, st), token) {
		t.Error("the token shows in the log or the GitSync object after a good sync")
	}
}
