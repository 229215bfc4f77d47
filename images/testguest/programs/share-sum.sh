#!/bin/sh
# The same job as share-sum.mjs, from a shell script through the sf-* wrappers.
#   sh share-sum.sh N TOTAL
N=${1:-2}; TOTAL=${2:-3000}
say() { echo "SF-JOB $*"; }
field() { echo "$2" | sed -n "s/.*\"$1\":\([0-9]*\).*/\1/p"; }

T=$(sf-request-ticket "$N") || { say "error request-ticket rc=$?"; exit 1; }
say "ticket $T"
R=$(sf-clone --json "$T") || { say "error clone rc=$?"; exit 1; }
ID=$(field vmid "$R"); M=$(field clones "$R")
if [ "$ID" -gt 0 ]; then
  sum=0; i=$ID
  while [ "$i" -le "$TOTAL" ]; do sum=$((sum + i)); i=$((i + M)); done
  say "share vmid=$ID of=$M sum=$sum"
  sf-exit || say "error exit rc=$?"
  exit 0
fi
say "parent forked clones=$M"
OUT=$(sf-join "$T"); rc=$?
say "joined rc=$rc $OUT"
