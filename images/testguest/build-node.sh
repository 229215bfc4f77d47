#!/bin/bash
# Builds the Node test guest: the busybox test guest (build.sh) plus Node.js, the snowflock guest
# library (compiled dist/lib with ffi-rs), libxenvchan and the two modules a vchan client needs
# (xen-evtchn, xen-gntdev), xen-netfront, the sf-* shell wrappers and the guest programs in programs/.
# Linux unpacks concatenated cpio archives in order, so the image is build.sh's initramfs with
# a second archive appended. Uncompressed (no gunzip under TCG): about 110 MB.
# Output: $SNOWFLOCK_CACHE/images/testguest/node-initrd.cpio
# Needs: build.sh done, `npm run build` done, scripts/testbox/fetch.sh done (kernel modules, Xen libs).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
SNOWFLOCK_CACHE=${SNOWFLOCK_CACHE:-$HOME/.cache/snowflock}
OUT_DIR=$SNOWFLOCK_CACHE/images/testguest
BASE=$OUT_DIR/initrd.cpio
XEN_ROOT=$SNOWFLOCK_CACHE/testbox/root
die() { echo "build-node.sh: $*" >&2; exit 1; }
[ -f "$BASE" ] || die "the base test guest is not built: run images/testguest/build.sh"
[ -f "$REPO/dist/lib/api/index.js" ] || die "the guest library is not compiled: run npm run build"
[ -f "$SNOWFLOCK_CACHE/testbox/kver" ] || die "no guest kernel modules: run scripts/testbox/fetch.sh"
KVER=$(cat "$SNOWFLOCK_CACHE/testbox/kver")

STAGE=$(mktemp -d)
trap 'rm -rf "$STAGE"' EXIT
mkdir -p "$STAGE"/{bin,usr/bin,lib/x86_64-linux-gnu,lib/modules,opt/snowflock/node_modules}

# What a vchan client needs (/dev/xen/xenbus is built into Debian's kernel), and netfront for a vif.
for m in xen/xen-evtchn xen/xen-gntdev net/xen-netfront; do
  cp "$XEN_ROOT/lib/modules/$KVER/kernel/drivers/$m.ko" "$STAGE/lib/modules/" || die "module $m.ko missing from the fetched kernel"
done
ln -s busybox "$STAGE/bin/insmod"
ln -s busybox "$STAGE/bin/ip" # the agent's sf.ip, and the guest library moving a clone's address
ln -s busybox "$STAGE/bin/arp" # the guest library pinning the parent's address in a clone (busybox ip has no neigh replace)
ln -s ../../bin/busybox "$STAGE/usr/bin/env" # cli.js starts with #!/usr/bin/env node

# Node and the guest library (guest-library.sh, shared with the Debian guest), the sf-* wrappers.
install -m755 "$(command -v node)" "$STAGE/usr/bin/node"
source "$HERE/guest-library.sh"
install_guest_library "$STAGE" "$REPO" || die "cannot install the guest library"
P=$STAGE/opt/snowflock

# Shared libraries of node, of ffi-rs's prebuilt addon and libxenvchan's closure, except what
# the base image already has.
libs() {
  LD_LIBRARY_PATH=$XEN_ROOT/usr/lib/x86_64-linux-gnu ldd "$@" | awk '/=> \//{print $3}'
}
VCHAN=$XEN_ROOT/usr/lib/x86_64-linux-gnu/libxenvchan.so.4.17
[ -f "$VCHAN" ] || die "libxenvchan.so.4.17 missing from the fetched Xen tools"
{ echo "$VCHAN"; libs /usr/bin/node "$P"/node_modules/@yuuang/*/*.node "$VCHAN"; } | sort -u | while read -r lib; do
  cp -L "$lib" "$STAGE/lib/x86_64-linux-gnu/"
done
# glibc dlopen()s libgcc_s for pthread_cancel; ldd cannot see that.
cp -L /lib/x86_64-linux-gnu/libgcc_s.so.1 "$STAGE/lib/x86_64-linux-gnu/"
# Node finds /usr/lib through the base image's /lib.
(cd "$STAGE" && find . -mindepth 1 | cpio -o -H newc --quiet) > "$OUT_DIR/node-layer.cpio"
cat "$BASE" "$OUT_DIR/node-layer.cpio" > "$OUT_DIR/node-initrd.cpio.new"
rm -f "$OUT_DIR/node-layer.cpio"
mv "$OUT_DIR/node-initrd.cpio.new" "$OUT_DIR/node-initrd.cpio"
echo "$OUT_DIR/node-initrd.cpio"
