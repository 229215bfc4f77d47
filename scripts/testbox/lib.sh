# Shared settings for the test box scripts. Source it; do not run it.
# Everything downloaded or built is cached under $SNOWFLOCK_CACHE (default ~/.cache/snowflock),
# so a second run needs no network and no rebuild.
SNOWFLOCK_CACHE=${SNOWFLOCK_CACHE:-$HOME/.cache/snowflock}
TESTBOX_DIR=$SNOWFLOCK_CACHE/testbox
XEN_SOURCE_VERSION=${XEN_SOURCE_VERSION:-4.17.5+72-g01140da4e8-1}
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
mkdir -p "$TESTBOX_DIR"

log() { echo "[testbox] $*" >&2; }
die() { echo "[testbox] error: $*" >&2; exit 1; }

# apt-get install only what is missing, so cached CI runs skip apt entirely.
ensure_packages() {
  local missing=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  [ "$(id -u)" = 0 ] || die "missing packages ${missing[*]}; run as root or install them"
  log "installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
}
