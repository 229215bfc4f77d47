#!/bin/bash
# Installs the Debian packages named that are not installed yet (quick no-op when all are):
# dpkg is asked first, apt only for what is missing. Used by scripts/setup.sh and the cluster
# labs' install scripts.
#   install-missing.sh PACKAGE...
set -euo pipefail
missing=()
for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
[ ${#missing[@]} -eq 0 ] && exit 0
SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo
echo "install-missing: installing ${missing[*]}"
# Postinst scripts may try to start the system-wide daemons; the labs run their own.
$SUDO env DEBIAN_FRONTEND=noninteractive timeout 300 apt-get update -q
$SUDO env DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y -q --no-install-recommends "${missing[@]}"
