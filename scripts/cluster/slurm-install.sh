#!/bin/bash
# Installs Debian's Slurm (controller, node daemon, client commands) and munge, if missing.
exec "$(dirname "$0")/install-missing.sh" slurmctld slurmd slurm-client munge
