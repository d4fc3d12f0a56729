package bootstrap

import (
	"context"
	"fmt"
	"strings"
)

// generation identifies what the running agent must have been started with.
func (r *run) generation(unit string) string {
	return sha256Hex([]byte(strings.Join([]string{r.binary.Digest, sha256Hex(r.config), r.credHash, sha256Hex([]byte(unit))}, "\n")))
}

func (r *run) serviceDefinition() string {
	if r.facts.Systemd {
		return RenderUnit(r.plan.Layout)
	}
	return RenderSupervisor(r.plan.Layout)
}

func (l Layout) generationFile() string { return l.DataDir + "/generation" }

// aliveFn is a shell function: is pid $1 a live (not zombie) process whose command line contains $2?
// Zombies matter where PID 1 does not reap (containers, the e2e lab's `sleep infinity`).
const aliveFn = `alive() { [ -n "$1" ] || return 1; s=$(sed 's/.*) //' /proc/"$1"/stat 2>/dev/null | cut -d' ' -f1); [ -n "$s" ] && [ "$s" != Z ] && tr '\0' ' ' < /proc/"$1"/cmdline | grep -q -- "$2"; }
`

func checkService(ctx context.Context, r *run) (bool, error) {
	l := r.plan.Layout
	def := r.serviceDefinition()
	want := r.generation(def)
	var cmd string
	if r.facts.Systemd {
		cmd = fmt.Sprintf(`echo "active=$(systemctl is-active %[1]s)"; echo "enabled=$(systemctl is-enabled %[1]s 2>/dev/null)"
echo "def=$(sha256sum %[2]s 2>/dev/null | cut -d' ' -f1)"; echo "generation=$(cat %[3]s 2>/dev/null)"; true`,
			UnitName, shellQuote(l.UnitFile), shellQuote(l.generationFile()))
	} else {
		cmd = aliveFn + fmt.Sprintf(`if alive "$(cat %[1]s 2>/dev/null)" supervise.sh; then echo active=active; fi
echo "def=$(sha256sum %[2]s 2>/dev/null | cut -d' ' -f1)"; echo "generation=$(cat %[3]s 2>/dev/null)"; true`,
			shellQuote(l.SupervisorPID()), shellQuote(l.SupervisorScript()), shellQuote(l.generationFile()))
	}
	out, err := r.quiet(ctx, "service state", cmd)
	if err != nil {
		return false, err
	}
	kv := map[string]string{}
	for _, line := range strings.Split(string(out), "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), "="); ok {
			kv[k] = v
		}
	}
	ok := kv["active"] == "active" && kv["def"] == sha256Hex([]byte(def)) && kv["generation"] == want &&
		(!r.facts.Systemd || kv["enabled"] == "enabled")
	if ok {
		r.progress.Output(r.step, "agent is running the current binary, configuration and credentials", nil)
	}
	return ok, nil
}

func applyService(ctx context.Context, r *run) error {
	l := r.plan.Layout
	def := r.serviceDefinition()
	gen := r.generation(def)
	if r.facts.Systemd {
		if err := r.writeFile(ctx, l.UnitFile, []byte(def), "0644"); err != nil {
			return err
		}
		cmd := fmt.Sprintf(`set -e
systemctl daemon-reload
systemctl enable %[1]s
systemctl restart %[1]s
echo %[2]s > %[3]s
echo "restarted %[1]s"`, UnitName, gen, shellQuote(l.generationFile()))
		_, err := r.exec(ctx, "restarting "+UnitName, cmd, nil)
		return err
	}
	if err := r.writeFile(ctx, l.SupervisorScript(), []byte(def), "0755"); err != nil {
		return err
	}
	cmd := aliveFn + stopSupervisorFn(l) + fmt.Sprintf(`set -e
stop_supervisor
mkdir -p %[2]s
echo %[3]s > %[4]s
setsid sh %[1]s </dev/null >/dev/null 2>&1 &
i=0
until alive "$(cat %[5]s 2>/dev/null)" supervise.sh; do
  i=$((i+1)); [ $i -le 100 ] || { echo "the supervisor did not start" >&2; exit 1; }
  sleep 0.1
done
echo "started the agent under its supervisor (pid $(cat %[5]s))"`,
		shellQuote(l.SupervisorScript()), shellQuote(l.RunDir), gen, shellQuote(l.generationFile()), shellQuote(l.SupervisorPID()))
	_, err := r.exec(ctx, "restarting the agent", cmd, nil)
	return err
}

// stopSupervisorFn defines stop_supervisor: SIGTERM to the supervisor (which stops the agent) and
// a wait of up to 30 s; then SIGKILL to both.
func stopSupervisorFn(l Layout) string {
	return fmt.Sprintf(`stop_supervisor() {
  p=$(cat %[1]s 2>/dev/null || true)
  a=$(cat %[2]s 2>/dev/null || true)
  if alive "$p" supervise.sh; then
    kill -TERM "$p"
    i=0
    while alive "$p" supervise.sh; do
      i=$((i+1)); if [ $i -gt 300 ]; then kill -KILL "$p" 2>/dev/null || true; break; fi
      sleep 0.1
    done
    echo "stopped the agent supervisor (pid $p)"
  fi
  if alive "$a" " agent "; then kill -KILL "$a" 2>/dev/null || true; fi
  rm -f %[1]s %[2]s
}
`, shellQuote(l.SupervisorPID()), shellQuote(l.AgentPID()))
}

// Teardown stops the agent and removes its binary, unit or supervisor, configuration,
// credentials, state and log. Packages stay. Missing pieces are not an error: running it twice
// is fine.
func Teardown(ctx context.Context, remote Remote, l Layout, progress Progress) error {
	if progress == nil {
		progress = nopProgress{}
	}
	progress.Step("teardown")
	cmd := aliveFn + stopSupervisorFn(l) + fmt.Sprintf(`set -e
if [ -d /run/systemd/system ] && [ -e %[1]s ]; then
  systemctl disable --now %[2]s || true
  rm -f %[1]s
  systemctl daemon-reload
  echo "stopped and removed %[2]s"
fi
stop_supervisor
# What the agent programmed in the kernel: service rules, pod routes, the pods' bridge.
if [ -x %[3]s ]; then %[3]s agent cleanup 2>&1 || echo "warning: bosun agent cleanup failed; left in place"; fi
rm -f %[3]s %[3]s.tmp.* %[4]s
rm -rf %[5]s
# The agent's pod namespaces are bind mounts under /run/bosun/agent; leave the directory if any remain.
if grep -q ' /run/bosun/agent/' /proc/mounts; then
  echo "warning: pod network namespaces are still mounted under /run/bosun/agent; left in place"
else
  rm -rf /run/bosun/agent
fi
rmdir %[6]s 2>/dev/null || true
echo "removed the bosun agent and its files"`,
		shellQuote(l.UnitFile), UnitName, shellQuote(l.Binary), shellQuote(l.LogFile), shellQuote(l.DataDir), shellQuote(l.RunDir))
	out, err := remote.Run(ctx, cmd, nil)
	progress.Output("teardown", "removing the agent", out)
	if err != nil {
		return fmt.Errorf("teardown: %w", err)
	}
	return nil
}
