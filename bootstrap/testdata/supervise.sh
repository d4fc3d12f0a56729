#!/bin/sh
# bosun-agent supervisor, written by the Bosun operator for machines without systemd.
set -u
mkdir -p '/run/bosun'
echo $$ > '/run/bosun/supervisor.pid'
child=
stopping=
stop() {
  stopping=1
  if [ -n "$child" ]; then
    kill -TERM "$child" 2>/dev/null
    wait "$child" 2>/dev/null
  fi
  rm -f '/run/bosun/agent.pid' '/run/bosun/supervisor.pid'
  exit 0
}
trap stop TERM INT HUP
delay=1
while [ -z "$stopping" ]; do
  started=$(date +%s)
  '/usr/local/bin/bosun' agent --config '/var/lib/bosun/agent/agent.yaml' >>'/var/log/bosun-agent.log' 2>&1 </dev/null &
  child=$!
  echo "$child" > '/run/bosun/agent.pid'
  wait "$child"
  code=$?
  child=
  [ -n "$stopping" ] && break
  if [ $(( $(date +%s) - started )) -ge 60 ]; then delay=1; fi
  echo "bosun-agent supervisor: agent exited with status $code, restarting in ${delay}s" >>'/var/log/bosun-agent.log'
  sleep "$delay" &
  wait $!
  delay=$(( delay * 2 )); [ "$delay" -gt 30 ] && delay=30
done
