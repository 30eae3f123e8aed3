#!/usr/bin/env bash
# Boot benchmark: our vmm next to `qemu-system-x86_64 -M microvm`, both booting the same PVH
# test guest (tests/guest). Prints medians of several runs and ratios; never fails on a
# target (the machine is shared and noisy).
#   RUNS=10 scripts/bench-boot.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
root=$(dirname "$here")

need_pkgs qemu-system-x86 gcc
need_cargo
[ -r /dev/kvm ] && [ -w /dev/kvm ] || die "/dev/kvm is not usable by $(id -un); the benchmark needs KVM"
guest=$("$here/build-test-guest.sh")
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$root/target}
log "building vmm and the benchmark driver (release)"
cargo build -q --release -p vmm --bin vmm --example bootbench --manifest-path "$root/Cargo.toml"

echo "host: $(uname -srm), $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
echo "kvm: $(grep -qwE 'vmx|svm' /proc/cpuinfo && echo 'hardware virtualization' || echo 'no vmx/svm flag (PVM)')"
echo "qemu: $(qemu-system-x86_64 --version | head -1)"
echo "guest: $guest ($(stat -c %s "$guest") bytes, PVH ELF)"
"$CARGO_TARGET_DIR/release/examples/bootbench" \
  --guest "$guest" \
  --vmm "$CARGO_TARGET_DIR/release/vmm" \
  --qemu "$(command -v qemu-system-x86_64)" \
  --runs "${RUNS:-10}" \
  --memory "${MEMORY_MIB:-128}"
