#!/bin/bash
# Builds the test guest's initramfs: static busybox + the snowflock guest agent as /init.
# The guest kernel is Debian's (the same vmlinux the test box boots as dom0), so a guest
# here is a PVH or PV domain with a ~1 MB root filesystem that starts in seconds.
# Output: $SNOWFLOCK_CACHE/images/testguest/initrd.cpio  (uncompressed: no gunzip under TCG)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
SNOWFLOCK_CACHE=${SNOWFLOCK_CACHE:-$HOME/.cache/snowflock}
OUT_DIR=$SNOWFLOCK_CACHE/images/testguest
BUSYBOX=${BUSYBOX:-/bin/busybox}
file -L "$BUSYBOX" | grep -q 'statically linked' || { echo "need a static busybox at $BUSYBOX (apt-get install busybox-static)" >&2; exit 1; }

STAGE=$(mktemp -d)
trap 'rm -rf "$STAGE"' EXIT
mkdir -p "$STAGE"/{bin,proc,sys,dev,tmp}
cp "$BUSYBOX" "$STAGE/bin/busybox"
for applet in sh mount cat echo cut sed sleep poweroff; do ln -s busybox "$STAGE/bin/$applet"; done
install -m755 "$HERE/agent.sh" "$STAGE/init"
mkdir -p "$OUT_DIR"
(cd "$STAGE" && find . | cpio -o -H newc --quiet) > "$OUT_DIR/initrd.cpio.new"
mv "$OUT_DIR/initrd.cpio.new" "$OUT_DIR/initrd.cpio"
echo "$OUT_DIR/initrd.cpio"
