#!/bin/bash
# Installs the project's Xen build (Debian's 4.17 source with CONFIG_MEM_PAGING and
# CONFIG_MEM_SHARING, scripts/testbox/build-xen.sh) on a real Xen host as a GRUB entry of its
# own, and makes it the default. The nightly hardware CI needs it: memory on demand (the suite's
# 65, 70, 80, 85, 87) only runs on a hypervisor with mem_paging, and Debian's has none.
# Debian's own Xen entry stays; `--revert` makes it the default again.
#   sudo bash scripts/host/install-project-xen.sh [--revert]
#   sudo reboot
#   snowflock doctor --require xen.mem-paging      # after the reboot
set -euo pipefail
cd "$(dirname "$0")/../.."
[ "$(id -u)" = 0 ] || { echo "install-project-xen: run as root" >&2; exit 2; }
command -v update-grub >/dev/null || { echo "install-project-xen: needs Debian's GRUB (update-grub)" >&2; exit 1; }
[ -e /proc/xen ] || [ -e /sys/hypervisor/type ] || echo "install-project-xen: note: this machine does not run Xen now; Debian's xen-system-amd64 must be installed for dom0's tools" >&2

BOOT_IMAGE=/boot/xen-4.17.5-snowflock.gz
if [ "${1:-}" = --revert ]; then
  rm -f "$BOOT_IMAGE"
  update-grub
  grub-set-default 0
  echo "install-project-xen: Debian's Xen is the default again; reboot to use it"
  exit 0
fi

bash scripts/testbox/build-xen.sh
source scripts/testbox/lib.sh
# GRUB's 20_linux_xen makes an entry for every /boot/xen*.gz, loaded with multiboot2.
gzip -9 -c "$TESTBOX_DIR/xen-custom.elf" > "$BOOT_IMAGE.tmp"
mv "$BOOT_IMAGE.tmp" "$BOOT_IMAGE"
update-grub
# The entry's id is "<advanced submenu id>>xen-hypervisor-4.17.5-snowflock-<...>".
submenu=$(grep -o "submenu '[^']*Xen[^']*' \$menuentry_id_option '[^']*'" /boot/grub/grub.cfg | head -1 | sed "s/.*option '\(.*\)'/\1/")
entry=$(grep -o "\$menuentry_id_option 'xen-hypervisor-4.17.5-snowflock[^']*'" /boot/grub/grub.cfg | head -1 | sed "s/.*option '\(.*\)'/\1/")
[ -n "$submenu" ] && [ -n "$entry" ] || { echo "install-project-xen: no GRUB entry for $BOOT_IMAGE found in /boot/grub/grub.cfg" >&2; exit 1; }
grub-set-default "$submenu>$entry"
echo "install-project-xen: $BOOT_IMAGE is GRUB's default ($submenu>$entry); reboot, then check: snowflock doctor --require xen.mem-paging"
