#!/bin/bash
# Builds the project's own Xen hypervisor: Debian's Xen 4.17 source package with
# CONFIG_UNSUPPORTED, CONFIG_MEM_SHARING and CONFIG_MEM_PAGING on top of Debian's own
# config (memtap needs mem_paging; Debian ships it off). Only the hypervisor is rebuilt:
# Debian's 4.17.7 tools speak the same domctl/sysctl interface (0x15) as this 4.17.5 build.
# Output: $TESTBOX_DIR/xen-custom.elf (the multiboot ELF QEMU boots; also what a real host's
# GRUB would load). Cached: a second run does nothing.
#   XEN_PATCH=file  apply a patch to the hypervisor before building (experiments)
set -euo pipefail
source "$(dirname "$0")/lib.sh"

OUT=$TESTBOX_DIR/xen-custom.elf
[ -f "$OUT" ] && [ -z "${XEN_PATCH:-}" ] && { log "reusing the cached project Xen (MEM_PAGING, MEM_SHARING): $OUT"; exit 0; }
[ -f "$TESTBOX_DIR/root/boot/xen-4.17-amd64.config" ] || "$(dirname "$0")/fetch.sh"
ensure_packages build-essential bison flex python3 dpkg-dev

SRC=$TESTBOX_DIR/xen-src
mkdir -p "$SRC"
cd "$SRC"
if ls "xen_${XEN_SOURCE_VERSION}.dsc" >/dev/null 2>&1; then
  log "reusing the cached Xen source $XEN_SOURCE_VERSION"
else
  # A deb-src entry for the mirror apt already uses, only for this download.
  MIRROR=$(grep -h '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}' | grep -v security | head -1 || true)
  [ -n "$MIRROR" ] || MIRROR=$(awk '$1=="deb" && $2 !~ /security/ {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
  [ -n "$MIRROR" ] || die "cannot find the Debian mirror apt uses"
  LIST=/etc/apt/sources.list.d/snowflock-xen-src.sources
  trap 'rm -f "$LIST"; apt-get update -qq >/dev/null 2>&1 || true' EXIT
  printf 'Types: deb-src\nURIs: %s\nSuites: bookworm\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' "$MIRROR" > "$LIST"
  log "downloading Xen source $XEN_SOURCE_VERSION from $MIRROR"
  apt-get update -qq >/dev/null
  apt-get source --download-only -q "xen=$XEN_SOURCE_VERSION" >/dev/null
fi
rm -rf tree
dpkg-source -q -x "xen_${XEN_SOURCE_VERSION}.dsc" tree >/dev/null
cd tree
[ -n "${XEN_PATCH:-}" ] && patch -p1 --forward < "$XEN_PATCH"
cp "$TESTBOX_DIR/root/boot/xen-4.17-amd64.config" xen/.config
sed -i 's/^# CONFIG_UNSUPPORTED is not set/CONFIG_UNSUPPORTED=y/' xen/.config
# UNSUPPORTED exposes TBOOT with default y; keep it off as Debian does.
printf 'CONFIG_MEM_SHARING=y\nCONFIG_MEM_PAGING=y\n# CONFIG_TBOOT is not set\n' >> xen/.config
make -s -C xen olddefconfig >/dev/null
for opt in UNSUPPORTED MEM_SHARING MEM_PAGING; do
  grep -q "^CONFIG_$opt=y" xen/.config || die "CONFIG_$opt did not stick in xen/.config"
done
log "building the project Xen with MEM_PAGING and MEM_SHARING (about 2 minutes on 2 cores)"
make -s -C xen -j"$(nproc)" >build.log 2>&1 || { tail -30 build.log; die "hypervisor build failed"; }
cp xen/xen "$OUT.new" && mv "$OUT.new" "$OUT"
cp xen/.config "$TESTBOX_DIR/xen-custom.config"
cd .. && rm -rf tree
log "custom Xen built: $OUT"
