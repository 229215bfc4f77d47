#!/bin/bash
# Installs Debian's Slurm (controller, node daemon, client commands) and munge, if missing.
# Quick no-op when they are already there: dpkg is asked first, apt only for what is missing.
set -euo pipefail
PACKAGES=(slurmctld slurmd slurm-client munge)
missing=()
for p in "${PACKAGES[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
[ ${#missing[@]} -eq 0 ] && exit 0
SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo
echo "slurm-install: installing ${missing[*]}"
# The packages' postinst scripts try to start the system-wide daemons; we run private ones instead.
$SUDO env DEBIAN_FRONTEND=noninteractive timeout 300 apt-get update -q
$SUDO env DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y -q --no-install-recommends "${missing[@]}"
