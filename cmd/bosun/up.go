package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/bosun-gitops/bosun/operator"
	repolayout "github.com/bosun-gitops/bosun/repo-layout"
	"github.com/spf13/cobra"
)

func newUpCmd() *cobra.Command {
	var cfg operator.Config
	var endpoints, tokenFile string
	var lf logFlags
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Run a single-machine Bosun: embedded etcd, operator, and a local Git repository",
		Long: `Starts the operator with embedded etcd on this machine. Without --repo it creates
DATA-DIR/repo.git from the starter repository of 'bosun init', with a work tree beside it in
DATA-DIR/repo, so that committing and pushing there deploys.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := finishOperatorConfig(&cfg, endpoints, tokenFile, &lf); err != nil {
				return err
			}
			if cfg.Repo == "" {
				bare, work, err := ensureLocalRepo(cmd.Context(), cfg.DataDir, cmd.ErrOrStderr())
				if err != nil {
					return err
				}
				cfg.Repo = bare
				defer printf(cmd.ErrOrStderr(), "work tree: %s\n", work)
			}
			op, err := operator.New(cfg)
			if err != nil {
				return err
			}
			errc := make(chan error, 1)
			go func() { errc <- op.Run(cmd.Context()) }()
			select {
			case err := <-errc:
				return err
			case <-op.Ready():
			}
			printUpBanner(cmd.ErrOrStderr(), cfg, op.Server().URL(), op.Server().AdminKubeconfigPath())
			return <-errc
		},
	}
	addOperatorFlags(cmd.Flags(), &cfg, &endpoints, &tokenFile)
	lf.add(cmd.Flags())
	return cmd
}

func printf(w io.Writer, format string, args ...any) { fmt.Fprintf(w, format, args...) }

// ensureLocalRepo creates DATA-DIR/repo.git (bare, branch main) with the starter repository as its
// first commit, and a clone of it in DATA-DIR/repo, unless they exist.
func ensureLocalRepo(ctx context.Context, dataDir string, progress io.Writer) (bare, work string, err error) {
	dataDir, err = filepath.Abs(dataDir)
	if err != nil {
		return "", "", err
	}
	bare = filepath.Join(dataDir, "repo.git")
	work = filepath.Join(dataDir, "repo")
	if _, err := os.Stat(bare); err == nil {
		return bare, work, nil
	}
	if _, err := exec.LookPath("git"); err != nil {
		return "", "", errors.New("git is not installed: install it (apt-get install git) or pass --repo")
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return "", "", err
	}
	fmt.Fprintf(progress, "creating a local repository in %s from the starter repository\n", bare)
	tmp := bare + ".tmp"
	os.RemoveAll(tmp)
	if err := runGit(ctx, dataDir, "init", "--quiet", "--bare", "--initial-branch=main", tmp); err != nil {
		return "", "", err
	}
	os.RemoveAll(work)
	if err := repolayout.Init(work); err != nil {
		return "", "", fmt.Errorf("writing the starter repository: %w", err)
	}
	for _, args := range [][]string{
		{"init", "--quiet", "--initial-branch=main"},
		{"add", "-A"},
		{"commit", "--quiet", "-m", "Starter repository from bosun init"},
		{"remote", "add", "origin", bare},
		{"push", "--quiet", tmp, "main"},
		{"branch", "--quiet", "--set-upstream-to=origin/main", "main"},
	} {
		if args[0] == "branch" {
			if err := runGit(ctx, work, "fetch", "--quiet", "origin"); err != nil {
				return "", "", err
			}
		}
		if err := runGit(ctx, work, args...); err != nil {
			return "", "", err
		}
		if args[0] == "push" {
			// The push went to the temporary path; make it the real one atomically.
			if err := os.Rename(tmp, bare); err != nil {
				return "", "", err
			}
		}
	}
	return bare, work, nil
}

// runGit runs the git CLI, giving it an identity when the user has none configured so that the
// first commit works on a fresh machine.
func runGit(ctx context.Context, dir string, args ...string) error {
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Dir = dir
	cmd.Env = os.Environ()
	if out, err := exec.Command("git", "config", "user.email").Output(); err != nil || strings.TrimSpace(string(out)) == "" {
		cmd.Env = append(cmd.Env, "GIT_AUTHOR_NAME=Bosun", "GIT_AUTHOR_EMAIL=bosun@localhost",
			"GIT_COMMITTER_NAME=Bosun", "GIT_COMMITTER_EMAIL=bosun@localhost")
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("git %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

func printUpBanner(w io.Writer, cfg operator.Config, url, kubeconfig string) {
	self := "bosun"
	if exe, err := os.Executable(); err == nil {
		if wd, err := os.Getwd(); err == nil {
			if rel, err := filepath.Rel(wd, exe); err == nil && !strings.HasPrefix(rel, "..") {
				self = rel
			}
		}
	}
	work := filepath.Join(cfg.DataDir, "repo")
	interval := cfg.Interval
	if interval == 0 {
		interval = 10 * time.Second
	}
	fmt.Fprintf(w, `
Bosun is up.
  API server:  %s
  kubeconfig:  %s
  repository:  %s (branch %s)

In another terminal:
  export BOSUN_KUBECONFIG=%s
  %s status                      # what is synced from Git
  %s get deployments,services -A

Change something and push:
  cd %s
  $EDITOR apps/web/deployment.yaml   # for example replicas: 3
  git commit -am "scale web" && git push
  %s sync                        # or wait for the next poll (%s)

Stop with Ctrl-C; state is kept in %s.
`, url, kubeconfig, cfg.Repo, cfg.Branch, kubeconfig, self, self, work, self, interval, cfg.DataDir)
}
