#!/bin/bash
# Builds the test box's dom0 initramfs: busybox, Debian's Xen 4.17 tools, Node.js, this
# project (compiled dist/, its built addon, production node_modules) with its test/testbox
# suite, and the test guests (kernel + busybox and Node initramfs). Uncompressed: no gunzip under TCG.
#   build-dom0.sh OUT.cpio [--disk]
# Needs: fetch.sh done, `npm run build` done, images/testguest/build.sh done.
# --disk adds the copy-on-write disk path (docs/disks.md): qemu-storage-daemon, qemu-img,
# nbd-client, the nbd, xen-blkback and virtio_blk modules, the block-snowflock hotplug script and
# the Debian guest's initramfs (images/debian/build.sh, and fetch.sh --disk, done); the log
# says how much it added. Without it the image is as before.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
OUT=${1:?usage: build-dom0.sh OUT.cpio [--disk]}
DISK=0
[ "${2:-}" = --disk ] && DISK=1
DEBIAN_INITRD=$SNOWFLOCK_CACHE/images/debian/initrd.cpio
R=$TESTBOX_DIR/root
KVER=$(cat "$TESTBOX_DIR/kver")
KMOD=$R/lib/modules/$KVER/kernel
GUEST_INITRD=$SNOWFLOCK_CACHE/images/testguest/initrd.cpio
NODE_GUEST_INITRD=$SNOWFLOCK_CACHE/images/testguest/node-initrd.cpio
[ -f "$REPO_ROOT/build/Release/snowflock.node" ] || die "addon not built (npm ci or npm run build:native)"
[ -d "$REPO_ROOT/dist/test/testbox" ] || die "TypeScript not compiled (npm run build)"
[ -f "$GUEST_INITRD" ] || die "test guest not built (images/testguest/build.sh)"
[ -f "$NODE_GUEST_INITRD" ] || die "Node test guest not built (images/testguest/build-node.sh)"
if [ "$DISK" = 1 ]; then
  [ -x "$R/usr/bin/qemu-storage-daemon" ] && [ -x "$R/sbin/nbd-client" ] || die "disk tools not fetched (scripts/testbox/fetch.sh --disk)"
  [ -f "$DEBIAN_INITRD" ] || die "Debian guest not built (images/debian/build.sh)"
fi

D=$(mktemp -d "$TESTBOX_DIR/dom0.XXXXXX")
trap 'rm -rf "$D"' EXIT
mkdir -p "$D"/{bin,sbin,proc,sys,dev,tmp,run,root,var/run,var/lib,var/log,etc/xen,guest,lib/modules/snowflock,usr/bin,usr/sbin,usr/lib,opt}
cp /bin/busybox "$D/bin/busybox"
(cd "$D/bin" && for a in $(./busybox --list); do [ -e "$a" ] || ln -s busybox "$a"; done)
install -m755 "$REPO_ROOT/scripts/testbox/dom0-init" "$D/init"

# Xen tools and libraries, as Debian packages them.
cp -a "$R/usr/lib/xen-4.17" "$D/usr/lib/"
cp -a "$R/usr/lib/xen-common" "$D/usr/lib/" 2>/dev/null || true
cp -a "$R"/usr/bin/xenstore* "$D/usr/bin/"
cp -a "$R/etc/xen/." "$D/etc/xen/"
# Xen's vif-bridge needs bash, which dom0 here does not have: a busybox sh one instead.
install -m755 "$REPO_ROOT/scripts/testbox/vif-bridge" "$D/etc/xen/scripts/vif-bridge"
mkdir -p "$D/lib/x86_64-linux-gnu"
cp -a "$R"/usr/lib/x86_64-linux-gnu/lib{xen,yajl}*.so* "$D/lib/x86_64-linux-gnu/"

# Kernel modules: Xen's dom0 drivers, virtio-net for the multi-host network, the bridge and
# netback for guests' vifs.
for m in drivers/xen/xenfs/xenfs drivers/xen/xen-privcmd drivers/xen/xen-evtchn drivers/xen/xen-gntdev \
         drivers/xen/xen-gntalloc drivers/virtio/virtio_ring drivers/virtio/virtio drivers/virtio/virtio_pci_modern_dev \
         drivers/virtio/virtio_pci_legacy_dev drivers/virtio/virtio_pci net/core/failover drivers/net/net_failover \
         drivers/net/virtio_net net/llc/llc net/802/stp net/bridge/bridge drivers/net/xen-netback/xen-netback; do
  cp "$KMOD/$m.ko" "$D/lib/modules/snowflock/"
done

# The test guest.
cp "$TESTBOX_DIR/vmlinux" "$D/guest/vmlinux"
cp "$GUEST_INITRD" "$D/guest/initrd.cpio"
cp "$NODE_GUEST_INITRD" "$D/guest/node-initrd.cpio"

