#!/usr/bin/env bash
# Set-up of ddumbfs-ts on a Debian 12 machine, as root; idempotent and non-interactive (safe to run again, and
# quick then). Steps:
#   1. apt: libfuse2 libfuse-dev fuse libgcrypt20 pkg-config, and the compiler toolchain node-gyp needs
#      (skipped when all are installed);
#   2. npm ci (skipped when node_modules matches package-lock.json and patches/; a refused lock file is an error,
#      never a silent npm install); its postinstall runs patch-package, which applies patches/fuse-native+2.2.6.patch;
#   3. rebuild fuse-native from the patched source with node-gyp against the system libfuse (the package's own
#      install script is not trusted to do it), and check that the patched build is the one Node loads;
#   4. build: npx tsc -p tsconfig.json (src -> dist), then node scripts/build-bundle.mjs (dist -> one file per command
#      in dist/bundle, which the bin/ shims run: a faster start-up).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

say() { printf '== %s\n' "$*"; }

if [ "$(id -u)" -ne 0 ]; then
  echo "setup.sh: run as root (apt-get, /dev/fuse)" >&2
  exit 1
fi
if ! command -v node >/dev/null 2>&1; then
  echo "setup.sh: node (>= 20) is required" >&2
  exit 1
fi
node_major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$node_major" -lt 20 ]; then
  echo "setup.sh: node >= 20 is required (found $(node -v))" >&2
  exit 1
fi

# 1. system packages ------------------------------------------------------------------------------------------------
apt_packages=(libfuse2 libfuse-dev fuse libgcrypt20 pkg-config python3 make g++ openssh-server openssh-client rsync attr acl)
# qemu-img: test/sparse_large.test.ts creates a 1 TiB raw image in the mount, as a user making a VM disk would
apt_packages+=(qemu-utils)
missing=()
for p in "${apt_packages[@]}"; do
  if [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" != "install ok installed" ]; then missing+=("$p"); fi
done
if [ ${#missing[@]} -eq 0 ]; then
  say "apt: ${apt_packages[*]} already installed"
else
  say "apt-get update; apt-get install -y ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q "${missing[@]}"
fi
if [ ! -e /dev/fuse ]; then
  say "warning: /dev/fuse is missing (modprobe fuse, or run the container with --device /dev/fuse); mounts will fail"
fi

# 2. node modules ---------------------------------------------------------------------------------------------------
stamp_file=node_modules/.ddumbfs-setup-stamp
stamp=$(cat package.json package-lock.json patches/*.patch 2>/dev/null | sha256sum | cut -d' ' -f1)
if [ -f "$stamp_file" ] && [ "$(cat "$stamp_file")" = "$stamp" ] && [ -d node_modules/fuse-native ]; then
  say "npm ci: node_modules already matches package-lock.json and patches/"
else
  say "npm ci (postinstall: patch-package applies patches/)"
  npm_log=$(mktemp /tmp/ddumbfs-npm-ci-XXXXXX.err)
  if ! npm ci --no-audit --no-fund 2>"$npm_log"; then
    cat "$npm_log" >&2
    if grep -q 'in sync' "$npm_log"; then
      # No fallback to npm install: it would install versions nobody reviewed and hide a broken lock file.
      echo "setup.sh: npm ci refused package-lock.json (not in sync with package.json, e.g. optional packages of" \
        "other platforms missing): regenerate it with no node_modules present: rm -rf node_modules &&" \
        "npm install --package-lock-only, then commit package-lock.json" >&2
    else
      echo "setup.sh: npm ci failed (see above)" >&2
    fi
    rm -f "$npm_log"
    exit 1
  fi
  rm -f "$npm_log"
fi

# 3. the patched fuse-native ----------------------------------------------------------------------------------------
fn=node_modules/fuse-native
if ! grep -q fuse_native_host_utimensat "$fn/fuse-native.c"; then
  say "patch-package (the fuse-native patch was not applied)"
  npx --no-install patch-package
fi
node_gyp=""
if command -v node-gyp >/dev/null 2>&1; then
  node_gyp=$(command -v node-gyp)
else
  npm_gyp="$(npm root -g 2>/dev/null)/npm/node_modules/node-gyp/bin/node-gyp.js"
  if [ -f "$npm_gyp" ]; then node_gyp="node $npm_gyp"; fi
fi
if [ -z "$node_gyp" ]; then
  echo "setup.sh: node-gyp not found (neither on PATH nor bundled with npm)" >&2
  exit 1
fi
gyp_args=(rebuild)
if [ -f /usr/include/node/node_api.h ]; then gyp_args+=(--nodedir=/usr); fi
say "rebuild fuse-native: (cd $fn && $node_gyp ${gyp_args[*]})"
gyp_log=$(mktemp /tmp/ddumbfs-node-gyp-XXXXXX.log)
(cd "$fn" && $node_gyp "${gyp_args[@]}" >"$gyp_log" 2>&1) || {
  cat "$gyp_log" >&2
  echo "setup.sh: node-gyp rebuild of fuse-native failed" >&2
  exit 1
}
rm -f "$gyp_log"
loaded=$(node -e "
  const dir = '$root/$fn';
  const p = require('$root/node_modules/node-gyp-build').path(dir);
  const b = require(p);
  if (typeof b.fuse_native_host_utimensat !== 'function') { console.error('not the patched build: ' + p); process.exit(1); }
  console.log(p);
")
say "fuse-native binding loaded from $loaded"
case "$loaded" in
  */build/Release/*) ;;
  *) echo "setup.sh: expected the build/Release binding, got $loaded" >&2; exit 1 ;;
esac

# 4. build ----------------------------------------------------------------------------------------------------------
say "npx tsc -p tsconfig.json"
npx --no-install tsc -p tsconfig.json
say "node scripts/build-bundle.mjs"
node scripts/build-bundle.mjs
echo "$stamp" > "$stamp_file"
say "setup done"
