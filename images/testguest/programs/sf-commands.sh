#!/bin/sh
# A command channel for test programs in dom0 (test/testbox/67.clone-disk): dom0 writes
# "SEQ COMMAND" into this domain's data/sf-cmd; each new SEQ runs COMMAND with sh once and
# prints "SF-CMD SEQ rc=RC OUTPUT" on the console (output on one line). A clone inherits the
# last SEQ it ran from its parent, so it runs only the commands written to its own home.
echo "SF-CMD ready vmid=$(xenstore-read snowflock/vmid 2>/dev/null || echo 0)"
last=
while :; do
  c=$(xenstore-read data/sf-cmd 2>/dev/null) || c=
  if [ -n "$c" ] && [ "$c" != "$last" ]; then
    last=$c
    seq=${c%% *}
    out=$(sh -c "${c#* }" 2>&1)
    rc=$?
    echo "SF-CMD $seq rc=$rc $(echo "$out" | tr '\n' ' ')"
  fi
  sleep 0.3
done
