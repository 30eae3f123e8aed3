#!/usr/bin/env bash
# Benchmark of `imagetool export` / `imagetool import` against the pipelines people use today:
#   export: dd if=IMAGE bs=1M | gzip -1 > OUT
#   import: gunzip -c IN | cp --sparse=always /proc/self/fd/0 IMAGE
# on a 16 GiB image with 256 MiB of data in 256 scattered 1 MiB extents (half random, half
# compressible file content, some not 4 KiB aligned), built with truncate and dd in a temp dir.
# Prints medians of several runs and the ratios; it passes or fails nothing, the machine is shared.
#
# Usage: scripts/bench-sparse.sh            (RUNS=3 by default; RUNS=5 for steadier medians)
# Needs about 1.5 GiB of free space where TMPDIR points (default /var/tmp).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

RUNS=${RUNS:-3}
SIZE_GIB=${SIZE_GIB:-16}
EXTENTS=${EXTENTS:-256}

need_cargo
need_pkgs gzip zstd coreutils bc
log "building imagetool (release)"
cargo build --release -q -p imagetool || die "cargo build failed"
IT="${CARGO_TARGET_DIR:-$PWD/target}/release/imagetool"
[ -x "$IT" ] || die "no imagetool binary at $IT"

WORK=$(mktemp -d "${TMPDIR:-/var/tmp}/bench-sparse.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"

log "building the fixture: ${SIZE_GIB} GiB, ${EXTENTS} x 1 MiB of data"
head -c $((EXTENTS / 2 + 1))M /dev/urandom >random.bin
# Compressible data like a root file system's: the machine's own binaries and libraries.
find /usr/bin /usr/lib -type f -size +16k 2>/dev/null | sort | head -n 4000 |
  xargs cat 2>/dev/null | head -c $((EXTENTS / 2 + 1))M >files.bin || true
[ "$(stat -c %s files.bin)" -ge $(((EXTENTS / 2 + 1) << 20)) ] || die "not enough files under /usr to fill the fixture"
truncate -s ${SIZE_GIB}G image.img
slot=$(((SIZE_GIB << 30) / EXTENTS))
for ((i = 0; i < EXTENTS; i++)); do
  # One extent per slot at a pseudo-random place in it; every fourth is not 4 KiB aligned.
  off=$((i * slot + ((i * 2654435761) % (slot - (2 << 20)))))
  ((i % 4 == 3)) || off=$((off / 4096 * 4096))
  if ((i % 2)); then src=files.bin; else src=random.bin; fi
  dd if=$src of=image.img bs=1M count=1 skip=$((i / 2)) seek=$off oflag=seek_bytes conv=notrunc status=none
done
rm -f random.bin files.bin
sync
apparent=$(stat -c %s image.img)
allocated=$(du -B1 image.img | cut -f1)
printf 'fixture: apparent %d bytes, allocated %d bytes (du)\n' "$apparent" "$allocated"

now() { date +%s.%N; }
declare -A TIMES
# Runs "$@" once and appends its wall time in seconds to TIMES[$name].
timed() {
  local name=$1 t0 t1
  shift
  t0=$(now)
  "$@"
  t1=$(now)
  TIMES[$name]+="$(echo "$t1 - $t0" | bc -l) "
}
median() {
  printf '%s\n' ${TIMES[$1]} | sort -g | awk '{a[NR]=$1} END {m=(NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2; printf "%.2f", m}'
}
runs() { printf '%s\n' ${TIMES[$1]} | awk '{printf "%s%.1f", (NR>1?" ":""), $1}'; }
ratio() { echo "scale=1; $(median "$1") / $(median "$2")" | bc -l; }

base_export() { dd if=image.img bs=1M status=none | gzip -1 >base.gz; }
ours_export_1() { "$IT" export image.img -o ours1.gz --level 1 --force >/dev/null; }
ours_export_6() { "$IT" export image.img -o ours6.gz --force >/dev/null; }
ours_export_zst() { "$IT" export image.img -o ours.zst --force >/dev/null; }
ours_export_nd() { "$IT" export image.img -o oursnd.gz --level 1 --no-digest --force >/dev/null; }
hash_floor() { "$IT" export image.img -o - --format raw >/dev/null 2>&1; }
base_import() { rm -f base.img && gunzip -c ours1.gz | cp --sparse=always /proc/self/fd/0 base.img; }
ours_import() { "$IT" import ours1.gz -o ours.img --force >/dev/null; }

# Contenders take turns within each round, so load from other users of the machine falls on all
# of them alike rather than on whichever ran during a busy minute.
for ((r = 1; r <= RUNS; r++)); do
  log "export round $r of $RUNS"
  timed base_export base_export
  timed ours_export_1 ours_export_1
  timed ours_export_6 ours_export_6
  timed ours_export_zst ours_export_zst
  timed ours_export_nd ours_export_nd
  timed hash_floor hash_floor
done

log "checking that the exports decompress to the image"
gunzip -c ours1.gz | cmp - image.img || die "imagetool's gzip export differs from the image"
gunzip -c oursnd.gz | cmp - image.img || die "imagetool's --no-digest export differs from the image"
zstd -q -dc ours.zst | cmp - image.img || die "imagetool's zstd export differs from the image"
for ((r = 1; r <= RUNS; r++)); do
  log "import round $r of $RUNS"
  timed base_import base_import
  timed ours_import ours_import
done
cmp ours.img image.img || die "imagetool's import differs from the image"
cmp base.img image.img || die "the baseline import differs from the image"

size() { stat -c %s "$1"; }
alloc() { du -B1 "$1" | cut -f1; }
row() { printf '%-46s %9s %14s %8s   %s\n' "$@"; }
echo
row "export (${SIZE_GIB} GiB, $((allocated >> 20)) MiB allocated)" "median s" "output bytes" "speedup" "runs (s)"
row "dd bs=1M | gzip -1" "$(median base_export)" "$(size base.gz)" "1.0x" "$(runs base_export)"
row "imagetool export --level 1 (gzip)" "$(median ours_export_1)" "$(size ours1.gz)" "$(ratio base_export ours_export_1)x" "$(runs ours_export_1)"
row "imagetool export (gzip level 6)" "$(median ours_export_6)" "$(size ours6.gz)" "$(ratio base_export ours_export_6)x" "$(runs ours_export_6)"
row "imagetool export -o X.zst (zstd level 3)" "$(median ours_export_zst)" "$(size ours.zst)" "$(ratio base_export ours_export_zst)x" "$(runs ours_export_zst)"
row "imagetool export --level 1 --no-digest" "$(median ours_export_nd)" "$(size oursnd.gz)" "$(ratio base_export ours_export_nd)x" "$(runs ours_export_nd)"
row "(SHA-256 floor: export --format raw >/dev/null)" "$(median hash_floor)" "-" "$(ratio base_export hash_floor)x" "$(runs hash_floor)"
echo
row "import of the --level 1 export" "median s" "allocated" "speedup" "runs (s)"
row "gunzip -c | cp --sparse=always" "$(median base_import)" "$(alloc base.img)" "1.0x" "$(runs base_import)"
row "imagetool import" "$(median ours_import)" "$(alloc ours.img)" "$(ratio base_import ours_import)x" "$(runs ours_import)"
row "source image (du)" "-" "$allocated" "" ""
printf 'allocated, imagetool import / source image: %s\n' "$(echo "scale=4; $(alloc ours.img) / $allocated" | bc -l)"
