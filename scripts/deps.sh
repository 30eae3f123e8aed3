# The Debian packages each job needs. Sourced by the scripts; keep one list per job.

# Building the workspace (liblzma-sys and zstd-sys compile C).
BUILD_PKGS=(build-essential pkg-config curl ca-certificates git)
# What imagetool runs (mkfs.ext4) and what the tests use to make and check fixtures.
IMAGE_PKGS=(e2fsprogs squashfs-tools cpio libarchive-tools gzip bzip2 xz-utils zstd file openssh-client python3 coreutils util-linux bc time)
# vmctl's bridge mode (scripts/demo.sh runs `vmctl up demo`): ip, dnsmasq; passt for user mode.
VMCTL_PKGS=(iproute2 dnsmasq-base passt)
# VM tests: the test kernel build, the test guest, QEMU as the baseline, networking.
# util-linux and mount: setpriv, unshare and mount for the unprivileged-VMM test.
VM_PKGS=(qemu-system-x86 busybox-static iproute2 dnsmasq-base passt systemd iputils-ping socat util-linux mount)
# Fuzzing (scripts/fuzz.sh): libFuzzer's C++ and the tools that make the seed corpora.
FUZZ_PKGS=(build-essential cpio squashfs-tools gzip xz-utils zstd openssh-client python3)
