package main

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"runtime/debug"

	"github.com/bosun-gitops/bosun/internal/logging"
	"github.com/bosun-gitops/bosun/internal/memtrim"
	"github.com/bosun-gitops/bosun/nodeagent"
	"github.com/spf13/cobra"
)

// agentGCPercent is the agent's --gc-percent default. Its heap is small (about 10 MB with 50
// pods), so collecting twice as often as Go's default costs little CPU and keeps its memory at
// rest 2–3 MB lower.
const agentGCPercent = 50

func newAgentCmd() *cobra.Command {
	var (
		configFile string
		gcPercent  int
		join       nodeagent.JoinOptions
		lf         logFlags
	)
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run the node agent: register this machine as a node and run the pods bound to it",
		Long: `Runs the node agent with --config FILE, or joins a cluster with --server URL --token TOKEN
(from 'bosun token create'): the agent then writes its credentials and DATA-DIR/agent.yaml and
later starts need no token.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := logging.New(os.Stderr, lf.format, lf.level)
			if err != nil {
				return err
			}
			var cfg nodeagent.Config
			joined := filepath.Join(join.DataDir, nodeagent.ConfigFileName)
			switch {
			case configFile != "":
				if cfg, err = nodeagent.LoadConfig(configFile); err != nil {
					return err
				}
			case fileExists(joined):
				if cfg, err = nodeagent.LoadConfig(joined); err != nil {
					return err
				}
				log.Info("using the credentials of an earlier join", "config", joined)
			case join.Server != "" || join.Token != "":
				join.Template.Logger = log
				if cfg, err = nodeagent.Join(cmd.Context(), join); err != nil {
					return err
				}
				log.Info("joined the cluster", "node", cfg.NodeName, "config", joined)
			default:
				return errors.New("pass --config FILE, or --server URL --token TOKEN to join a cluster (create a token with `bosun token create`)")
			}
			cfg.Logger = log
			if gcPercent > 0 {
				debug.SetGCPercent(gcPercent)
			}
			agent, err := nodeagent.New(cfg, nodeagent.DefaultDeps(cfg))
			if err != nil {
				return err
			}
			go releaseStartupPages(cmd.Context(), agent.Ready(), log)
			// One idle releaser per process: `bosun up` runs the operator's alone.
			go memtrim.ReleaseWhenIdle(cmd.Context(), memtrim.AgentThresholds, log)
			return agent.Run(cmd.Context())
		},
	}
	f := cmd.Flags()
	f.StringVar(&configFile, "config", "", "agent config file (YAML)")
	f.StringVar(&join.Server, "server", "", "operator API URL to join, e.g. https://10.0.0.1:6443")
	f.StringVar(&join.Token, "token", "", "bootstrap token printed by bosun token create")
	f.StringVar(&join.NodeName, "node-name", "", "node name (default: the host name)")
	f.StringVar(&join.DataDir, "data-dir", nodeagent.DefaultDataDir, "directory for credentials, pod data and offline images (DIR/images/*.tar)")
	f.StringVar(&join.NodeIP, "node-ip", "", "the node's InternalIP (default: the address that reaches --server)")
	f.StringVar(&join.CACertHash, "ca-cert-hash", "", "pin of the cluster CA, sha256:<hex> (printed by bosun token create)")
	f.BoolVar(&join.InsecureSkipCAVerification, "insecure-skip-ca-verification", false, "join without --ca-cert-hash, trusting the CA the server presents")
	f.StringVar(&join.Template.Listen, "listen", "", "HTTPS address of the logs endpoint (default "+nodeagent.DefaultListen+")")
	f.StringVar(&join.Template.ContainerdSocket, "containerd-socket", "", "containerd socket (default "+nodeagent.DefaultContainerdSocket+")")
	f.IntVar(&gcPercent, "gc-percent", defaultGCPercent(agentGCPercent), "garbage collection target: collect once the heap grew by this percentage of what the last collection kept "+
		"(lower: less memory, more CPU; Go's default is 100; $GOGC when set)")
	lf.add(f)
	cmd.AddCommand(newAgentCleanupCmd(), newAgentShutdownCmd())
	return cmd
}

func newAgentCleanupCmd() *cobra.Command {
	var lf logFlags
	cmd := &cobra.Command{
		Use:   "cleanup",
		Short: "Remove what a stopped agent left in this machine's kernel (service rules, pod routes, the pods' bridge)",
		Long: `Removes the service proxy's iptables chains and nftables tables, the routes to other nodes'
pod networks, the pod masquerade rule and the pods' bridge; nothing that is not Bosun's. Stop the
agent and its pods first. Retiring a Machine runs it.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := logging.New(os.Stderr, lf.format, lf.level)
			if err != nil {
				return err
			}
			return nodeagent.Cleanup(cmd.Context(), log)
		},
	}
	lf.add(cmd.Flags())
	return cmd
}

func newAgentShutdownCmd() *cobra.Command {
	var (
		configFile string
		o          nodeagent.ShutdownOptions
		lf         logFlags
	)
	cmd := &cobra.Command{
		Use:   "shutdown",
		Short: "Graceful node shutdown: when systemd is shutting the machine down, stop the agent, then every pod container",
		Long: `Run by the agent unit's ExecStop. When the machine is going down (systemctl is-system-running
says "stopping") it stops the agent (--agent-pid), then every pod container: SIGTERM, up to
--grace-period, then SIGKILL; the outcome goes to DATA-DIR/last-shutdown. On any other stop
(restart, upgrade) it does nothing, so that the restarted agent adopts the running pods.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := logging.New(os.Stderr, lf.format, lf.level)
			if err != nil {
				return err
			}
			cfg, err := nodeagent.LoadConfig(configFile)
			if err != nil {
				return err
			}
			o.Logger = log
			return nodeagent.Shutdown(cmd.Context(), cfg, o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&configFile, "config", filepath.Join(nodeagent.DefaultDataDir, nodeagent.ConfigFileName), "agent config file (YAML)")
	f.IntVar(&o.AgentPID, "agent-pid", 0, "the running agent's pid, stopped first ($MAINPID in the unit)")
	f.DurationVar(&o.GracePeriod, "grace-period", nodeagent.DefaultShutdownGracePeriod, "how long each container may take to stop before SIGKILL")
	f.BoolVar(&o.Always, "always", false, "stop the pods even when the system is not shutting down")
	lf.add(f)
	return cmd
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil || !errors.Is(err, fs.ErrNotExist)
}
