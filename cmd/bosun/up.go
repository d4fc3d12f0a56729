package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/bosun-gitops/bosun/internal/childproc"
	"github.com/bosun-gitops/bosun/internal/testutil/images"
	"github.com/bosun-gitops/bosun/nodeagent"
	"github.com/bosun-gitops/bosun/nodeagent/runtime"
	"github.com/bosun-gitops/bosun/operator"
	"github.com/bosun-gitops/bosun/operator/gitsync"
	repolayout "github.com/bosun-gitops/bosun/repo-layout"
	"github.com/containerd/containerd"
	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

func newUpCmd() *cobra.Command {
	var cfg operator.Config
	var endpoints, tokenFile string
	var lf logFlags
	var noAgent bool
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Run a single-machine Bosun: embedded etcd, operator, and a local Git repository",
		Long: `Starts the operator with embedded etcd on this machine. Without --repo it creates
DATA-DIR/repo.git from the starter repository of 'bosun init', with a work tree beside it in
DATA-DIR/repo, so that committing and pushing there deploys.

It also runs a node agent on this machine (as root): it uses the system containerd when its socket
answers, else starts /usr/bin/containerd with its own root and state under DATA-DIR/containerd,
and imports an offline busybox image (docker.io/library/busybox:1.36) so that the starter
Deployment runs without network access. Run by another user, or with --no-agent, it starts the
control plane only: objects sync from Git and the API serves them, but pods stay Pending.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := finishOperatorConfig(&cfg, endpoints, tokenFile, &lf); err != nil {
				return err
			}
			if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
				return fmt.Errorf("--data-dir: %w; as a user other than root pass a directory you own, "+
					"for example --data-dir .bosun (what make run uses)", err)
			}
			noAgentWhy := ""
			switch {
			case noAgent:
				noAgentWhy = "--no-agent"
			case os.Geteuid() != 0:
				noAgentWhy = "not root"
				fmt.Fprintln(cmd.ErrOrStderr(), notRootWarning)
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
			ctx, cancel := context.WithCancel(cmd.Context())
			defer cancel()
			errc := make(chan error, 2)
			go func() { errc <- op.Run(ctx) }()
			select {
			case err := <-errc:
				return err
			case <-op.Ready():
			}
			if noAgentWhy == "" {
				agent, stop, err := startLocalAgent(ctx, cfg, op, cmd.ErrOrStderr())
				if err != nil {
					cancel()
					<-errc
					return fmt.Errorf("starting the local node agent (--no-agent runs without one): %w", err)
				}
				defer stop()
				go func() {
					if err := agent.Run(ctx); err != nil {
						errc <- fmt.Errorf("node agent: %w", err)
					}
				}()
				select {
				case <-agent.Ready():
				case err := <-errc:
					cancel()
					return err
				case <-ctx.Done():
					return nil
				}
			}
			printUpBanner(cmd.ErrOrStderr(), cfg, op.Server().URL(), op.Server().AdminKubeconfigPath(), noAgentWhy)
			go releaseStartupPages(ctx, nil, cfg.Logger)
			err = <-errc
			cancel()
			return err
		},
	}
	addOperatorFlags(cmd.Flags(), &cfg, &endpoints, &tokenFile)
	lf.add(cmd.Flags())
	cmd.Flags().BoolVar(&noAgent, "no-agent", false, "run the control plane only, no node agent on this machine")
	return cmd
}

// notRootWarning is what `bosun up` prints when it skips the agent because it is not root.
const notRootWarning = "not root: the local agent needs root to run containers; starting the operator only — run as root to run pods"

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

// printUpBanner tells how to use the cluster; noAgentWhy is "" when the local agent runs, else
// why it does not ("--no-agent", "not root").
func printUpBanner(w io.Writer, cfg operator.Config, url, kubeconfig string, noAgentWhy string) {
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
%s
Change something and push:
  cd %s
  $EDITOR apps/web/deployment.yaml   # for example replicas: 3
  git commit -am "scale web" && git push
  %s sync                        # or wait for the next poll (%s)

Stop with Ctrl-C; state is kept in %s.
`, url, kubeconfig, gitsync.RedactURL(cfg.Repo), cfg.Branch, kubeconfig, self, self, podsHelp(self, noAgentWhy), work, self, interval, cfg.DataDir)
}

