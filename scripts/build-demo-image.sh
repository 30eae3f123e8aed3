#!/usr/bin/env bash
# Builds the built-in demo image, shaped like Flatcar's PXE pair: a kernel and a gzip'd newc cpio
# holding `.`, `./etc`, `./usr.squashfs`, and (where Flatcar builds it into the kernel) a first
# stage: `./init` and a static busybox (configs/demo-image/init), which mounts the root disk and
# /usr as vmctl's command line says and switches to busybox init in /usr. /usr comes from Debian
# packages: busybox-static, dropbear and the libraries dropbear needs; configs/demo-image/rc
# takes the host name and ssh keys from the config drive (9p, config-2), gets an address by DHCP
# and starts dropbear, so `vmctl ssh` works where guests run user space. The kernel is the test
# kernel built from Debian's linux-source-6.1 (stock kernels cannot boot under PVM; see
# docs/testing.md), as its stripped ELF vmlinux with a PVH entry: a bzImage's in-guest
# decompression takes many minutes under PVM (measured with our VMM and with QEMU alike), while
# the ELF is entered directly. Cached outside the repository; prints its directory, which holds
# demo.vmlinux and demo_pxe_image.cpio.gz.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"

packages=(busybox-static dropbear-bin libc6 libcrypt1 libtomcrypt1 libtommath1 libgmp10 zlib1g)
files=$(cd "$here/../configs/demo-image" && pwd)
need_pkgs squashfs-tools libarchive-tools gzip binutils
kernel_dir=$("$here/build-test-kernel.sh")

versions=$(for p in "${packages[@]}"; do apt-cache policy "$p" | awk '/Candidate/ {print $2}'; done | tr '\n' ' ')
key=$( { echo "recipe 3 $versions"; sha256sum "$kernel_dir/vmlinux"; (cd "$files" && sha256sum -- *); } | sha256sum | cut -c1-16)
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
for d in bin sbin lib lib64; do
  if [ -d "$work/pkgroot/$d" ] && [ ! -L "$work/pkgroot/$d" ]; then
    mkdir -p "$usr/$d"
    cp -a "$work/pkgroot/$d/." "$usr/$d/"
    rm -rf "${work:?}/pkgroot/$d"
  fi
done
rm -rf "$usr/share/doc" "$usr/share/man" "$usr/share/locale" "$usr/share/lintian" "$usr/share/info" \
  "$usr/lib/x86_64-linux-gnu/gconv"
# busybox's applets as links, without replacing real programs (dropbear's, the libraries').
for applet in $("$usr/bin/busybox" --list-full); do
  case $applet in
    sbin/* | usr/sbin/*) link=$usr/sbin/${applet##*/} ;;
    *) link=$usr/bin/${applet##*/} ;;
  esac
  mkdir -p "$(dirname "$link")"
  [ -e "$link" ] || [ -L "$link" ] || ln -s "$(realpath --relative-to="$(dirname "$link")" "$usr/bin/busybox")" "$link"
done
mkdir -p "$usr/lib/vmctl-demo"
install -m 0755 "$files/rc" "$files/udhcpc.script" "$files/autologin" "$usr/lib/vmctl-demo/"
install -m 0644 "$files/inittab" "$usr/lib/vmctl-demo/"
cat > "$usr/lib/os-release" <<'OSR'
NAME="vmctl demo"
ID=vmctl-demo
ID_LIKE=flatcar
PRETTY_NAME="vmctl demo (busybox + dropbear from Debian)"
OSR
mksquashfs "$usr" "$work/usr.squashfs" -comp gzip -all-root -quiet -no-progress -noappend >/dev/null
mkdir -p "$work/pxe/etc" "$work/pxe/bin"
mv "$work/usr.squashfs" "$work/pxe/usr.squashfs"
install -m 0755 "$files/init" "$work/pxe/init"
install -m 0755 "$usr/bin/busybox" "$work/pxe/bin/busybox"
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
