#!/usr/bin/env bash
# Runs the cargo-fuzz targets in fuzz/ for a bounded time each, one after the other, niced.
#
# Usage: scripts/fuzz.sh [TARGET|all|build|list] [SECONDS]
#   scripts/fuzz.sh                  every target, 60 s each
#   scripts/fuzz.sh p9 600           one target for ten minutes
#   scripts/fuzz.sh build            build every target, run none
#
# Uses the nightly toolchain if rustup has one, else stable with RUSTC_BOOTSTRAP=1 (sanitizer
# flags are nightly-only). Installs cargo-fuzz from crates.io if it is missing. Seeds are made
# fresh in fuzz/seeds/ from real tools (GNU cpio, mksquashfs, ssh-keygen); what the fuzzer finds
# accumulates in fuzz/corpus/; crashes land in fuzz/artifacts/TARGET/. Exits non-zero if any
# target crashed. See docs/fuzzing.md.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here/.."
. "$here/lib.sh"
. "$here/deps.sh"

TARGETS=(cpio squashfs virtio_blk virtio_net p9 fw_cfg cluster_yaml)
what=${1:-all}
seconds=${2:-60}
case "$what" in
  list) printf '%s\n' "${TARGETS[@]}"; exit 0 ;;
  all | build) run=("${TARGETS[@]}") ;;
  *)
    printf '%s\n' "${TARGETS[@]}" | grep -qx -- "$what" ||
      die "unknown target '$what': use one of ${TARGETS[*]} (or all, build, list)"
    run=("$what")
    ;;
esac
[[ "$seconds" =~ ^[0-9]+$ ]] && [ "$seconds" -gt 0 ] || die "SECONDS must be a positive number, not '$seconds'"

need_cargo
need_pkgs "${FUZZ_PKGS[@]}"
if ! command -v cargo-fuzz >/dev/null; then
  log "installing cargo-fuzz"
  cargo install cargo-fuzz --locked -q || die "cargo install cargo-fuzz failed"
fi
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  fuzz=(cargo +nightly fuzz)
else
  # Stable with unstable flags allowed: a fresh machine cannot fetch a nightly.
  export RUSTC_BOOTSTRAP=1
  fuzz=(cargo fuzz)
fi

log "building the fuzz targets"
nice -n 19 "${fuzz[@]}" build -O >/dev/null || die "cargo fuzz build failed"
[ "$what" = build ] && { log "built: ${TARGETS[*]}"; exit 0; }

seeds=fuzz/seeds
rm -rf "$seeds"
mkdir -p "$seeds"
for t in "${TARGETS[@]}"; do mkdir -p "$seeds/$t" "fuzz/corpus/$t"; done
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# cpio: a small tree archived by GNU cpio (newc), compressed each way, concatenated, padded;
# and an odc archive, which must be refused. The first input byte is the fuzz target's knob.
make_cpio_seeds() {
  local tree="$work/tree" out="$seeds/cpio"
  mkdir -p "$tree/etc" "$tree/usr/bin"
  printf 'hello\n' >"$tree/etc/hostname"
  head -c 3000 /dev/urandom >"$tree/usr/bin/blob"
  ln -s ../etc/hostname "$tree/usr/link"
  (cd "$tree" && find . | LC_ALL=C sort | cpio -o -H newc --quiet) >"$work/a.cpio"
  (cd "$tree" && find etc | cpio -o -H newc --quiet) >"$work/b.cpio"
  (cd "$tree" && find etc | cpio -o -H odc --quiet) >"$work/odc.cpio"
  gzip -9 -c "$work/a.cpio" >"$work/a.cpio.gz"
  xz -c --check=crc32 "$work/b.cpio" >"$work/b.cpio.xz"
  zstd -q -c "$work/b.cpio" >"$work/b.cpio.zst"
  local s
  for s in a.cpio b.cpio odc.cpio a.cpio.gz b.cpio.xz b.cpio.zst; do
    { printf '\x40'; cat "$work/$s"; } >"$out/$s"
  done
  { printf '\x80'; cat "$work/a.cpio"; head -c 512 /dev/zero; gzip -c "$work/b.cpio"; } >"$out/plain-then-gzip"
  { printf '\x10'; cat "$work/a.cpio.gz"; gzip -c "$work/b.cpio"; cat "$work/b.cpio.zst"; } >"$out/gzip-members-then-zstd"
}

# squashfs: the superblocks mksquashfs writes with each compressor, after an 8-byte length
# (the image's real size) that the target uses as the file length.
make_squashfs_seeds() {
  local tree="$work/sqtree" comp img
  mkdir -p "$tree/d"
  printf 'x\n' >"$tree/d/f"
  for comp in gzip xz zstd lzo lz4; do
    img="$work/$comp.sqfs"
    mksquashfs "$tree" "$img" -comp "$comp" -noappend -quiet >/dev/null 2>&1 || continue
    python3 - "$img" "$seeds/squashfs/$comp" <<'PY'
import os, struct, sys
img, out = sys.argv[1], sys.argv[2]
data = open(img, 'rb').read(96)
open(out, 'wb').write(struct.pack('<Q', os.path.getsize(img)) + data)
PY
  done
}

