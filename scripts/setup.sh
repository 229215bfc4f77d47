#!/bin/bash
# Sets up snowflock on a fresh Debian 12 machine: the apt packages the build and the Xen test
# box need (with --tests also those only the host tests need), npm ci (which builds the C++
# addon), the TypeScript build, and a `snowflock` command in /usr/local/bin.
# Idempotent and quick when everything is already there.
set -euo pipefail
cd "$(dirname "$0")/.."
usage() {
  cat <<'EOF'
usage: scripts/setup.sh [--tests]
  (no option)  what the demo needs: build tools, Xen headers, QEMU (with qemu-storage-daemon
               and qemu-img for copy-on-write disks), busybox, cpio and the tools for the
               project's Xen build and the test box
  --tests      also what only the tests need: nftables (family filters), libnbd's tools
               (nbdinfo, nbdcopy: the disk host tests' NBD clients), Slurm with munge and
               Grid Engine (the cluster-manager plug-ins' host tests), and the Debian guest
               image (images/debian, with the test box's Debian kernel it needs)
Installs /usr/local/bin/snowflock (runs this checkout's dist/lib/cli/main.js). Uses sudo when
not root. Downloads and builds go to $SNOWFLOCK_CACHE (default ~/.cache/snowflock).
EOF
}
TESTS=
case "${1:-}" in
  '') ;;
  --tests) TESTS=1 ;;
  -h|--help) usage; exit 0 ;;
  *) echo "setup: unknown option $1" >&2; usage >&2; exit 2 ;;
esac
SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo

# node-gyp; Xen headers for the addon (its libraries are dlopen()ed); libcrypto for the page
# client's native test (the addon itself uses Node's OpenSSL); the test box (fetch.sh);
# the project's Xen build (build-xen.sh); copy-on-write disks (lib/disk: qemu-storage-daemon
# comes with qemu-system-x86's qemu-system-common, qemu-img and qemu-io with qemu-utils).
# Those scripts install what they miss only as root, so a user's demo needs all of it here.
scripts/cluster/install-missing.sh \
  build-essential python3 pkg-config \
  libxen-dev libssl-dev \
  qemu-system-x86 qemu-utils busybox-static cpio file xz-utils iproute2 bridge-utils \
  bison flex dpkg-dev
if [ -n "$TESTS" ]; then
  scripts/cluster/install-missing.sh nftables libnbd-bin
  scripts/cluster/slurm-install.sh
  scripts/cluster/gridengine-install.sh
fi
node -e 'const [a,b]=process.versions.node.split(".").map(Number); if (a<20||(a===20&&b<19)) {console.error("setup: Node >= 20.19 needed, have "+process.version); process.exit(1)}'
npm ci --no-audit --no-fund
npm run build
if [ -n "$TESTS" ]; then
  # The Debian guest (test/host/50 checks it; built from the test box's cached kernel, so the
  # box's Debian packages come first; both cached, a second run costs about a second).
  bash scripts/testbox/fetch.sh
  bash images/debian/build.sh
fi

# A wrapper, not a symlink to main.js: `npm run build` recreates dist/ without the execute bit,
# and sudo's PATH may not find the node this checkout was built with.
BIN=/usr/local/bin/snowflock
MARK='# snowflock command, installed by scripts/setup.sh'
WRAPPER="#!/bin/sh
$MARK
exec '$(command -v node)' '$(pwd)/dist/lib/cli/main.js' \"\$@\""
if [ -e "$BIN" ] && ! grep -qxF "$MARK" "$BIN"; then
  echo "setup: $BIN exists and was not installed by setup; left alone (run: node dist/lib/cli/main.js)" >&2
elif [ "$(cat "$BIN" 2>/dev/null)" != "$WRAPPER" ]; then
  echo "$WRAPPER" | $SUDO tee "$BIN" >/dev/null
  $SUDO chmod 755 "$BIN"
  echo "setup: installed $BIN"
fi
echo "setup: done (cache for downloads and builds: ${SNOWFLOCK_CACHE:-$HOME/.cache/snowflock})"
