#!/bin/bash
# Builds the snowflock Debian guest: a Debian 12 root filesystem made from Debian's packages by
# mmdebstrap (variant apt: Essential + apt; plus packages.txt) with Node, the guest library and
# its agent, as a sparse ext4 image for xvda (mkfs.ext4 -d: no loop mount), and a small initramfs (busybox and
# the modules of modules.txt from the Debian kernel the test box caches) that mounts it and
# starts sf-init. Boots PVH under Xen with the test box's kernel: README.md here.
# Output, in $SNOWFLOCK_CACHE/images/debian/ (default ~/.cache/snowflock):
#   xvda.ext4           the root filesystem image (sparse; SNOWFLOCK_DEBIAN_IMAGE_MIB, default 1024)
#   initrd.cpio         the initramfs (uncompressed: no gunzip under TCG)
#   base-KEY.tar.zst    mmdebstrap's output, the slow step (minutes), kept compressed
#   guest.cfg           an xl configuration that boots them on this host
# Every step is keyed by a hash of its inputs (the *.key file beside its output): a second run
# with the same inputs rebuilds nothing. The base's key is the mmdebstrap command and the package
# list; a Debian point release does not change it (delete base-*.tar.zst to pick one up).
# Needs: root, scripts/testbox/fetch.sh done (kernel and modules), dist/ compiled (the guest
# library), Debian's apt mirror (SNOWFLOCK_DEBIAN_MIRROR, SNOWFLOCK_DEBIAN_SECURITY_MIRROR).
# SNOWFLOCK_DEBIAN_PACKAGES names another package list (default packages.txt here).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
source "$HERE/../../scripts/testbox/lib.sh"
OUT_DIR=$SNOWFLOCK_CACHE/images/debian
SUITE=bookworm
MIRROR=${SNOWFLOCK_DEBIAN_MIRROR:-http://deb.debian.org/debian}
SECURITY_MIRROR=${SNOWFLOCK_DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
IMAGE_MIB=${SNOWFLOCK_DEBIAN_IMAGE_MIB:-1024}
PACKAGES_FILE=${SNOWFLOCK_DEBIAN_PACKAGES:-$HERE/packages.txt}
IMG=$OUT_DIR/xvda.ext4
INITRD=$OUT_DIR/initrd.cpio
T0=$(date +%s)

[ "$(id -u)" = 0 ] || die "the Debian guest is built as root (mmdebstrap's root mode; mkfs.ext4 -d copies file owners)"
ensure_packages mmdebstrap e2fsprogs zstd busybox-static cpio file
command -v gcc >/dev/null || die "need gcc for sf-memtest and sf-freepages (apt-get install gcc libc6-dev)"
[ -f "$TESTBOX_DIR/kver" ] || die "no Debian kernel in the cache: run scripts/testbox/fetch.sh"
KVER=$(cat "$TESTBOX_DIR/kver")
KMOD=$TESTBOX_DIR/root/lib/modules/$KVER/kernel
[ -f "$REPO_ROOT/dist/lib/api/index.js" ] || die "the guest library is not compiled: run npx tsc -p tsconfig.json"
[ -f "$PACKAGES_FILE" ] || die "no package list $PACKAGES_FILE"
mkdir -p "$OUT_DIR"
sha() { sha256sum | cut -c1-16; }
# Files' contents, by name, as one hash (directories recursively).
tree_hash() {
  local p
  for p in "$@"; do
    if [ -d "$p" ]; then (cd "$p" && find . -type f -print0 | sort -z | xargs -0 sha256sum); else sha256sum "$p"; fi
  done | sed "s|$REPO_ROOT/||" | sha
}
STAGE=$(mktemp -d "$OUT_DIR/stage.XXXXXX")
trap 'rm -rf "$STAGE"' EXIT

# --- 1. the base: Debian's packages, by mmdebstrap -----------------------------------------
PACKAGES=$(sed 's/#.*//' "$PACKAGES_FILE" | tr -s ' \t' '\n\n' | sed '/^$/d' | sort -u | paste -sd, -)
[ -n "$PACKAGES" ] || die "$PACKAGES_FILE lists no package"
bad=$(echo "$PACKAGES" | tr , '\n' | grep -Ev '^[a-z0-9][a-z0-9+.-]+$' | paste -sd' ' -) || true
[ -z "$bad" ] || die "$PACKAGES_FILE: not a Debian package name: $bad (one package per line, comments after #)"
# mmdebstrap's merged-usr hook makes the /usr symlinks itself and installs usr-is-merged; without
# it init-system-helpers' "usrmerge | usr-is-merged" brings usrmerge, which pulls in perl (50 MB).
MM_ARGS=(--variant=apt --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr --include="$PACKAGES"
  --aptopt='APT::Install-Recommends "false"' --aptopt='Acquire::Languages "none"')
# Documentation, manuals and translations are never read in a guest.
for o in 'path-exclude=/usr/share/man/*' 'path-exclude=/usr/share/info/*' 'path-exclude=/usr/share/doc/*' \
         'path-include=/usr/share/doc/*/copyright' 'path-exclude=/usr/share/locale/*' 'path-exclude=/usr/share/lintian/*' \
         'path-exclude=/usr/share/bash-completion/*' 'path-exclude=/usr/share/zsh/*' 'path-exclude=/usr/share/doc-base/*'; do
  MM_ARGS+=(--dpkgopt="$o")
done
MM_ARGS+=(--customize-hook='rm -rf "$1"/var/cache/debconf/*-old "$1"/var/lib/dpkg/*-old "$1"/etc/resolv.conf')
SOURCES=("deb $MIRROR $SUITE main" "deb $MIRROR $SUITE-updates main" "deb $SECURITY_MIRROR $SUITE-security main")
BASE_KEY=$(printf '%s\n' base-1 "${MM_ARGS[@]}" "$SUITE" "${SOURCES[@]}" | sha)
BASE=$OUT_DIR/base-$BASE_KEY.tar.zst
if [ -f "$BASE" ]; then
  log "reusing the cached Debian guest base (mmdebstrap, key $BASE_KEY)"
else
  log "building the Debian guest base: mmdebstrap $SUITE, Essential + apt + $PACKAGES (a few minutes)"
  t=$(date +%s)
  if ! TMPDIR=$STAGE mmdebstrap --quiet "${MM_ARGS[@]}" "$SUITE" "$STAGE/base.tar.zst" "${SOURCES[@]}" > "$OUT_DIR/base.log" 2>&1; then
    tail -20 "$OUT_DIR/base.log" >&2
    die "mmdebstrap failed (log: $OUT_DIR/base.log)"
  fi
  rm -f "$OUT_DIR"/base-*.tar.zst
  mv "$STAGE/base.tar.zst" "$BASE"
  log "Debian guest base: $(du -m "$BASE" | cut -f1) MiB compressed, $(( $(date +%s) - t )) s"
fi

# --- 2. the root filesystem image: the base + the guest library, agent and sf-init ------------
T=$REPO_ROOT/images/testguest
source "$T/guest-library.sh" # install_guest_library, GUEST_LIBRARY_DEPS: as in the Node test guest
for dep in "${GUEST_LIBRARY_DEPS[@]}"; do [ -d "$REPO_ROOT/node_modules/$dep" ] || die "node_modules/$dep is missing: run npm ci"; done
IMAGE_KEY=$( { echo "$BASE_KEY $IMAGE_MIB"; tree_hash "$HERE/build.sh" "$HERE/sf-init" "$HERE/sf-agent.service" "$HERE/selfcheck.mjs" "$T/agent.sh" "$T/memtest.c" "$T/freepages.c" \
  "$T/guest-library.sh" "$T/programs" "$REPO_ROOT/package.json" "$REPO_ROOT/dist/lib"; for dep in "${GUEST_LIBRARY_DEPS[@]}"; do tree_hash "$REPO_ROOT/node_modules/$dep"; done; } | sha)
if [ -f "$IMG" ] && [ "$(cat "$IMG.key" 2>/dev/null)" = "$IMAGE_KEY" ]; then
  log "reusing the cached Debian guest image (key $IMAGE_KEY)"
else
  log "building the Debian guest image: ext4, $IMAGE_MIB MiB sparse (key $IMAGE_KEY)"
  R=$STAGE/root
  mkdir "$R"
  tar -C "$R" --zstd -xpf "$BASE" --numeric-owner --xattrs --xattrs-include='*'
  install -m755 "$HERE/sf-init" "$R/usr/sbin/sf-init"
  install -D -m755 "$T/agent.sh" "$R/usr/local/sbin/sf-agent"
  # The agent's test programs, static as in the busybox guest; on the agent's PATH (/bin:/usr/bin).
  for prog in memtest:sf-memtest freepages:sf-freepages; do
    gcc -O2 -static -Wall -o "$R/usr/bin/${prog#*:}" "$T/${prog%%:*}.c" || die "failed to compile $T/${prog%%:*}.c (a static build needs libc6-dev)"
  done
  # The agent's poweroff -f: busybox's (the image has no init system), or the init system's.
  if [ ! -e "$R/usr/bin/poweroff" ]; then
    if [ -x "$R/usr/bin/busybox" ]; then ln -s busybox "$R/usr/bin/poweroff"
    elif [ -e "$R/usr/sbin/poweroff" ]; then ln -s ../sbin/poweroff "$R/usr/bin/poweroff"
    else die "the agent needs a poweroff command: keep busybox in $PACKAGES_FILE"; fi
  fi
  # The guest library where the Node test guest has it: the agent runs sf.program from /opt/snowflock.
  install_guest_library "$R" "$REPO_ROOT" || die "cannot install the guest library"
  install -m644 "$HERE/selfcheck.mjs" "$R/opt/snowflock/"
  chown -R 0:0 "$R/opt/snowflock"
  echo sf-debian > "$R/etc/hostname"
  printf '127.0.0.1\tlocalhost\n127.0.1.1\tsf-debian\n::1\tlocalhost ip6-localhost ip6-loopback\n' > "$R/etc/hosts"
  echo '# / is mounted by the initramfs (root=/dev/xvda); nothing else.' > "$R/etc/fstab"
  if [ -x "$R/lib/systemd/systemd" ]; then
    install -m644 "$HERE/sf-agent.service" "$R/etc/systemd/system/sf-agent.service"
    mkdir -p "$R/etc/systemd/system/multi-user.target.wants"
    ln -sf ../sf-agent.service "$R/etc/systemd/system/multi-user.target.wants/sf-agent.service"
  fi
  { echo "key=$IMAGE_KEY"; echo "base=$BASE_KEY"; echo "suite=$SUITE"; echo "packages=$PACKAGES"
    echo "node=$(chroot "$R" /usr/bin/node --version)"; } > "$R/etc/snowflock-image" || die "node does not run in the image"
  # Inode tables and journal zeroed now, so the guest's kernel has no lazy init to do on its
  # first mount (writes under TCG, and into a clone's overlay). mke2fs zeroes them as allocated
  # (unwritten) extents; the sparse copy turns those and every block of zeros into holes.
  mkfs.ext4 -q -F -L sf-debian -m 0 -E lazy_itable_init=0,lazy_journal_init=0 -d "$R" "$STAGE/xvda.ext4" "${IMAGE_MIB}M" >/dev/null \
    || die "mkfs.ext4 -d failed"
  cp --sparse=always "$STAGE/xvda.ext4" "$IMG.new"
  mv "$IMG.new" "$IMG"
  echo "$IMAGE_KEY" > "$IMG.key"
fi

# --- 3. the initramfs: busybox and the modules that reach the root disk ----------------------
MODULES=$(sed 's/#.*//' "$HERE/modules.txt" | tr -s ' \t' '\n\n' | sed '/^$/d')
INITRD_KEY=$( { echo "$KVER"; tree_hash "$HERE/build.sh" "$HERE/initramfs-init" "$HERE/modules.txt" /bin/busybox; } | sha)
if [ -f "$INITRD" ] && [ "$(cat "$INITRD.key" 2>/dev/null)" = "$INITRD_KEY" ]; then
  log "reusing the cached Debian guest initramfs (kernel $KVER)"
else
  log "building the Debian guest initramfs: busybox, $(echo "$MODULES" | wc -l) modules of kernel $KVER"
  file -L /bin/busybox | grep -q 'statically linked' || die "need a static busybox at /bin/busybox (apt-get install busybox-static)"
  I=$STAGE/initrd
  mkdir -p "$I"/{bin,dev,proc,sys,newroot,lib/modules}
  cp /bin/busybox "$I/bin/busybox"
  for a in $(/bin/busybox --list); do [ -e "$I/bin/$a" ] || ln -s busybox "$I/bin/$a"; done
  install -m755 "$HERE/initramfs-init" "$I/init"
  n=10 loaded=' '
  for m in $MODULES; do
    ko=$KMOD/$m.ko
    [ -f "$ko" ] || die "module $m.ko is not in kernel $KVER (modules.txt)"
    for dep in $(grep -ao 'depends=[a-z0-9_,-]*' "$ko" | head -1 | sed 's/^depends=//; s/,/ /g'); do
      case $loaded in *" ${dep//-/_} "*) ;; *) die "module $m needs $dep first (modules.txt)" ;; esac
    done
    name=$(basename "$m"); loaded="$loaded${name//-/_} "
    cp "$ko" "$I/lib/modules/$n-$name.ko"; n=$((n + 1))
  done
  (cd "$I" && find . | sort | cpio -o -H newc --quiet) > "$INITRD.new"
  mv "$INITRD.new" "$INITRD"
  echo "$INITRD_KEY" > "$INITRD.key"
