#!/usr/bin/env bash
# Runs all the tests on a fresh Debian machine: installs what they need (Debian packages, Rust),
# builds the test kernel (cached outside the repository), then runs the whole workspace's tests,
# including the heavy ones (`#[ignore]`d for plain `cargo test`: KVM, the test kernel, network
# namespaces), and the lints.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
. "$here/lib.sh"
. "$here/deps.sh"

need_pkgs "${BUILD_PKGS[@]}" "${IMAGE_PKGS[@]}" "${VM_PKGS[@]}"
need_cargo
cd "$root"

VMCTL_TEST_KERNEL_DIR=$("$here/build-test-kernel.sh")
export VMCTL_TEST_KERNEL_DIR
VMCTL_TEST_DEMO_IMAGE=$("$here/build-demo-image.sh")
export VMCTL_TEST_DEMO_IMAGE
if [ -x "$here/build-test-guest.sh" ]; then
  VMCTL_TEST_GUEST=$("$here/build-test-guest.sh")
  export VMCTL_TEST_GUEST
fi

log "cargo fmt --check"
cargo fmt --all -- --check || die "code is not formatted: run cargo fmt --all"
log "cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings
log "cargo test (including the heavy tests)"
cargo test --workspace -- --include-ignored
log "all tests passed"