// podsHelp is the banner's part about the pods the local agent runs.
func podsHelp(self, noAgentWhy string) string {
	if noAgentWhy != "" {
		return "\nNo node agent runs here (" + noAgentWhy + "): pods stay Pending until a node joins\n(`" + self + " token create`, then `bosun agent --server URL --token TOKEN` on that machine).\n"
	}
	var b strings.Builder
	b.WriteString("\nThis machine is a node too: the starter Deployment (apps/web) runs two busybox httpd pods.\n")
	for _, l := range [][2]string{
		{self + " get pods -n web -o wide", "STATUS Running, with their IPs"},
		{self + " logs -n web POD", "a container's output (-f follows)"},
		{"wget -qO- POD-IP:8080", "the page a pod serves"},
		{self + " get services -n web", "then wget -qO- CLUSTER-IP (it spreads over the pods)"},
	} {
		fmt.Fprintf(&b, "  %-40s # %s\n", l[0], l[1])
	}
	b.WriteString("Containers keep running when this stops; the next start adopts them.\n")
	return b.String()
}

// startLocalAgent prepares the node agent of `bosun up`: containerd (the system one, or a child
// process stopped by the returned func), the offline example image, and credentials from a
// bootstrap token the operator signs like any join.
func startLocalAgent(ctx context.Context, opCfg operator.Config, op *operator.Operator, progress io.Writer) (*nodeagent.Agent, func(), error) {
	dataDir, err := filepath.Abs(opCfg.DataDir)
	if err != nil {
		return nil, nil, err
	}
	if os.Geteuid() != 0 {
		return nil, nil, errors.New("the node agent needs root (containers, network namespaces, iptables): run as root")
	}
	log := opCfg.Logger
	if log == nil {
		log = slog.Default()
	}
	agentDir := filepath.Join(dataDir, "agent")
	socket, stop, err := ensureContainerd(ctx, dataDir, progress)
	if err != nil {
		return nil, nil, err
	}
	fail := func(err error) (*nodeagent.Agent, func(), error) { stop(); return nil, nil, err }

	imagesDir := filepath.Join(agentDir, "images")
	tarPath := filepath.Join(imagesDir, "busybox-1.36.tar")
	if _, err := os.Stat(tarPath); err != nil {
		if err := writeExampleImage(tarPath); err != nil {
			return fail(err)
		}
		fmt.Fprintf(progress, "wrote the offline example image docker.io/library/busybox:1.36 to %s\n", tarPath)
	}

	var cfg nodeagent.Config
	cfgPath := filepath.Join(agentDir, nodeagent.ConfigFileName)
	if _, err := os.Stat(cfgPath); err == nil {
		if cfg, err = nodeagent.LoadConfig(cfgPath); err != nil {
			return fail(err)
		}
	} else {
		token, err := localJoinToken(ctx, op)
		if err != nil {
			return fail(err)
		}
		cfg, err = nodeagent.Join(ctx, nodeagent.JoinOptions{
			Server: op.Server().URL(), Token: token, DataDir: agentDir,
			CACertHash: nodeagent.CACertHash(op.Server().CA().Cert),
			Template:   nodeagent.Config{ContainerdSocket: socket, Logger: log},
		})
		if err != nil {
			return fail(fmt.Errorf("joining the local node: %w", err))
		}
	}
	cfg.ContainerdSocket = socket
	cfg.Logger = log
	agent, err := nodeagent.New(cfg, nodeagent.DefaultDeps(cfg))
	if err != nil {
		return fail(err)
	}
	return agent, stop, nil
}

