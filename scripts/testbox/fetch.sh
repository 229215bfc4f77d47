#!/bin/bash
# Downloads Debian 12's Xen 4.17 hypervisor, tools and dom0 kernel and unpacks them into the
# cache without installing anything into the host's /boot. Produces:
#   $TESTBOX_DIR/xen-stock.elf   Debian's hypervisor (QEMU's multiboot loader needs ELF, not .gz)
#   $TESTBOX_DIR/vmlinux         uncompressed dom0/domU kernel (xl create 8.7 s -> 1 s under TCG)
#   $TESTBOX_DIR/root/           unpacked packages (Xen tools, libraries, kernel modules)
set -euo pipefail
source "$(dirname "$0")/lib.sh"

ensure_packages qemu-system-x86 busybox-static cpio file xz-utils python3 iproute2 bridge-utils
STAMP=$TESTBOX_DIR/fetch.stamp
[ -f "$STAMP" ] && [ -f "$TESTBOX_DIR/vmlinux" ] && [ -f "$TESTBOX_DIR/xen-stock.elf" ] && { log "reusing the cached Debian Xen and kernel packages ($(cat "$STAMP"))"; exit 0; }

DEBS=$TESTBOX_DIR/debs
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
