#!/bin/bash
# Downloads Debian 12's Xen 4.17 hypervisor, tools and dom0 kernel and unpacks them into the
# cache without installing anything into the host's /boot. Produces:
#   $TESTBOX_DIR/xen-stock.elf   Debian's hypervisor (QEMU's multiboot loader needs ELF, not .gz)
#   $TESTBOX_DIR/vmlinux         uncompressed dom0/domU kernel (xl create 8.7 s -> 1 s under TCG)
#   $TESTBOX_DIR/root/           unpacked packages (Xen tools, libraries, kernel modules)
# With --disk, also what dom0 needs for copy-on-write disks (docs/disks.md): qemu-storage-daemon
# (qemu-system-common), qemu-img (qemu-utils) and nbd-client (its package puts it in /sbin) with
# its netlink libraries.
#   fetch.sh [--disk]
set -euo pipefail
source "$(dirname "$0")/lib.sh"

ensure_packages qemu-system-x86 busybox-static cpio file xz-utils python3 iproute2 bridge-utils
STAMP=$TESTBOX_DIR/fetch.stamp
DEBS=$TESTBOX_DIR/debs
DISK_PACKAGES="qemu-system-common qemu-utils nbd-client libnl-3-200 libnl-genl-3-200"

# The disk path's tools, unpacked next to the Xen tools (same Debian release as the host's QEMU,
# whose shared libraries build-dom0.sh copies).
fetch_disk_tools() {
  [ -x "$TESTBOX_DIR/root/usr/bin/qemu-storage-daemon" ] && [ -x "$TESTBOX_DIR/root/sbin/nbd-client" ] && [ -x "$TESTBOX_DIR/root/usr/bin/qemu-img" ] && return 0
  log "downloading the disk path's packages ($DISK_PACKAGES)"
  mkdir -p "$DEBS/disk"
  # shellcheck disable=SC2086 # a list of package names
  (cd "$DEBS/disk" && apt-get download -q $DISK_PACKAGES >/dev/null)
  for d in "$DEBS"/disk/*.deb; do dpkg -x "$d" "$TESTBOX_DIR/root"; done
}
WANT_DISK=0
[ "${1:-}" = --disk ] && WANT_DISK=1

if [ -f "$STAMP" ] && [ -f "$TESTBOX_DIR/vmlinux" ] && [ -f "$TESTBOX_DIR/xen-stock.elf" ]; then
  log "reusing the cached Debian Xen and kernel packages ($(cat "$STAMP"))"
  [ "$WANT_DISK" = 1 ] && fetch_disk_tools
  exit 0
fi

mkdir -p "$DEBS"
KVER=$(apt-cache depends linux-image-amd64 | sed -n 's/.*Depends: linux-image-\(.*\)$/\1/p' | head -1)
[ -n "$KVER" ] || die "cannot resolve the linux-image-amd64 kernel version (apt-get update?)"
log "downloading Debian's Xen 4.17 and kernel $KVER packages"
(cd "$DEBS" && apt-get download -q \
  xen-hypervisor-4.17-amd64 xen-utils-4.17 xen-utils-common xenstore-utils \
  libxenmisc4.17 libxenstore4 libxentoolcore1 libxentoollog1 libxenevtchn1 \
  libxenforeignmemory1 libxengnttab1 libxencall1 libxendevicemodel1 libxenhypfs1 \
  libyajl2 "linux-image-$KVER" >/dev/null)
rm -rf "$TESTBOX_DIR/root" && mkdir -p "$TESTBOX_DIR/root"
for d in "$DEBS"/*.deb; do dpkg -x "$d" "$TESTBOX_DIR/root"; done
gunzip -c "$TESTBOX_DIR"/root/boot/xen-4.17-amd64.gz > "$TESTBOX_DIR/xen-stock.elf"
# The bzImage carries an xz payload; the ELF inside boots faster as dom0 and as a guest.
python3 - "$TESTBOX_DIR/root/boot/vmlinuz-$KVER" "$TESTBOX_DIR/vmlinux" <<'PY'
import lzma, sys
data = open(sys.argv[1], 'rb').read()
start = data.find(b'\xfd7zXZ\x00')
if start < 0: sys.exit('no xz payload in ' + sys.argv[1])
open(sys.argv[2], 'wb').write(lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(data[start:]))
PY
echo "$KVER" > "$TESTBOX_DIR/kver"
echo "kernel=$KVER xen=$(dpkg-deb -f "$DEBS"/xen-hypervisor-4.17-amd64_*.deb Version)" > "$STAMP"
log "fetched: $(cat "$STAMP")"
[ "$WANT_DISK" = 1 ] && fetch_disk_tools
exit 0
