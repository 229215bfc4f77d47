#!/bin/bash
# Starts Debian's Grid Engine 8.1.9 on this host for the plug-in's host tests: qmaster and one
# execd, queue all.q with SLOTS slots on this host, root may submit, the scheduler runs every
# second. Grid Engine is system-wide (spool in /var/spool/gridengine): one lab per machine.
#   gridengine-up.sh SLOTS
# Idempotent: daemons already running are kept, the queue is set to SLOTS again.
set -euo pipefail
SLOTS=${1:?usage: gridengine-up.sh SLOTS}
HERE=$(cd "$(dirname "$0")" && pwd)
"$HERE/gridengine-install.sh"
. /var/lib/gridengine/default/common/settings.sh
H=$(hostname)
W=$(mktemp -d); trap 'rm -rf "$W"' EXIT
die() { echo "gridengine-up: $*" >&2; exit 1; }

# Debian's postinst leaves act_qmaster empty without a debconf answer. commlib compares the name
# a client's address resolves to with its host name: every name of 127.0.0.1 is this host.
echo "$H" > "$SGE_ROOT/$SGE_CELL/common/act_qmaster"
aliases=$(getent hosts 127.0.0.1 | cut -d' ' -f2- | tr -s ' \t' '\n' | grep -vx "$H" | sort -u | tr '\n' ' ')
echo "$H localhost $aliases" > "$SGE_ROOT/$SGE_CELL/common/host_aliases"

pgrep -x sge_qmaster >/dev/null || /usr/sbin/sge_qmaster
timeout 60 bash -c 'until qstat >/dev/null 2>&1; do sleep 0.2; done' || die "qmaster does not answer"

qconf -as "$H" >/dev/null 2>&1 || true
printf 'hostname %s\nload_scaling NONE\ncomplex_values NONE\nuser_lists NONE\nxuser_lists NONE\nprojects NONE\nxprojects NONE\nusage_scaling NONE\nreport_variables NONE\n' "$H" > "$W/exechost"
qconf -Ae "$W/exechost" >/dev/null 2>&1 || qconf -Me "$W/exechost" >/dev/null
printf 'group_name @allhosts\nhostlist %s\n' "$H" > "$W/allhosts"
qconf -Ahgrp "$W/allhosts" >/dev/null 2>&1 || qconf -Mhgrp "$W/allhosts" >/dev/null
qconf -sq all.q > "$W/q" 2>/dev/null || qconf -sq > "$W/q"
sed -i -e 's/^qname .*/qname all.q/' -e 's/^hostlist .*/hostlist @allhosts/' -e "s/^slots .*/slots $SLOTS/" \
  -e 's/^pe_list .*/pe_list NONE/' -e 's/^ckpt_list .*/ckpt_list NONE/' -e 's|^shell .*|shell /bin/sh|' \
  -e 's/^load_thresholds .*/load_thresholds NONE/' "$W/q"
if qconf -sq all.q >/dev/null 2>&1; then qconf -Mq "$W/q" >/dev/null; else qconf -Aq "$W/q" >/dev/null; fi

# Root submits in the tests (default min_uid/min_gid 1000 refuse it); schedule every second.
mkdir -p "$W/cfg"; qconf -sconf global | sed -e 's/^min_uid .*/min_uid 0/' -e 's/^min_gid .*/min_gid 0/' > "$W/cfg/global"
(cd "$W/cfg" && qconf -Mconf global >/dev/null)
qconf -ssconf | sed -e 's/^schedule_interval .*/schedule_interval 0:0:1/' -e 's/^flush_submit_sec .*/flush_submit_sec 1/' \
  -e 's/^flush_finish_sec .*/flush_finish_sec 1/' > "$W/sched"
qconf -Msconf "$W/sched" >/dev/null

pgrep -x sge_execd >/dev/null || /usr/sbin/sge_execd
# Up when the queue instance has no u(nknown) state. (No load thresholds: a loaded test machine
# would put the queue in alarm, and alarm stops scheduling.)
timeout 60 bash -c "until qstat -f 2>/dev/null | grep -q 'all.q@' && ! qstat -f | grep 'all.q@' | grep -qE ' a?u\$| au '; do sleep 0.2; done" \
  || die "execd did not come up: $(qstat -f 2>&1 | tail -3)"
echo "gridengine-up: qmaster and execd on $H, all.q with $SLOTS slots"
