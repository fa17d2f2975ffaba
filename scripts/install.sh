#!/bin/sh
# Install ddumbfs-ts from this built checkout (scripts/setup.sh builds it), or remove that install.
#
#   scripts/install.sh [VAR=value ...]               install
#   scripts/install.sh --uninstall [VAR=value ...]   remove what an install with the same variables put in place
#
# Variables (from the environment or as VAR=value arguments, as with make):
#   PREFIX   default /usr/local. Commands in PREFIX/bin, man pages in PREFIX/share/man/man5 and man8, the program
#            (dist/, bin/, package.json and the run-time node_modules only) in PREFIX/lib/ddumbfs-ts.
#   SBINDIR  default /sbin: where mount(8) looks for its helpers; gets mount.fuse.ddumbfs, so that
#            `mount -t fuse.ddumbfs PARENT MNT` and fstab lines work whatever PREFIX is.
#   DESTDIR  default empty: staging root prepended to every path written (packaging); the installed files still
#            name PREFIX, not DESTDIR.
#   NODE     default: the node found on PATH now. The commands run this node by its absolute path, so they work
#            from mount(8) and systemd, which run helpers with a minimal PATH.
#
# Every installed file outside PREFIX/lib/ddumbfs-ts, and every directory the install created, is listed in
# PREFIX/lib/ddumbfs-ts/install-manifest: --uninstall removes those files, that directory, and the directories it
# created once empty; it never removes anything it did not install.
set -eu

usage() {
  echo "usage: scripts/install.sh [--uninstall] [PREFIX=DIR] [DESTDIR=DIR] [SBINDIR=DIR] [NODE=PATH]" >&2
  exit 1
}

mode=install
for arg in "$@"; do
  case $arg in
    --uninstall) mode=uninstall ;;
    -h|--help) usage ;;
    PREFIX=*) PREFIX=${arg#PREFIX=} ;;
    DESTDIR=*) DESTDIR=${arg#DESTDIR=} ;;
    SBINDIR=*) SBINDIR=${arg#SBINDIR=} ;;
    NODE=*) NODE=${arg#NODE=} ;;
    *) echo "install.sh: unknown argument '$arg'" >&2; usage ;;
  esac
