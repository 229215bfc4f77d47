# Sourced by the guest image builds (build-node.sh, images/debian/build.sh); do not run it.
# Puts the snowflock guest library where the agent's node|shell workloads find it:
#   install_guest_library ROOT REPO
#   ROOT/opt/snowflock   package.json, the compiled dist/lib, the library's runtime dependencies
#                        in a guest (GUEST_LIBRARY_DEPS) and the guest programs in programs/
#   ROOT/usr/bin/sf-*    the shell wrappers: cli.js answers to the sf-* name it is invoked as
# Returns 1 with the reason on stderr when the library is not compiled or a dependency is missing.
GUEST_LIBRARY_DEPS=(ffi-rs @yuuang/ffi-rs-linux-x64-gnu)

install_guest_library() {
  local root=$1 repo=$2 p=$1/opt/snowflock dep c
  [ -f "$repo/dist/lib/api/index.js" ] || { echo "the guest library is not compiled: run npm run build" >&2; return 1; }
  for dep in "${GUEST_LIBRARY_DEPS[@]}"; do
    [ -d "$repo/node_modules/$dep" ] || { echo "node_modules/$dep is missing: run npm ci" >&2; return 1; }
  done
  mkdir -p "$p/dist" "$root/usr/bin"
  cp "$repo/package.json" "$p/"
  cp -a "$repo/dist/lib" "$p/dist/"
  for dep in "${GUEST_LIBRARY_DEPS[@]}"; do
    mkdir -p "$p/node_modules/$(dirname "$dep")"
    cp -a "$repo/node_modules/$dep" "$p/node_modules/$dep"
  done
  install -m644 "$repo"/images/testguest/programs/* "$p/"
  chmod 755 "$p/dist/lib/api/cli.js"
  for c in request-ticket clone exit join kill status hosts list; do ln -s /opt/snowflock/dist/lib/api/cli.js "$root/usr/bin/sf-$c"; done
}
