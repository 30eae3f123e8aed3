#!/usr/bin/env bash
# Benchmark (prints figures; passes or fails nothing): `imagetool extract-usr` on a generated
# 1 GiB Flatcar-style PXE image, next to `zcat | cpio -i --to-stdout ./usr.squashfs` in the same
# run. Medians of RUNS runs (default 5), alternating the two so machine noise hits both alike.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
. "$here/lib.sh"
. "$here/deps.sh"
need_pkgs "${BUILD_PKGS[@]}" "${IMAGE_PKGS[@]}"
need_cargo
runs=${RUNS:-5}
(cd "$root" && cargo build --release --quiet -p imagetool)
imagetool=$root/target/release/imagetool

fixture=$VMCTL_CACHE/bench/extract-1g
if [ ! -f "$fixture/pxe.cpio.gz" ]; then
  log "generating the 1 GiB PXE fixture in $fixture (once)"
  rm -rf "$fixture"; mkdir -p "$fixture/src/bin" "$fixture/src/share" "$fixture/root/etc"
  # Like a real /usr: mostly binaries (little to gain from compression), some text.
  for i in $(seq 1 8); do head -c 128M /dev/urandom > "$fixture/src/bin/blob$i"; done
  for i in $(seq 1 40); do seq 1 1000000 > "$fixture/src/share/text$i"; done
  mksquashfs "$fixture/src" "$fixture/root/usr.squashfs" -comp gzip -quiet -no-progress -noappend >/dev/null
  rm -rf "$fixture/src"
  (cd "$fixture/root" && find . | LC_ALL=C sort | bsdcpio -o --format newc --quiet) | gzip > "$fixture/pxe.cpio.gz.tmp"
  mv "$fixture/pxe.cpio.gz.tmp" "$fixture/pxe.cpio.gz"
  rm -f "$fixture/root/usr.squashfs"
fi
in=$fixture/pxe.cpio.gz
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

now() { date +%s.%N; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
ours=(); theirs=()
for i in $(seq 1 "$runs"); do
  t0=$(now); "$imagetool" extract-usr "$in" -o "$out/a.squashfs" >/dev/null; t1=$(now)
  ours+=("$(echo "$t1 - $t0" | bc -l)")
  t0=$(now); zcat "$in" | cpio -i --quiet --to-stdout './usr.squashfs' > "$out/b.squashfs"; sync -f "$out/b.squashfs"; t1=$(now)
  theirs+=("$(echo "$t1 - $t0" | bc -l)")
done
cmp "$out/a.squashfs" "$out/b.squashfs" || die "the two extractions differ"
bytes=$(stat -c %s "$out/a.squashfs")
insize=$(stat -c %s "$in")
m_ours=$(printf '%s\n' "${ours[@]}" | median)
m_theirs=$(printf '%s\n' "${theirs[@]}" | median)
rss=$( { /usr/bin/time -f '%M' "$imagetool" extract-usr "$in" -o "$out/c.squashfs" >/dev/null; } 2>&1 | tail -1)
echo "machine: $(nproc) cpus, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(uname -r)"
echo "input: $(numfmt --to=iec "$insize") gzip'd cpio, usr.squashfs $(numfmt --to=iec "$bytes"); $runs runs each, medians"
printf '%-40s %8.2f s  %8.1f MiB/s\n' "imagetool extract-usr (incl. fsync)" "$m_ours" "$(echo "$bytes / $m_ours / 1048576" | bc -l)"
printf '%-40s %8.2f s  %8.1f MiB/s\n' "zcat | cpio -i --to-stdout (+ sync)" "$m_theirs" "$(echo "$bytes / $m_theirs / 1048576" | bc -l)"
printf 'ratio: imagetool is %.2fx the pipeline'"'"'s throughput (target: >= 1.0); peak RSS %s KiB\n' "$(echo "$m_theirs / $m_ours" | bc -l)" "$rss"