// localJoinToken stores a short-lived bootstrap token for the local agent's join.
func localJoinToken(ctx context.Context, op *operator.Operator) (string, error) {
	rc, err := clientcmd.BuildConfigFromFlags("", op.Server().AdminKubeconfigPath())
	if err != nil {
		return "", fmt.Errorf("reading the admin kubeconfig: %w", err)
	}
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return "", err
	}
	id, secret, err := newBootstrapToken()
	if err != nil {
		return "", err
	}
	s := bootstrapSecret(id, secret, "join of the local node by bosun up", 10*time.Minute, time.Now())
	if _, err := cs.CoreV1().Secrets(s.Namespace).Create(ctx, s, metav1.CreateOptions{}); err != nil {
		return "", fmt.Errorf("creating a join token for the local node: %w", err)
	}
	return id + "." + secret, nil
}

func writeExampleImage(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.Create(path + ".tmp")
	if err != nil {
		return err
	}
	if err := images.WriteBusybox(f, "docker.io/library/busybox:1.36"); err != nil {
		f.Close()
		return fmt.Errorf("building the example image (needs busybox-static): %w", err)
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(path+".tmp", path)
}

// ensureContainerd returns the socket of a containerd that answers: the system one, else a
// /usr/bin/containerd started here with its config, root and state under DATA-DIR/containerd
// (the socket under /run, whose paths stay short), stopped by the returned func. Containers
// keep running without it (their shims are not its children) and are adopted next time.
func ensureContainerd(ctx context.Context, dataDir string, progress io.Writer) (string, func(), error) {
	if containerdServes(ctx, nodeagent.DefaultContainerdSocket) {
		fmt.Fprintf(progress, "using the system containerd at %s\n", nodeagent.DefaultContainerdSocket)
		return nodeagent.DefaultContainerdSocket, func() {}, nil
	}
	bin, err := exec.LookPath("containerd")
	if err != nil {
		return "", nil, errors.New("containerd is not running and not installed: apt-get install containerd runc containernetworking-plugins")
	}
	dir := filepath.Join(dataDir, "containerd")
	sockDir := "/run/bosun"
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", nil, err
	}
	if err := os.MkdirAll(sockDir, 0o755); err != nil {
		return "", nil, err
	}
	socket := filepath.Join(sockDir, "containerd.sock")
	if containerdServes(ctx, socket) {
		fmt.Fprintf(progress, "using the containerd of an earlier bosun up at %s\n", socket)
		return socket, func() {}, nil
	}
	config := runtime.PrivateContainerdConfig(filepath.Join(dir, "root"), filepath.Join(sockDir, "containerd-state"), socket)
	configPath := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(configPath, []byte(config), 0o644); err != nil {
		return "", nil, err
	}
	logPath := filepath.Join(dir, "containerd.log")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return "", nil, err
	}
	cmd := exec.Command(bin, "--config", configPath)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := childproc.Start(cmd); err != nil {
		logFile.Close()
		return "", nil, fmt.Errorf("starting containerd: %w", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); logFile.Close(); close(exited) }()
	stop := func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
	}
	fmt.Fprintf(progress, "started containerd (pid %d) at %s, log %s\n", cmd.Process.Pid, socket, logPath)
	deadline := time.Now().Add(30 * time.Second)
	for !containerdServes(ctx, socket) {
		select {
		case <-exited:
			return "", nil, fmt.Errorf("containerd exited at start: see %s", logPath)
		case <-ctx.Done():
			stop()
			return "", nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			stop()
			return "", nil, fmt.Errorf("containerd did not answer on %s within 30s: see %s", socket, logPath)
		}
	}
	return socket, stop, nil
}

func containerdServes(ctx context.Context, socket string) bool {
	if _, err := os.Stat(socket); err != nil {
		return false
	}
	c, err := containerd.New(socket, containerd.WithTimeout(2*time.Second))
	if err != nil {
		return false
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	ok, err := c.IsServing(ctx)
	return err == nil && ok
}
