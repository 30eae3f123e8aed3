#!/usr/bin/env bash
# Builds the test kernel from Debian's linux-source-6.1: tinyconfig + configs/kernel/test-kernel.config,
# with the one line that cannot run under PVM patched out (see ../shared/docs/environment.md or
# docs/testing.md). The result is cached outside the repository, keyed by everything that goes in.
# Prints the directory holding bzImage and vmlinux (a PVH ELF).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
root=$(dirname "$here")
fragment=$root/configs/kernel/test-kernel.config

need_pkgs linux-source-6.1 build-essential bc flex bison libelf-dev libssl-dev xz-utils
tarball=/usr/src/linux-source-6.1.tar.xz
srcver=$(dpkg-query -W -f='${Version}' linux-source-6.1)
# Bump when the recipe below changes what gets built.
recipe=1
key=$( { echo "$srcver recipe $recipe"; cat "$fragment"; } | sha256sum | cut -c1-16)
out=$VMCTL_CACHE/test-kernel/$key
if [ -f "$out/bzImage" ] && [ -f "$out/vmlinux" ]; then
  echo "$out"
  exit 0
fi

mkdir -p "$VMCTL_CACHE/test-kernel"
work=$(mktemp -d "$VMCTL_CACHE/test-kernel/build.XXXXXX")
trap 'rm -rf "$work"' EXIT
log "building the test kernel (linux-source-6.1 $srcver) in $work; about 10 minutes on 2 cores"
tar -xf "$tarball" -C "$work"
src=$work/linux-source-6.1
# int3_selftest() executes int3 from kernel mode, which PVM cannot emulate.
sed -i 's/^\(\s*\)int3_selftest();/\1\/* int3_selftest(); disabled: traps under PVM *\//' "$src/arch/x86/kernel/alternative.c"
grep -q 'int3_selftest(); disabled' "$src/arch/x86/kernel/alternative.c" || die "could not patch int3_selftest() out"
make -C "$src" -s tinyconfig >/dev/null
"$src/scripts/kconfig/merge_config.sh" -m -O "$src" "$src/.config" "$fragment" >/dev/null
make -C "$src" -s olddefconfig >/dev/null
# merge_config only warns when an option did not stick; an option we need that is missing is an error.
missing=$(grep -E '^CONFIG_[A-Z0-9_]+=y' "$fragment" | while read -r line; do grep -qx "$line" "$src/.config" || echo "$line"; done)
[ -z "$missing" ] || die "options did not take in the kernel config: $(echo $missing)"
make -C "$src" -s -j"$(nproc)" bzImage >"$work/build.log" 2>&1 || { tail -30 "$work/build.log" >&2; die "kernel build failed"; }
stage=$(mktemp -d "$VMCTL_CACHE/test-kernel/stage.XXXXXX")
chmod 755 "$stage"
cp "$src/arch/x86/boot/bzImage" "$src/vmlinux" "$stage/"
cp "$src/.config" "$stage/config"
rm -rf "$out"
mv "$stage" "$out"
log "test kernel cached in $out"
echo "$out"
