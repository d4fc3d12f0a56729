package bootstrap

import (
	"fmt"
	"strings"
)

// RenderUnit is the systemd unit that runs the agent. KillMode=process stops only the agent on
// restart: containers belong to containerd's shims, and the restarted agent adopts them. When
// the machine shuts down, ExecStop (`bosun agent shutdown`) stops the agent and then the pods,
// each with SIGTERM and a grace period; on a restart it does nothing.
func RenderUnit(l Layout) string {
	return fmt.Sprintf(`# Written by the Bosun operator; changes are overwritten at the next bootstrap.
[Unit]
Description=Bosun node agent
Documentation=https://github.com/bosun-gitops/bosun
Wants=network-online.target containerd.service
After=network-online.target containerd.service

[Service]
Type=simple
ExecStart=%[1]s agent --config %[2]s
ExecStop=%[1]s agent shutdown --config %[2]s --agent-pid $MAINPID
TimeoutStopSec=60
Restart=always
RestartSec=2
KillMode=process
Delegate=yes
LimitNOFILE=1048576
TasksMax=infinity
OOMScoreAdjust=-999

[Install]
WantedBy=multi-user.target
`, l.Binary, l.ConfigFile())
}

// RenderSupervisor is the POSIX shell script that keeps the agent running where there is no
// systemd. It is started detached (`setsid sh SCRIPT`), writes its pid and the agent's pid under
// RunDir, restarts the agent when it exits (1 s, doubling up to 30 s while it keeps failing
// within a minute), and on SIGTERM stops the agent, waits for it, removes its pid files and exits.
func RenderSupervisor(l Layout) string {
	r := strings.NewReplacer(
		"@BINARY@", shellQuote(l.Binary),
		"@CONFIG@", shellQuote(l.ConfigFile()),
		"@LOG@", shellQuote(l.LogFile),
		"@SUPERVISOR_PID@", shellQuote(l.SupervisorPID()),
		"@AGENT_PID@", shellQuote(l.AgentPID()),
		"@RUNDIR@", shellQuote(l.RunDir),
	)
	return r.Replace(supervisorTemplate)
}

const supervisorTemplate = `#!/bin/sh
# bosun-agent supervisor, written by the Bosun operator for machines without systemd.
set -u
mkdir -p @RUNDIR@
echo $$ > @SUPERVISOR_PID@
child=
stopping=
stop() {
  stopping=1
  if [ -n "$child" ]; then
    kill -TERM "$child" 2>/dev/null
    wait "$child" 2>/dev/null
  fi
  rm -f @AGENT_PID@ @SUPERVISOR_PID@
  exit 0
}
trap stop TERM INT HUP
delay=1
while [ -z "$stopping" ]; do
  started=$(date +%s)
  @BINARY@ agent --config @CONFIG@ >>@LOG@ 2>&1 </dev/null &
  child=$!
  echo "$child" > @AGENT_PID@
  wait "$child"
  code=$?
  child=
  [ -n "$stopping" ] && break
  if [ $(( $(date +%s) - started )) -ge 60 ]; then delay=1; fi
  echo "bosun-agent supervisor: agent exited with status $code, restarting in ${delay}s" >>@LOG@
  sleep "$delay" &
  wait $!
  delay=$(( delay * 2 )); [ "$delay" -gt 30 ] && delay=30
done
`
