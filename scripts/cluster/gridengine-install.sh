#!/bin/bash
# Installs Debian's Grid Engine (qmaster, execd, client commands), if missing. The postinst
# configures a cell "default" under /var/lib/gridengine; gridengine-up.sh starts the daemons.
exec "$(dirname "$0")/install-missing.sh" gridengine-master gridengine-exec gridengine-client
