#!/bin/bash
# Builds the test guest's initramfs: static busybox + the snowflock guest agent as /init.
# The guest kernel is Debian's (the same vmlinux the test box boots as dom0), so a guest
# here is a PVH or PV domain with a ~1 MB root filesystem that starts in seconds.
# Output: $SNOWFLOCK_CACHE/images/testguest/initrd.cpio  (uncompressed: no gunzip under TCG)
# Contents: static busybox, the agent as /init, xenstore-read/-write/-rm with their libraries,
# and the static test programs sf-memtest (memtest.c) and sf-freepages (freepages.c).
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

# The guest's test programs: static, so they need nothing from the image but /bin/sh (popen).
command -v gcc >/dev/null || { echo "need gcc to build sf-memtest and sf-freepages (apt-get install gcc libc6-dev)" >&2; exit 1; }
for prog in memtest:sf-memtest freepages:sf-freepages; do
  src=$HERE/${prog%%:*}.c; bin=$STAGE/bin/${prog#*:}
  gcc -O2 -static -Wall -o "$bin" "$src" || { echo "failed to compile $src (a static build needs libc6-dev's libc.a)" >&2; exit 1; }
  chmod 755 "$bin"
done

# xenstore-read, so the agent can learn its clone id (snowflock/vmid) from xenstore.
# Taken from the unpacked Debian Xen tools the test box fetched (or this host's own).
XEN_ROOT=$SNOWFLOCK_CACHE/testbox/root
XS=$XEN_ROOT/usr/bin/xenstore
[ -x "$XS" ] || XS=$(command -v xenstore || true)
[ -n "$XS" ] && [ -x "$XS" ] || { echo "no xenstore client: run scripts/testbox/fetch.sh first" >&2; exit 1; }
cp "$XS" "$STAGE/bin/xenstore"
# xenstore-write/-rm for sf-freepages --xenstore. The client picks its command from its name.
for cmd in read write rm; do ln -s xenstore "$STAGE/bin/xenstore-$cmd"; done
mkdir -p "$STAGE/lib/x86_64-linux-gnu" "$STAGE/lib64"
LD_LIBRARY_PATH=$XEN_ROOT/usr/lib/x86_64-linux-gnu ldd "$XS" | awk '/=> \//{print $3}' | while read -r lib; do
  cp -L "$lib" "$STAGE/lib/x86_64-linux-gnu/"
done
cp -L /lib64/ld-linux-x86-64.so.2 "$STAGE/lib64/"
mkdir -p "$OUT_DIR"
(cd "$STAGE" && find . | cpio -o -H newc --quiet) > "$OUT_DIR/initrd.cpio.new"
mv "$OUT_DIR/initrd.cpio.new" "$OUT_DIR/initrd.cpio"
echo "$OUT_DIR/initrd.cpio"