# 9P: a session a Linux client would send (frames after a length, the target's auto-size
# mode), and the mutating and escaping requests the filters must stop.
make_p9_seeds() {
  python3 - "$seeds/p9" <<'PY'
import struct, sys
out = sys.argv[1]
def s(b): return struct.pack('<H', len(b)) + b
def f(ty, tag, body): b = bytes([ty]) + struct.pack('<H', tag) + body; return struct.pack('<H', len(b)) + b
u32 = lambda v: struct.pack('<I', v); u64 = lambda v: struct.pack('<Q', v); u16 = lambda v: struct.pack('<H', v)
def walk(tag, fid, newfid, names): return f(110, tag, u32(fid) + u32(newfid) + u16(len(names)) + b''.join(s(n) for n in names))
start = f(100, 0xffff, u32(65536) + s(b'9P2000.L')) + f(104, 1, u32(0) + u32(0xffffffff) + s(b'root') + s(b'') + u32(0))
seeds = {
  'read-file': start + walk(2, 0, 1, [b'a.txt']) + f(12, 3, u32(1) + u32(0)) + f(116, 4, u32(1) + u64(0) + u32(4096)) + f(120, 5, u32(1)),
  'readdir': start + walk(2, 0, 1, [b'dir']) + f(12, 3, u32(1) + u32(0o200000)) + f(40, 4, u32(1) + u64(0) + u32(8192)) + f(24, 5, u32(1) + u64(0x7ff)),
  'symlinks': start + walk(2, 0, 1, [b'up']) + f(22, 3, u32(1)) + f(12, 4, u32(1) + u32(0)) + walk(5, 0, 2, [b'fifo']) + f(12, 6, u32(2) + u32(0)) + f(116, 7, u32(2) + u64(0) + u32(16)),
  'escapes': start + walk(2, 0, 1, [b'..']) + walk(3, 0, 1, [b'dir', b'..', b'..']) + walk(4, 0, 1, [b'../outside.txt']) + walk(5, 0, 1, [b'']),
  'writes': start + walk(2, 0, 1, [b'a.txt']) + f(12, 3, u32(1) + u32(0o1001)) + f(118, 4, u32(1) + u64(0) + u32(2) + b'hi')
            + f(14, 5, u32(0) + s(b'new') + u32(0o101) + u32(0o104755) + u32(0)) + f(72, 6, u32(0) + s(b'd2') + u32(0o2755) + u32(0))
            + f(76, 7, u32(0) + s(b'a.txt') + u32(0)) + f(74, 8, u32(0) + s(b'a.txt') + u32(0) + s(b'b.txt'))
            + f(26, 9, u32(1) + u32(1) + u32(0o4777) + u32(0) + u32(0) + u64(0) * 5) + f(32, 10, u32(1) + s(b'user.x') + u64(1) + u32(0))
            + f(70, 11, u32(0) + u32(1) + s(b'hard')) + f(122, 12, u32(1)),
}
for name, data in seeds.items():
    open(f'{out}/{name}', 'wb').write(b'\x01' + data)
PY
}

# Cluster YAML: the built-in demo and files naming what the target's fixture directory holds.
make_cluster_seeds() {
  local out="$seeds/cluster_yaml" key=""
  cp configs/demo.yaml "$out/demo.yaml"
  if ssh-keygen -q -t ed25519 -N '' -C seed -f "$work/key" >/dev/null 2>&1; then
    key=$(cat "$work/key.pub")
  fi
  cat >"$out/bridge.yaml" <<EOF
name: lab
image: { kernel: vmlinuz, initrd: initrd.img, cmdline: "console=ttyS0" }
network: { mode: bridge, subnet: 10.9.0.0/29, mtu: 9000 }
defaults: { cpus: 2, memory: 2G, root_size: 1G, user_data: user-data, ssh_keys: ["$key", key.pub] }
nodes:
  - { name: web, count: 3 }
  - { name: db, ignition: config.ign, memory: 512, cmdline: quiet }
EOF
  cat >"$out/user.yaml" <<EOF
name: solo
image:
  kernel: vmlinux
network:
  mode: user
nodes:
  - name: a
    user_data: script
  - name: b
    count: 2
EOF
}

make_cpio_seeds
make_squashfs_seeds
make_p9_seeds
make_cluster_seeds

failed=()
for t in "${run[@]}"; do
  dict=()
  [ -f "fuzz/dicts/$t.dict" ] && dict=("-dict=fuzz/dicts/$t.dict")
  log "fuzzing $t for ${seconds}s"
  start=$(date +%s)
  if nice -n 19 "${fuzz[@]}" run -O "$t" "fuzz/corpus/$t" "$seeds/$t" -- \
      -max_total_time="$seconds" -timeout=20 -rss_limit_mb=2048 -print_final_stats=1 \
      "${dict[@]}" 2>"$work/$t.log"; then
    log "$t: ran $(($(date +%s) - start))s, $(grep -o 'stat::number_of_executed_units: *[0-9]*' "$work/$t.log" | grep -o '[0-9]*$') inputs, no crash; corpus $(ls "fuzz/corpus/$t" | wc -l) files"
  else
    failed+=("$t")
    grep -E '^(==[0-9]+==ERROR|thread .* panicked|.*Test unit written to)' "$work/$t.log" | head -5 >&2 || true
    mkdir -p fuzz/artifacts && tail -n 30 "$work/$t.log" >"fuzz/artifacts/$t.last-log"
    log "$t: CRASHED after $(($(date +%s) - start))s; the input is in fuzz/artifacts/$t/"
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  die "crashes in: ${failed[*]}"
fi
log "all ${#run[@]} target(s) ran without a crash"
