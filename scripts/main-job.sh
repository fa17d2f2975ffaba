#!/usr/bin/env bash
# The main job, end to end on real data: create a volume, mount it, copy a real system tree into it with cp -a,
# verify every file byte for byte with its metadata, copy it a second time under another name, print the dedup
# figures from /.ddumbfs/stats, unmount.
#   scripts/main-job.sh [SOURCE_TREE] [WORK_DIR]   (defaults: /usr/share, a new directory under /var/tmp)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
src=${1:-/usr/share}
work=${2:-$(mktemp -d /var/tmp/ddumbfs-main-job.XXXXXX)}
parent=$work/volume
mnt=$work/mnt
mkdir -p "$parent" "$mnt"
chmod 755 "$work" "$mnt"

cleanup() {
  if grep -q " $mnt fuse" /proc/self/mounts; then fusermount -u "$mnt" 2>/dev/null || umount -l "$mnt" || true; fi
}
trap cleanup EXIT

src_mb=$(du -sm "$src" | cut -f1)
size_mb=$(( src_mb * 3 + 2048 ))
echo "== mkddumbfs: ${size_mb} MiB block file, 4 KiB blocks, TIGER"
"$here/bin/mkddumbfs" -s "${size_mb}M" -B 4k "$parent" | head -1
echo "== mount on $mnt"
"$here/bin/ddumbfs" "$mnt" -o "parent=$parent"
allocated() { awk '$1=="block_allocated"{print $2}' "$mnt/.ddumbfs/stats"; }

# copy_and_verify NAME WHY: cp -a the source to $mnt/NAME, time it, then compare every file and its metadata.
copy_and_verify() {
  echo "== cp -a $src $mnt/$1$2"
  local t0 t1
  t0=$(date +%s.%N)
  cp -a "$src" "$mnt/$1"
  t1=$(date +%s.%N)
  echo "   copied ${src_mb} MiB in $(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f", b-a}') s"
  echo "== verify $1 byte for byte with metadata"
  node "$here/scripts/compare-trees.mjs" "$src" "$mnt/$1"
}

used_before=$(allocated)
copy_and_verify copy1 ''
used1=$(allocated)
copy_and_verify copy2 ' (second copy: should dedup)'
used2=$(allocated)

echo "== dedup figures (/.ddumbfs/stats)"
grep -E '^(block_allocated|block_free|ghost_write|block_write|hash) ' "$mnt/.ddumbfs/stats" || true
logical=$(du -s --apparent-size -B1 "$mnt" | cut -f1)
bs=4096
awk -v u0="$used_before" -v u1="$used1" -v u2="$used2" -v lg="$logical" -v bs="$bs" 'BEGIN {
  first = u1 - u0; second = u2 - u1;
  printf "   blocks allocated by the first copy : %d (%.1f MiB)\n", first, first*bs/1048576;
  printf "   blocks allocated by the second copy: %d (%.3f%% of the first)\n", second, (first ? 100*second/first : 0);
  printf "   logical data on the mount          : %.1f MiB; stored %.1f MiB; dedup ratio %.2f\n", lg/1048576, (u2-2)*bs/1048576, lg/((u2-2)*bs);
}'

echo "== unmount"
fusermount -u "$mnt"
for _ in $(seq 1 50); do [ -e "$parent/.autofsck" ] || break; sleep 0.2; done
if [ -e "$parent/.autofsck" ]; then echo "ERROR: .autofsck left behind"; exit 1; fi
echo "   clean unmount (.autofsck removed). Volume kept in $parent"
