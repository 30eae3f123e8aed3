#!/usr/bin/env bash
# Disk cost of a 5-node cluster from the demo image: one shared usr.squashfs in the image store
# plus five sparse root disks, next to what five full copies would cost (each VM with its own
# /usr and a fully allocated root). Prints figures (bytes allocated, from du); passes or fails
# nothing. The five VMs are started with the project's VMM (user-mode networking, so no bridge
# is needed) and stopped again before measuring: the roots are measured after a first start.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
. "$here/lib.sh"
. "$here/deps.sh"

need_pkgs "${BUILD_PKGS[@]}" "${IMAGE_PKGS[@]}" "${VMCTL_PKGS[@]}"
need_cargo
cd "$root"
cargo build --release --quiet -p vmctl -p vmm
vmctl=$root/target/release/vmctl
image=$("$here/build-demo-image.sh")

work=$(mktemp -d "${TMPDIR:-/tmp}/vmctl-bench-disk.XXXXXX")
cleanup() {
  VMCTL_HOME=$work/state "$vmctl" down -c bench --timeout 5 >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
cat > "$work/bench.yaml" <<YAML
name: bench
image:
  kernel: $image/demo.vmlinux
  initrd: $image/demo_pxe_image.cpio.gz
network: { mode: user }
defaults: { cpus: 1, memory: 256, root_size: 8G }
nodes:
  - { name: core, count: 5 }
YAML
export VMCTL_HOME=$work/state
"$vmctl" up "$work/bench.yaml" --no-wait >/dev/null
"$vmctl" down -c bench --timeout 5 >/dev/null

alloc() { du -B1 -s "$@" | awk '{s += $1} END {printf "%d\n", s}'; }
apparent() { du -B1 -s --apparent-size "$@" | awk '{s += $1} END {printf "%d\n", s}'; }
human() { numfmt --to=iec-i --suffix=B "$1"; }

usr=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["usr"])' "$VMCTL_HOME/clusters/bench/images.json")
roots=("$VMCTL_HOME"/clusters/bench/nodes/*/root.img)
usr_bytes=$(alloc "$usr")
roots_alloc=$(alloc "${roots[@]}")
root_apparent=$(apparent "${roots[0]}")
shared=$((usr_bytes + roots_alloc))
full=$((5 * (usr_bytes + root_apparent)))
usr_copies=$((5 * usr_bytes + roots_alloc))

printf 'machine: %s, %s\n' "$(uname -srm)" "$(df -T "$work" | awk 'NR==2 {print $2}')"
printf '%-48s %14s %10s\n' "5-node cluster (demo image, 8 GiB roots)" "bytes" "human"
printf '%-48s %14d %10s\n' "shared usr.squashfs (one, in the store)" "$usr_bytes" "$(human "$usr_bytes")"
printf '%-48s %14d %10s\n' "five sparse roots, allocated" "$roots_alloc" "$(human "$roots_alloc")"
printf '%-48s %14d %10s\n' "vmctl total" "$shared" "$(human "$shared")"
printf '%-48s %14d %10s\n' "five /usr copies + the same sparse roots" "$usr_copies" "$(human "$usr_copies")"
printf '%-48s %14d %10s\n' "five full copies (own /usr, allocated roots)" "$full" "$(human "$full")"
awk -v a="$shared" -v b="$full" -v c="$usr_copies" 'BEGIN {
  printf "ratio: vmctl costs %.5f of five full copies, %.3f of five /usr copies with sparse roots\n", a / b, a / c }'