# Node.js and the project.
install -m755 "$(command -v node)" "$D/usr/bin/node"
P=$D/opt/snowflock
mkdir -p "$P/build/Release"
cp "$REPO_ROOT/package.json" "$P/"
cp -a "$REPO_ROOT/dist" "$P/"
cp "$REPO_ROOT/build/Release/snowflock.node" "$P/build/Release/"
cp -a "$REPO_ROOT/images" "$P/"
# `snowflock` on dom0's PATH, as the README writes the commands (main.js starts with #!/usr/bin/env node).
chmod 755 "$P/dist/lib/cli/main.js"
ln -s /opt/snowflock/dist/lib/cli/main.js "$D/usr/bin/snowflock"
ln -s ../../bin/busybox "$D/usr/bin/env"
# Production dependencies only: the closure npm itself reports.
(cd "$REPO_ROOT" && npm ls --omit=dev --all --parseable 2>/dev/null | tail -n +2) | while read -r dep; do
  rel=${dep#"$REPO_ROOT"/}
  mkdir -p "$P/$(dirname "$rel")"
  [ -e "$P/$rel" ] || cp -a "$dep" "$P/$rel"
done

# Shared libraries of every ELF file, resolved against the unpacked Xen libraries first.
export LD_LIBRARY_PATH=$R/usr/lib/x86_64-linux-gnu:$R/lib/x86_64-linux-gnu
copy_libs() {
  find "$D" -type f \( -perm -u+x -o -name '*.so*' -o -name '*.node' \) | while read -r f; do
    file -b "$f" | grep -q 'ELF.*dynamically' || continue
    ldd "$f" 2>/dev/null | awk '/=> \//{print $3} /^\s*\/lib64/{print $1}'
  done | sort -u | while read -r lib; do
    case "$lib" in "$R"/*) dst=${lib#"$R"} ;; *) dst=$lib ;; esac
    dst=/lib/x86_64-linux-gnu/$(basename "$dst")
    [ -e "$D$dst" ] || cp -L "$lib" "$D$dst"
  done
}
copy_libs

# The disk path, measured apart: its tools, their libraries not already here, modules, script, guest.
if [ "$DISK" = 1 ]; then
  before=$(du -sk "$D" | cut -f1)
  install -m755 "$R/usr/bin/qemu-storage-daemon" "$R/usr/bin/qemu-img" "$D/usr/bin/"
  install -m755 "$R/sbin/nbd-client" "$D/usr/sbin/"
  for m in drivers/block/nbd drivers/block/xen-blkback/xen-blkback drivers/block/virtio_blk; do
    cp "$KMOD/$m.ko" "$D/lib/modules/snowflock/"
  done
  install -m755 "$REPO_ROOT/scripts/xen/block-snowflock" "$D/etc/xen/scripts/block-snowflock"
  cp "$DEBIAN_INITRD" "$D/guest/debian-initrd.cpio"
  copy_libs
  after=$(du -sk "$D" | cut -f1)
  log "disk path: +$(( (after - before + 1023) / 1024 )) MiB (qemu-storage-daemon, qemu-img, nbd-client, their libraries, nbd/xen-blkback/virtio_blk, block-snowflock, the Debian guest's $(( $(du -k "$DEBIAN_INITRD" | cut -f1) / 1024 )) MiB initramfs)"
fi
mkdir -p "$D/lib64"
cp -L /lib64/ld-linux-x86-64.so.2 "$D/lib64/"
# glibc dlopen()s libgcc_s for pthread_cancel (xl aborts without it); ldd cannot see that.
cp -L /lib/x86_64-linux-gnu/libgcc_s.so.1 "$D/lib/x86_64-linux-gnu/"
ln -s ../../lib/x86_64-linux-gnu "$D/usr/lib/x86_64-linux-gnu"

CHECK="/usr/lib/xen-4.17/bin/xl /usr/lib/xen-4.17/bin/xenstored /usr/bin/node /opt/snowflock/build/Release/snowflock.node"
[ "$DISK" = 1 ] && CHECK="$CHECK /usr/bin/qemu-storage-daemon /usr/bin/qemu-img /usr/sbin/nbd-client"
# shellcheck disable=SC2086 # a list of paths without spaces
missing=$(for f in $CHECK; do
  LD_LIBRARY_PATH= chroot "$D" /lib64/ld-linux-x86-64.so.2 --list "$f" 2>&1 | grep 'not found' || true; done)
[ -z "$missing" ] || die "dom0 image misses libraries: $missing"
(cd "$D" && find . | cpio -o -H newc --quiet) > "$OUT.new"
mv "$OUT.new" "$OUT"
log "dom0 initramfs: $OUT ($(du -m "$OUT" | cut -f1) MiB)"
