#!/usr/bin/env bash
# The README's first command. On a fresh Debian machine: installs what is needed, builds the
# workspace and the built-in demo image (a Flatcar-style PXE kernel + cpio.gz made from Debian
# packages), then runs the image pipeline on it: the shared /usr squashfs, a sparse root image
# and a config drive for one node, and a sparse export/import round trip of the root image.
# Work files go to $VMCTL_DEMO_DIR (default: ~/.cache/vmctl-dev/demo-run).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
. "$here/lib.sh"
. "$here/deps.sh"

need_pkgs "${BUILD_PKGS[@]}" "${IMAGE_PKGS[@]}"
need_cargo
cd "$root"
log "building the workspace (release)"
cargo build --release --quiet --workspace
imagetool=$root/target/release/imagetool
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
step "$imagetool" export "$work/core-1.img" -o "$work/core-1.img.zst" --digest "$work/core-1.img.zst.sha256"
rm -f "$work/core-1.copy.img"
step "$imagetool" import "$work/core-1.img.zst" -o "$work/core-1.copy.img"
step "$imagetool" inspect "$work/core-1.copy.img"
cmp "$work/core-1.img" "$work/core-1.copy.img"
printf '\nDemo done in %s: one shared /usr, an 8 GiB root that costs %s on disk, its config drive,\nand an exported copy that round-trips byte for byte.\n' \
  "$work" "$(du -h "$work/core-1.img" | cut -f1)"
