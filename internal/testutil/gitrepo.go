// Package testutil holds helpers shared by integration tests: Git repositories driven with the
// real git CLI.
package testutil

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// GitRepo is a bare repository (what the operator syncs) and a work tree that pushes to it.
type GitRepo struct {
	t    testing.TB
	Bare string
	Work string
}

// gitEnv gives git an identity and keeps the user's configuration out of the tests.
var gitEnv = []string{
	"GIT_AUTHOR_NAME=Bosun Test", "GIT_AUTHOR_EMAIL=test@bosun.invalid",
	"GIT_COMMITTER_NAME=Bosun Test", "GIT_COMMITTER_EMAIL=test@bosun.invalid",
	"GIT_CONFIG_NOSYSTEM=1", "GIT_TERMINAL_PROMPT=0",
}

// NewGitRepo creates an empty bare repository with branch main and a work tree cloned from it.
func NewGitRepo(t testing.TB) *GitRepo {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git is not installed (apt-get install git)")
	}
	dir := t.TempDir()
	r := &GitRepo{t: t, Bare: filepath.Join(dir, "repo.git"), Work: filepath.Join(dir, "work")}
	r.Git(dir, "init", "--quiet", "--bare", "--initial-branch=main", r.Bare)
	r.Git(dir, "init", "--quiet", "--initial-branch=main", r.Work)
	r.Git(r.Work, "remote", "add", "origin", r.Bare)
	return r
}

// Git runs git in dir and returns its trimmed output, failing the test on error.
func (r *GitRepo) Git(dir string, args ...string) string {
	r.t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), gitEnv...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		r.t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// Write writes files (path relative to the work tree → content).
func (r *GitRepo) Write(files map[string]string) {
	r.t.Helper()
	for rel, content := range files {
		p := filepath.Join(r.Work, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			r.t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			r.t.Fatal(err)
		}
	}
}

// Remove deletes files from the work tree.
func (r *GitRepo) Remove(paths ...string) {
	r.t.Helper()
	for _, rel := range paths {
		if err := os.RemoveAll(filepath.Join(r.Work, filepath.FromSlash(rel))); err != nil {
			r.t.Fatal(err)
		}
	}
}

// CommitAndPush commits everything in the work tree and pushes it to main; it returns the commit.
func (r *GitRepo) CommitAndPush(msg string) string {
	r.t.Helper()
	r.Git(r.Work, "add", "-A")
	r.Git(r.Work, "commit", "--quiet", "--allow-empty", "-m", msg)
	r.Git(r.Work, "push", "--quiet", "origin", "main")
	return r.Git(r.Work, "rev-parse", "HEAD")
}
