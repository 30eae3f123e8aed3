#!/usr/bin/env bash
# Device throughput benchmark: sequential reads of one page-cached file, measured inside the
# test guest (tests/guest, timed with kvmclock) through virtio-blk (256 KiB requests) and
# virtio-9p (Tread of the negotiated msize, 64 KiB), next to `dd` reading the same file on the
# host with the same block sizes. Prints medians of several runs and the ratios; never fails
# on a figure (the machine is shared and noisy).
#   RUNS=5 SIZE_MIB=64 scripts/bench-devices.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
root=$(dirname "$here")

need_pkgs gcc python3 coreutils
need_cargo
[ -r /dev/kvm ] && [ -w /dev/kvm ] || die "/dev/kvm is not usable by $(id -un); the benchmark needs KVM"
runs=${RUNS:-5}
size_mib=${SIZE_MIB:-64}
guest=$("$here/build-test-guest.sh")
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$root/target}
log "building vmm (release)"
cargo build -q --release -p vmm --bin vmm --manifest-path "$root/Cargo.toml"
vmm=$CARGO_TARGET_DIR/release/vmm

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/share"
data=$work/share/data.bin
# The disk pattern the guest checks: byte j of sector s is (s * 3 + j) & 0xff; it repeats
# every 256 sectors.
python3 - "$data" "$size_mib" <<'PY'
import sys
block = bytes((s * 3 + j) & 255 for s in range(256) for j in range(512))
with open(sys.argv[1], "wb") as f:
    for _ in range(int(sys.argv[2]) * 1024 * 1024 // len(block)):
        f.write(block)
PY
cat "$data" >/dev/null # same cache state for everyone: all of it in the page cache

# MiB/s of `dd` reading the file with block size $1.
host_rate() {
  dd if="$data" of=/dev/null bs="$1" 2>&1 | awk '/copied/ { for (i = 1; i <= NF; i++) if ($i ~ /^s,?$/) t = $(i - 1); print $1 / t / 1048576 }'
}

median() { sort -n | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

: >"$work/host256" ; : >"$work/host64" ; : >"$work/blk" ; : >"$work/p9"
for i in $(seq "$runs"); do
  host_rate 256K >>"$work/host256"
  host_rate 64K >>"$work/host64"
  out=$("$vmm" --kernel "$guest" --memory 128 --serial stdio --rng off \
          --disk "path=$data,readonly=on" --share "path=$work/share,tag=bench,readonly=on" \
          --cmdline "blkbench p9bench=data.bin" </dev/null) || true
  grep -q 'guest: PASS' <<<"$out" || die "the benchmark guest failed: $(grep FAIL <<<"$out" | head -3 | tr '\n' ' ')"
  rate() { grep "guest: bench $1 " <<<"$out" | sed -E 's/.*bytes=([0-9]+) ns=([0-9]+).*/\1 \2/' | awk '{ print $1 / ($2 / 1e9) / 1048576 }'; }
  rate virtio-blk >>"$work/blk"
  rate virtio-9p >>"$work/p9"
done

h256=$(median <"$work/host256"); h64=$(median <"$work/host64")
blk=$(median <"$work/blk"); p9=$(median <"$work/p9")
echo "host: $(uname -srm), $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
echo "kvm: $(grep -qwE 'vmx|svm' /proc/cpuinfo && echo 'hardware virtualization' || echo 'no vmx/svm flag (PVM)')"
echo "file: $size_mib MiB, page-cached; $runs runs, medians; guest timing: kvmclock around each request"
awk -v h256="$h256" -v h64="$h64" -v blk="$blk" -v p9="$p9" 'BEGIN {
  printf "%-34s %10s %10s\n", "reader", "MiB/s", "vs host"
  printf "%-34s %10.0f %10s\n", "host dd bs=256K", h256, "1.00"
  printf "%-34s %10.0f %10.2f\n", "guest virtio-blk, 256 KiB requests", blk, blk / h256
  printf "%-34s %10.0f %10s\n", "host dd bs=64K", h64, "1.00"
  printf "%-34s %10.0f %10.2f\n", "guest virtio-9p, 64 KiB Tread", p9, p9 / h64
}'