done
PREFIX=${PREFIX:-/usr/local}
SBINDIR=${SBINDIR:-/sbin}
DESTDIR=${DESTDIR:-}
for v in "$PREFIX" "$SBINDIR"; do
  case $v in
    /*) ;;
    *) echo "install.sh: PREFIX and SBINDIR must be absolute paths (got '$v')" >&2; exit 1 ;;
  esac
  case $v in
    *"'"*) echo "install.sh: a path with a single quote is not supported ('$v')" >&2; exit 1 ;;
  esac
done
DESTDIR=${DESTDIR%/}

repo=$(cd "$(dirname "$0")/.." && pwd)
libdir=$PREFIX/lib/ddumbfs-ts
bindir=$PREFIX/bin
man5=$PREFIX/share/man/man5
man8=$PREFIX/share/man/man8
manifest=$DESTDIR$libdir/install-manifest

# ---------------------------------------------------------------------------------------------------------- uninstall
if [ "$mode" = uninstall ]; then
  if [ ! -f "$manifest" ]; then
    echo "install.sh: no install found: $manifest does not exist (same PREFIX and DESTDIR as the install?)" >&2
    exit 1
  fi
  # files first, then the directories the install created, deepest first
  grep '^f ' "$manifest" | cut -c3- | while IFS= read -r f; do
    rm -f "$DESTDIR$f"
  done
  dirs=$(grep '^d ' "$manifest" | cut -c3- | sort -r)
  rm -rf "$DESTDIR$libdir"
  printf '%s\n' "$dirs" | while IFS= read -r d; do
    [ -n "$d" ] && [ -d "$DESTDIR$d" ] && rmdir "$DESTDIR$d" 2>/dev/null || true
  done
  echo "ddumbfs-ts removed from $DESTDIR$PREFIX (and $DESTDIR$SBINDIR/mount.fuse.ddumbfs)"
  exit 0
fi

# ------------------------------------------------------------------------------------------------------------ install
NODE=${NODE:-$(command -v node || true)}
if [ -z "$NODE" ] || [ ! -x "$NODE" ]; then
  echo "install.sh: node (>= 20) not found: put it on PATH or give NODE=/path/to/node" >&2
  exit 1
fi
case $NODE in
  /*) ;;
  *) NODE=$(cd "$(dirname "$NODE")" && pwd)/$(basename "$NODE") ;;
esac
if [ ! -f "$repo/dist/cli/ddumbfs.js" ]; then
  echo "install.sh: $repo is not built: run scripts/setup.sh (or npm ci && npx tsc -p tsconfig.json) first" >&2
  exit 1
fi
if [ -f "$manifest" ]; then
  # an install over an earlier one replaces it (an upgrade): nothing of the old one stays behind
  "$0" --uninstall PREFIX="$PREFIX" DESTDIR="$DESTDIR" SBINDIR="$SBINDIR" >/dev/null
fi
deps=$("$NODE" "$repo/scripts/runtime-deps.mjs" "$repo")
commands=$("$NODE" -e 'for (const n of Object.keys(require(process.argv[1]).bin).sort()) console.log(n)' "$repo/package.json")

# The manifest is written to a temporary file until the library directory exists.
tmp_manifest=$(mktemp)
trap 'rm -f "$tmp_manifest"' EXIT

# mkdir -p that records the directories it creates (relative to DESTDIR)
makedir() {
  if [ ! -d "$DESTDIR$1" ]; then
    parent=$(dirname "$1")
    [ "$parent" = "$1" ] || makedir "$parent"
    mkdir "$DESTDIR$1"
    echo "d $1" >>"$tmp_manifest"
  fi
}
# put_file SOURCE DEST MODE: copy, record
put_file() {
  install -m "$3" "$1" "$DESTDIR$2"
  echo "f $2" >>"$tmp_manifest"
}

for d in "$libdir" "$bindir" "$man5" "$man8" "$SBINDIR"; do makedir "$d"; done

# the program: compiled code (with the bundles of scripts/build-bundle.mjs when built), shims, package.json (the
# version), run-time dependencies. dist/ keeps its files' times: a shim runs a bundle only when it is newer than its
# dist/cli entry, so a copy in any order must not make a fresh bundle look stale.
cp -R --preserve=timestamps "$repo/dist" "$DESTDIR$libdir/dist"
cp -R "$repo/bin" "$DESTDIR$libdir/bin"
cp "$repo/package.json" "$DESTDIR$libdir/package.json"
mkdir -p "$DESTDIR$libdir/node_modules"
for dep in $deps; do
  mkdir -p "$DESTDIR$libdir/$(dirname "$dep")"
  cp -RL "$repo/$dep" "$DESTDIR$libdir/$dep"
done

# commands: wrappers running the installed shim with the node found now
wrapper=$(mktemp)
for name in $commands; do
  {
    echo '#!/bin/sh'
    echo "# $name of ddumbfs-ts, written by scripts/install.sh: runs the installed command with the node found at install time."
    echo "exec '$NODE' '$libdir/bin/$name' \"\$@\""
  } >"$wrapper"
  put_file "$wrapper" "$bindir/$name" 755
done

# mount(8) helper: mount -t fuse.ddumbfs, fstab lines and systemd mount units run it
sed "s|^ddumbfs=.*|ddumbfs='$bindir/ddumbfs'|" "$repo/bin/mount.fuse.ddumbfs" >"$wrapper"
put_file "$wrapper" "$SBINDIR/mount.fuse.ddumbfs" 755
rm -f "$wrapper"

# man pages
for page in "$repo"/man/*.5; do put_file "$page" "$man5/$(basename "$page")" 644; done
for page in "$repo"/man/*.8; do put_file "$page" "$man8/$(basename "$page")" 644; done

install -m 644 "$tmp_manifest" "$manifest"
echo "ddumbfs-ts $("$NODE" -p 'require(process.argv[1]).version' "$repo/package.json") installed in $DESTDIR$PREFIX:"
echo "  commands in $bindir, man pages in $PREFIX/share/man, mount helper $SBINDIR/mount.fuse.ddumbfs"
echo "  remove with: scripts/install.sh --uninstall${DESTDIR:+ DESTDIR=$DESTDIR} PREFIX=$PREFIX${SBINDIR:+ SBINDIR=$SBINDIR}"
