#!/bin/bash
# Installs Debian's Grid Engine (qmaster, execd, client commands), if missing. The postinst
# configures a cell "default" under /var/lib/gridengine; gridengine-up.sh starts the daemons.
set -euo pipefail
PACKAGES=(gridengine-master gridengine-exec gridengine-client)
missing=()
for p in "${PACKAGES[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
[ ${#missing[@]} -eq 0 ] && exit 0
SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo
echo "gridengine-install: installing ${missing[*]}"
$SUDO env DEBIAN_FRONTEND=noninteractive timeout 300 apt-get update -q
$SUDO env DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y -q --no-install-recommends "${missing[@]}"
