#!/bin/bash
# Builds the test guest's initramfs: static busybox + the snowflock guest agent as /init.
# The guest kernel is Debian's (the same vmlinux the test box boots as dom0), so a guest
# here is a PVH or PV domain with a ~1 MB root filesystem that starts in seconds.
# Output: $SNOWFLOCK_CACHE/images/testguest/initrd.cpio  (uncompressed: no gunzip under TCG)
# Contents: static busybox, the agent as /init, and xenstore-read with its libraries.
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

# xenstore-read, so the agent can learn its clone id (snowflock/vmid) from xenstore.
# Taken from the unpacked Debian Xen tools the test box fetched (or this host's own).
XEN_ROOT=$SNOWFLOCK_CACHE/testbox/root
XS=$XEN_ROOT/usr/bin/xenstore
[ -x "$XS" ] || XS=$(command -v xenstore || true)
[ -n "$XS" ] && [ -x "$XS" ] || { echo "no xenstore client: run scripts/testbox/fetch.sh first" >&2; exit 1; }
cp "$XS" "$STAGE/bin/xenstore"
ln -s xenstore "$STAGE/bin/xenstore-read"
mkdir -p "$STAGE/lib/x86_64-linux-gnu" "$STAGE/lib64"
LD_LIBRARY_PATH=$XEN_ROOT/usr/lib/x86_64-linux-gnu ldd "$XS" | awk '/=> \//{print $3}' | while read -r lib; do
  cp -L "$lib" "$STAGE/lib/x86_64-linux-gnu/"
done
cp -L /lib64/ld-linux-x86-64.so.2 "$STAGE/lib64/"
mkdir -p "$OUT_DIR"
(cd "$STAGE" && find . | cpio -o -H newc --quiet) > "$OUT_DIR/initrd.cpio.new"
mv "$OUT_DIR/initrd.cpio.new" "$OUT_DIR/initrd.cpio"
echo "$OUT_DIR/initrd.cpio"
