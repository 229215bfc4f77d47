#!/bin/bash
# Stops the private Slurm cluster that slurm-up.sh started in DIR: exactly the daemons named by the
# pid files under DIR, with SIGTERM, then SIGKILL for any still there after 10 s. Leaves the logs;
# removing DIR is the caller's business. Safe to run twice or on a half-started cluster.
#
#   scripts/cluster/slurm-down.sh DIR
set -uo pipefail
DIR=${1:?usage: slurm-down.sh DIR}

# stop_all NAME PIDFILE...: stops those daemons together (each takes ~2 s to shut down). A pid
# whose process is not NAME is left alone: the daemon died and the number now belongs to another.
stop_all() {
  local name=$1 f pid pids=()
  shift
  for f in "$@"; do
    [ -f "$f" ] || continue
    pid=$(cat "$f" 2>/dev/null)
    if [[ "$pid" =~ ^[0-9]+$ ]] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$name" ]; then kill "$pid" && pids+=("$pid"); fi
    rm -f "$f"
  done
  [ ${#pids[@]} -eq 0 ] && return
  local end=$((SECONDS + 10)) alive
  while :; do
    alive=()
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive+=("$pid"); done
    [ ${#alive[@]} -eq 0 ] && return
    [ $SECONDS -ge $end ] && break
    sleep 0.1
  done
  echo "slurm-down: ${alive[*]} ignored SIGTERM for 10 s; sending SIGKILL" >&2
  kill -9 "${alive[@]}" 2>/dev/null
}

# Node daemons first, then the controller, then munge, which both need until they are gone.
stop_all slurmd "$DIR"/run/slurmd-*.pid
stop_all slurmctld "$DIR"/run/slurmctld.pid
stop_all munged "$DIR"/munge/munged.pid