fi

# An xl configuration for this host's paths (in the test box, the kernel is /guest/vmlinux).
cat > "$STAGE/guest.cfg" <<EOF
# The snowflock Debian guest (images/debian/build.sh). Ready when the console prints "SF-AGENT up".
name = "sf-debian"
type = "pvh"
kernel = "$TESTBOX_DIR/vmlinux"
ramdisk = "$INITRD"
extra = "console=hvc0 noxsave root=/dev/xvda sf.workload=counter"
disk = [ "format=raw, vdev=xvda, access=rw, target=$IMG" ]
memory = 384
vcpus = 1
on_poweroff = "destroy"
on_crash = "destroy"
EOF
cmp -s "$STAGE/guest.cfg" "$OUT_DIR/guest.cfg" || mv "$STAGE/guest.cfg" "$OUT_DIR/guest.cfg"
used=$(( $(stat -c %b "$IMG") * $(stat -c %B "$IMG") / 1048576 ))
log "Debian guest ready in $(( $(date +%s) - T0 )) s: $IMG ($used MiB used of $IMAGE_MIB), $INITRD ($(du -m "$INITRD" | cut -f1) MiB), base $(du -m "$BASE" | cut -f1) MiB; xl config: $OUT_DIR/guest.cfg"
echo "$IMG"
echo "$INITRD"
