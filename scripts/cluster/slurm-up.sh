#!/bin/bash
# Starts a private Slurm cluster on this host: munged, slurmctld and NODES slurmd (n1..nN, Slurm's
# multiple-slurmd mode), with every file (config, key, sockets, state, logs, pids) under DIR and
# TCP ports that nothing else is listening on. Used by the host tests of lib/cluster/slurm.
#
#   scripts/cluster/slurm-up.sh DIR [NODES=4]
#
# On success prints SLURM_CONF=DIR/slurm.conf (the only thing Slurm's commands need) and leaves it
# in DIR/env too. On any failure it stops what it started (slurm-down.sh) and shows the logs' tails.
# Environment: SF_SLURM_PORT_BASE to choose ports (default: a free range picked at random),
# SF_SLURM_CPUS / SF_SLURM_MEMORY_MIB for each node's size (default 2 and 4096).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
DIR=${1:?usage: slurm-up.sh DIR [NODES]}
NODES=${2:-4}
CPUS=${SF_SLURM_CPUS:-2}
MEMORY_MIB=${SF_SLURM_MEMORY_MIB:-4096}
[ "$(id -u)" = 0 ] || { echo "slurm-up: must run as root (the daemons run as root, munged as user munge)" >&2; exit 1; }
[[ "$NODES" =~ ^[1-9][0-9]*$ ]] || { echo "slurm-up: NODES must be a positive integer, got '$NODES'" >&2; exit 1; }

"$HERE/slurm-install.sh"

mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
# munged runs as user munge and must be able to reach its files below DIR (mkdtemp makes DIR 0700).
chmod 755 "$DIR"
mkdir -p "$DIR"/{run,log,state}
for i in $(seq 1 "$NODES"); do mkdir -p "$DIR/spool/n$i"; done

on_failure() {
  echo "slurm-up: failed; stopping what was started. Log tails:" >&2
  for f in "$DIR"/log/*.log "$DIR"/munge/munged.log; do [ -f "$f" ] && { echo "--- $f" >&2; tail -n 15 "$f" >&2; }; done
  "$HERE/slurm-down.sh" "$DIR" >&2 || true
}
trap on_failure ERR

# A port is free when nothing accepts a connection on it (bash's /dev/tcp, no extra tools).
port_free() { ! timeout 1 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null; }
range_free() { local p; for p in $(seq "$1" $(($1 + NODES + 1))); do port_free "$p" || return 1; done; }
if [ -n "${SF_SLURM_PORT_BASE:-}" ]; then
  BASE=$SF_SLURM_PORT_BASE
  range_free "$BASE" || { echo "slurm-up: ports $BASE..$((BASE + NODES + 1)) are not all free" >&2; false; }
else
  # Below Linux's ephemeral range (32768+), so outgoing connections cannot take them meanwhile.
  BASE=
  for _ in $(seq 1 20); do b=$((20000 + RANDOM % 12000)); range_free "$b" && { BASE=$b; break; }; done
  [ -n "$BASE" ] || { echo "slurm-up: found no free range of $((NODES + 2)) ports in 20 tries" >&2; false; }
fi
CTLD_PORT=$BASE; SLURMD_PORT=$((BASE + 1)); FIRST_NODE_PORT=$((BASE + 2))

# A private munge key: the cluster trusts only daemons and commands started with this config.
install -d -o munge -g munge -m 700 "$DIR/munge"
# munged wants its socket's directory reachable by all and writable by none but itself.
install -d -o munge -g munge -m 755 "$DIR/munge-socket"
dd if=/dev/urandom of="$DIR/munge/munge.key" bs=1024 count=1 status=none
chown munge:munge "$DIR/munge/munge.key"; chmod 400 "$DIR/munge/munge.key"
MUNGE_SOCKET=$DIR/munge-socket/munge.socket

node_lines() {
  local i
  for i in $(seq 1 "$NODES"); do
    echo "NodeName=n$i NodeHostname=localhost NodeAddr=127.0.0.1 Port=$((FIRST_NODE_PORT + i - 1)) CPUs=$CPUS RealMemory=$MEMORY_MIB State=UNKNOWN"
  done
}
cat > "$DIR/slurm.conf" <<CONF
# Written by scripts/cluster/slurm-up.sh: a private test cluster, everything under $DIR.
ClusterName=sftest
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCKET
CredType=cred/munge
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool/%n
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd-%n.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd-%n.log
SlurmctldDebug=info
SlurmdDebug=info
# Nodes are as big as this file says, not as the host is: four "nodes" share one machine.
SlurmdParameters=config_overrides
# No cgroups: the daemons share one host and the jobs are only placeholders for clone slots.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=1
# CPUs and memory are consumable, so a clone's vCPUs and MiB are what Slurm accounts for.
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
ReturnToService=2
SlurmdTimeout=30
InactiveLimit=0
KillWait=2
MinJobAge=30
$(node_lines)
PartitionName=main Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
CONF
export SLURM_CONF=$DIR/slurm.conf
echo "SLURM_CONF=$SLURM_CONF" > "$DIR/env"

runuser -u munge -- /usr/sbin/munged --socket="$MUNGE_SOCKET" --key-file="$DIR/munge/munge.key" \
  --pid-file="$DIR/munge/munged.pid" --log-file="$DIR/munge/munged.log" --seed-file="$DIR/munge/munged.seed"
timeout 10 bash -c "until [ -S '$MUNGE_SOCKET' ]; do sleep 0.05; done"

# Both daemonize and write their pid files; -c starts the controller from a clean state.
timeout 30 /usr/sbin/slurmctld -c -f "$SLURM_CONF"
for i in $(seq 1 "$NODES"); do timeout 30 /usr/sbin/slurmd -f "$SLURM_CONF" -N "n$i"; done

# Every node idle, within 60 s; a node that registered and was drained will not become idle.
for _ in $(seq 1 600); do
  [ "$(sinfo -h -N -t idle -o %N 2>/dev/null | sort -u | wc -l)" -ge "$NODES" ] && break
  drained=$(sinfo -h -N -t drain -o '%N: %E' 2>/dev/null | sort -u)
  [ -z "$drained" ] || { echo "slurm-up: node(s) drained: $drained" >&2; false; }
  sleep 0.1
done
[ "$(sinfo -h -N -t idle -o %N 2>/dev/null | sort -u | wc -l)" -ge "$NODES" ] || { echo "slurm-up: nodes not idle after 60 s" >&2; false; }
trap - ERR
echo "slurm-up: $NODES node(s) idle, controller on port $CTLD_PORT" >&2
echo "SLURM_CONF=$SLURM_CONF"
