#!/bin/bash
# Sets up snowflock on a fresh Debian 12 machine: the apt packages the build, the tests and
# the Xen test box need, then npm ci (which builds the C++ addon) and the TypeScript build.
# Idempotent and quick when everything is already there.
set -euo pipefail
cd "$(dirname "$0")/.."
PACKAGES=(
  build-essential python3 pkg-config     # node-gyp
  libxen-dev                             # Xen headers for the addon (libraries are dlopen()ed)
  qemu-system-x86 busybox-static cpio file xz-utils dpkg-dev   # the test box
  bison flex                             # the project's own Xen build
  iproute2 bridge-utils nftables         # namespaces, bridges, taps; family filters
  slurmctld slurmd slurm-client munge    # the Slurm cluster-manager plug-in's host tests
  gridengine-master gridengine-exec gridengine-client   # the Grid Engine plug-in's host tests
)
missing=()
for p in "${PACKAGES[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo
  echo "setup: installing ${missing[*]}"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
node -e 'const [a,b]=process.versions.node.split(".").map(Number); if (a<20||(a===20&&b<19)) {console.error("setup: Node >= 20.19 needed, have "+process.version); process.exit(1)}'
npm ci --no-audit --no-fund
npm run build
echo "setup: done (cache for downloads and builds: ${SNOWFLOCK_CACHE:-$HOME/.cache/snowflock})"
