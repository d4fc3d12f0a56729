package nodeagent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/bosun-gitops/bosun/nodeagent/pods"
	"github.com/bosun-gitops/bosun/nodeagent/runtime"
)

// DefaultShutdownGracePeriod bounds how long each pod container may take to stop when the
// machine shuts down.
const DefaultShutdownGracePeriod = 30 * time.Second

// ShutdownReportFile (in the agent's data dir) records what the last node shutdown stopped.
const ShutdownReportFile = "last-shutdown"

// ShutdownOptions configure Shutdown.
type ShutdownOptions struct {
	// AgentPID is the running agent (systemd's $MAINPID); it is stopped first, so that it does
	// not restart the containers being stopped. 0: no agent runs.
	AgentPID int
	// GracePeriod per container: SIGTERM (or the image's stop signal), then SIGKILL.
	GracePeriod time.Duration
	// Always stops the pods even when the system is not shutting down (for tests and by hand).
	Always bool
	Logger *slog.Logger
}

// Shutdown is the graceful node shutdown, run by the agent unit's ExecStop: when systemd is
// shutting the machine down it stops the agent and then every pod container, each with
// SIGTERM and up to GracePeriod before SIGKILL, and records the outcome in
// DATA-DIR/last-shutdown. On any other stop (`systemctl restart`, an upgrade) it does nothing:
// the restarted agent adopts the running containers.
func Shutdown(ctx context.Context, cfg Config, o ShutdownOptions) error {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if !o.Always && !systemShuttingDown(ctx) {
		log.Info("the system is not shutting down: pods keep running for the agent to adopt")
		return nil
	}
	if o.GracePeriod <= 0 {
		o.GracePeriod = DefaultShutdownGracePeriod
	}
	cfg.SetDefaults()
	if o.AgentPID > 0 {
		stopProcess(o.AgentPID, 10*time.Second)
	}
	rt, err := runtime.New(ctx, runtime.Config{Address: cfg.ContainerdSocket, Logger: log})
	if err != nil {
		return fmt.Errorf("node shutdown: %w", err)
	}
	defer rt.Close()
	ctrs, err := rt.ListContainers(ctx)
	if err != nil {
		return fmt.Errorf("node shutdown: %w", err)
	}
	start := time.Now()
	var (
		mu      sync.Mutex
		stopped []string
		errs    []error
		wg      sync.WaitGroup
	)
	for _, c := range ctrs {
		if c.State != pods.StateRunning {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := rt.StopContainer(ctx, c.ID, o.GracePeriod)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			stopped = append(stopped, c.Labels[pods.LabelPodNamespace]+"/"+c.Labels[pods.LabelPodName]+"/"+c.Labels[pods.LabelContainerName])
		}()
	}
	wg.Wait()
	report := fmt.Sprintf("%s stopped %d containers in %s (grace %s): %s\n", time.Now().UTC().Format(time.RFC3339),
		len(stopped), time.Since(start).Round(time.Millisecond), o.GracePeriod, strings.Join(stopped, " "))
	log.Info("node shutdown: pod containers stopped", "containers", len(stopped), "took", time.Since(start).Round(time.Millisecond), "failed", len(errs))
	if err := os.WriteFile(filepath.Join(cfg.DataDir, ShutdownReportFile), []byte(report), 0o644); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// systemShuttingDown asks systemd whether the machine is going down (is-system-running says
// "stopping"); without systemd the answer is no.
func systemShuttingDown(ctx context.Context) bool {
	out, _ := exec.CommandContext(ctx, "systemctl", "is-system-running").Output()
	return strings.TrimSpace(string(out)) == "stopping"
}

// stopProcess sends SIGTERM to pid and waits up to wait for it to go, then SIGKILLs it.
func stopProcess(pid int, wait time.Duration) {
	if syscall.Kill(pid, syscall.SIGTERM) != nil {
		return
	}
	for deadline := time.Now().Add(wait); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if syscall.Kill(pid, 0) != nil {
			return
		}
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
}
