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
need_pkgs gzip coreutils bc openssl
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
# Runs "$@" RUNS times and prints the median wall time in seconds.
median_time() {
  local times=() t0 t1 i
  for ((i = 0; i < RUNS; i++)); do
    t0=$(now)
    "$@"
    t1=$(now)
    times+=("$(echo "$t1 - $t0" | bc -l)")
  done
  printf '%s\n' "${times[@]}" | sort -g | awk '{a[NR]=$1} END {m=(NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2; printf "%.2f", m}'
}
ratio() { echo "scale=1; $1 / $2" | bc -l; }

base_export() { dd if=image.img bs=1M status=none | gzip -1 >base.gz; }
ours_export_1() { "$IT" export image.img -o ours1.gz --level 1 --force >/dev/null; }
ours_export_6() { "$IT" export image.img -o ours6.gz --force >/dev/null; }
ours_export_zst() { "$IT" export image.img -o ours.zst --force >/dev/null; }
base_import() { rm -f base.img && gunzip -c ours1.gz | cp --sparse=always /proc/self/fd/0 base.img; }
ours_import() { "$IT" import ours1.gz -o ours.img --force >/dev/null; }

log "export: dd | gzip -1 ($RUNS runs)"
t_base=$(median_time base_export)
log "export: imagetool --level 1 ($RUNS runs)"
t_ours1=$(median_time ours_export_1)
log "export: imagetool, default gzip level 6 ($RUNS runs)"
t_ours6=$(median_time ours_export_6)
log "export: imagetool, zstd level 3 ($RUNS runs)"
t_zst=$(median_time ours_export_zst)
log "digest floor: sha256 of ${SIZE_GIB} GiB with openssl (one run)"
t0=$(now); openssl dgst -sha256 image.img >/dev/null; t1=$(now)
t_sha=$(echo "$t1 - $t0" | bc -l)

log "checking that the exports decompress to the image"
gunzip -c ours1.gz | cmp - image.img || die "imagetool's gzip export differs from the image"
log "import: gunzip -c | cp --sparse=always ($RUNS runs)"
t_bimp=$(median_time base_import)
log "import: imagetool ($RUNS runs)"
t_oimp=$(median_time ours_import)
cmp ours.img image.img || die "imagetool's import differs from the image"

size() { stat -c %s "$1"; }
alloc() { du -B1 "$1" | cut -f1; }
echo
printf '%-44s %9s %14s %8s\n' "export (${SIZE_GIB} GiB, $((allocated >> 20)) MiB allocated)" "median s" "output bytes" "speedup"
printf '%-44s %9s %14d %8s\n' "dd bs=1M | gzip -1" "$t_base" "$(size base.gz)" "1.0x"
printf '%-44s %9s %14d %8s\n' "imagetool export --level 1 (gzip)" "$t_ours1" "$(size ours1.gz)" "$(ratio "$t_base" "$t_ours1")x"
printf '%-44s %9s %14d %8s\n' "imagetool export (gzip level 6)" "$t_ours6" "$(size ours6.gz)" "$(ratio "$t_base" "$t_ours6")x"
printf '%-44s %9s %14d %8s\n' "imagetool export -o X.zst (zstd level 3)" "$t_zst" "$(size ours.zst)" "$(ratio "$t_base" "$t_zst")x"
printf '%-44s %9.2f %14s %8s\n' "(floor: openssl sha256 of the image)" "$t_sha" "-" "$(ratio "$t_base" "$t_sha")x"
echo
printf '%-44s %9s %14s %8s\n' "import of the --level 1 export" "median s" "allocated" "speedup"
printf '%-44s %9s %14d %8s\n' "gunzip -c | cp --sparse=always" "$t_bimp" "$(alloc base.img)" "1.0x"
printf '%-44s %9s %14d %8s\n' "imagetool import" "$t_oimp" "$(alloc ours.img)" "$(ratio "$t_bimp" "$t_oimp")x"
printf '%-44s %9s %14d\n' "source image (du)" "-" "$allocated"
printf 'allocated, imagetool import / source: %s\n' "$(echo "scale=4; $(alloc ours.img) / $allocated" | bc -l)"
