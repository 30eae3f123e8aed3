#!/usr/bin/env bash
# Builds the freestanding test guest (tests/guest: a PVH ELF that our vmm and QEMU both boot)
# with the host's gcc, into a cache directory keyed by its sources. Prints the ELF's path.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
root=$(dirname "$here")
src=$root/tests/guest

need_pkgs gcc binutils
key=$(cat "$src"/guest.c "$src"/entry.S "$src"/guest.ld "$0" | sha256sum | cut -c1-16)
out=$VMCTL_CACHE/test-guest/$key
elf=$out/guest.elf
if [ -f "$elf" ]; then
  echo "$elf"
  exit 0
fi
mkdir -p "$VMCTL_CACHE/test-guest"
work=$(mktemp -d "$VMCTL_CACHE/test-guest/build.XXXXXX")
trap 'rm -rf "$work"' EXIT
# No SSE/x87 (the guest never enables them), no red zone (interrupts use the same stack),
# no PIC/PIE (linked at a fixed physical address), no stack protector (no TLS).
cflags=(-O2 -std=gnu11 -Wall -Wextra -Werror -ffreestanding -fno-builtin -nostdlib -static
        -mgeneral-regs-only -mno-red-zone -fno-pic -fno-pie -no-pie -fno-stack-protector
        -fno-asynchronous-unwind-tables -mcmodel=small -Wl,--build-id=none -Wl,-n -Wl,--no-warn-rwx-segments)
gcc "${cflags[@]}" -T "$src/guest.ld" -o "$work/guest.elf" "$src/entry.S" "$src/guest.c" \
  || die "building the test guest failed"
mkdir -p "$out"
mv "$work/guest.elf" "$elf"
log "test guest built: $elf"
echo "$elf"
