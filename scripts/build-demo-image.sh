#!/usr/bin/env bash
# Builds the built-in demo image, shaped like Flatcar's PXE pair: a kernel and a gzip'd newc cpio
# holding `.`, `./etc` and `./usr.squashfs`. /usr comes from Debian packages (busybox-static,
# dropbear), the kernel is the test kernel built from Debian's linux-source-6.1 (stock kernels
# cannot boot under PVM; see docs/testing.md), as its stripped ELF vmlinux with a PVH entry: a
# bzImage's in-guest decompression takes many minutes under PVM (measured with our VMM and with
# QEMU alike), while the ELF is entered directly. Cached outside the repository; prints its
# directory, which holds demo.vmlinux and demo_pxe_image.cpio.gz.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"

packages=(busybox-static dropbear-bin)
need_pkgs squashfs-tools libarchive-tools gzip binutils
kernel_dir=$("$here/build-test-kernel.sh")

versions=$(for p in "${packages[@]}"; do apt-cache policy "$p" | awk '/Candidate/ {print $2}'; done | tr '\n' ' ')
key=$( { echo "recipe 2 $versions"; sha256sum "$kernel_dir/vmlinux"; } | sha256sum | cut -c1-16)
out=$VMCTL_CACHE/demo-image/$key
# configs/demo.yaml reads the image through this stable name.
point_current() { ln -sfn "$key" "$VMCTL_CACHE/demo-image/current.tmp" && mv -T "$VMCTL_CACHE/demo-image/current.tmp" "$VMCTL_CACHE/demo-image/current"; }
if [ -f "$out/demo_pxe_image.cpio.gz" ] && [ -f "$out/demo.vmlinux" ]; then
  point_current
  echo "$out"
  exit 0
fi

mkdir -p "$VMCTL_CACHE/demo-image"
work=$(mktemp -d "$VMCTL_CACHE/demo-image/build.XXXXXX")
trap 'rm -rf "$work"' EXIT
log "building the demo PXE image from Debian packages: ${packages[*]}"
(cd "$work" && apt-get download -q "${packages[@]}" >/dev/null 2>&1) || {
  need_pkgs apt
  sudo=; [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update -qq >/dev/null
  (cd "$work" && apt-get download -q "${packages[@]}" >/dev/null) || die "apt-get download ${packages[*]} failed"
}
mkdir -p "$work/pkgroot"
for deb in "$work"/*.deb; do dpkg-deb -x "$deb" "$work/pkgroot"; done
# Flatcar keeps everything in /usr (the rest of / links into it); so does the demo.
usr=$work/pkgroot/usr
mkdir -p "$usr/bin" "$usr/lib"
[ -x "$work/pkgroot/bin/busybox" ] && mv "$work/pkgroot/bin/busybox" "$usr/bin/busybox"
cat > "$usr/lib/os-release" <<'OSR'
NAME="vmctl demo"
ID=vmctl-demo
ID_LIKE=flatcar
PRETTY_NAME="vmctl demo (busybox + dropbear from Debian)"
OSR
mksquashfs "$usr" "$work/usr.squashfs" -comp gzip -all-root -quiet -no-progress -noappend >/dev/null
mkdir -p "$work/pxe/etc"
mv "$work/usr.squashfs" "$work/pxe/usr.squashfs"
# bsdcpio keeps the ./ prefix Flatcar's archive has (GNU cpio strips it).
(cd "$work/pxe" && find . | LC_ALL=C sort | bsdcpio -o --format newc --quiet) | gzip -9 > "$work/demo_pxe_image.cpio.gz"
stage=$(mktemp -d "$VMCTL_CACHE/demo-image/stage.XXXXXX")
chmod 755 "$stage"
objcopy --strip-all "$kernel_dir/vmlinux" "$stage/demo.vmlinux"
mv "$work/demo_pxe_image.cpio.gz" "$stage/"
rm -rf "$out"
mv "$stage" "$out"
point_current
log "demo image cached in $out"
echo "$out"
