#!/usr/bin/env bash
# The README's first command. On a fresh Debian machine: installs what is needed, builds the
# workspace and the built-in demo image (a Flatcar-style PXE kernel + cpio.gz made from Debian
# packages), runs the image pipeline on it (the shared /usr squashfs, a sparse root image and a
# config drive for one node, a sparse export/import round trip of the root image), then brings
# the demo cluster up with `vmctl up demo` (three VMs on a bridge with a dnsmasq: needs root,
# through sudo when not root), shows `vmctl status`, and takes it down and destroys it again,
# so nothing is left running. Work files go to $VMCTL_DEMO_DIR (default:
# ~/.cache/vmctl-dev/demo-run); vmctl's state to /var/lib/vmctl (or $VMCTL_HOME).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
. "$here/lib.sh"
. "$here/deps.sh"

need_pkgs "${BUILD_PKGS[@]}" "${IMAGE_PKGS[@]}" "${VMCTL_PKGS[@]}"
need_cargo
cd "$root"
log "building the workspace (release)"
cargo build --release --quiet --workspace
target=${CARGO_TARGET_DIR:-$root/target}
imagetool=$target/release/imagetool
image=$("$here/build-demo-image.sh")
work=${VMCTL_DEMO_DIR:-$VMCTL_CACHE/demo-run}
mkdir -p "$work"

step() { printf '\n$ %s\n' "$*"; "$@"; }

step "$imagetool" inspect "$image/demo_pxe_image.cpio.gz"
step "$imagetool" extract-usr "$image/demo_pxe_image.cpio.gz" -o "$work/usr.squashfs" --verify
step "$imagetool" mkroot -o "$work/core-1.img" --size 8G --force
[ -f "$work/id_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C demo@vmctl -f "$work/id_ed25519"
cat > "$work/cloud-config.yaml" <<'YAML'
#cloud-config
hostname: core-1
write_files:
  - path: /etc/motd
    content: "vmctl demo node\n"
YAML
step "$imagetool" config-drive -o "$work/core-1.config" --hostname core-1 \
  --ssh-key "$work/id_ed25519.pub" --user-data "$work/cloud-config.yaml"
# --force: the work directory outlives the run, and the demo must run again on top of itself.
step "$imagetool" export "$work/core-1.img" -o "$work/core-1.img.zst" --digest "$work/core-1.img.zst.sha256" --force
step "$imagetool" import "$work/core-1.img.zst" -o "$work/core-1.copy.img" --force
step "$imagetool" inspect "$work/core-1.copy.img"
cmp "$work/core-1.img" "$work/core-1.copy.img"
printf '\nImage pipeline done in %s: one shared /usr, an 8 GiB root that costs %s on disk, its\nconfig drive, and an exported copy that round-trips byte for byte.\n' \
  "$work" "$(du -h "$work/core-1.img" | cut -f1)"

# The cluster: vmctl finds the VMM beside itself, and configs/demo.yaml from here.
vmctl=$target/release/vmctl
sudo=
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || die "vmctl up demo makes a bridge and TAPs, which needs root: run this script as root, or install sudo"
  sudo=sudo
fi
[ -e /dev/kvm ] || die "/dev/kvm does not exist: enable virtualization (VT-x/AMD-V, or nested virtualization) and load kvm_intel or kvm_amd"
# Whatever happens below, leave nothing running: the VMs, the bridge, its dnsmasq.
cleanup() {
  if $sudo "$vmctl" status demo >/dev/null 2>&1; then
    $sudo "$vmctl" destroy demo --yes --timeout 5 >/dev/null 2>&1 || true
  fi
}
trap cleanup EXIT
# On a host whose KVM cannot run guest user space (no vmx/svm: PVM), vmctl says so and checks
# each node's kernel boot and DHCP lease instead of ssh; boots take minutes there.
step $sudo "$vmctl" up demo --wait-timeout 1800
step $sudo "$vmctl" status demo
# down presses each power button; guests that do not power off within 5 s are powered off.
step $sudo "$vmctl" down -c demo --timeout 5
step $sudo "$vmctl" destroy demo --yes
trap - EXIT
printf '\nDemo done: the demo cluster came up, was checked, and is gone again.\n'
