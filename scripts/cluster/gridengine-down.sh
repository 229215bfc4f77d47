#!/bin/bash
# Stops the execd and qmaster gridengine-up.sh started (by their pid files, wherever the spool
# named them); deletes every job first.
set -uo pipefail
. /var/lib/gridengine/default/common/settings.sh 2>/dev/null || exit 0
qdel -u '*' '*' >/dev/null 2>&1 || true
for f in /var/spool/gridengine/execd/*/execd.pid /var/spool/gridengine/qmaster/qmaster.pid; do
  [ -f "$f" ] || continue
  p=$(cat "$f")
  kill -0 "$p" 2>/dev/null || continue
  kill "$p"
  timeout 30 bash -c "while kill -0 $p 2>/dev/null; do sleep 0.2; done" || kill -9 "$p"
done
exit 0
