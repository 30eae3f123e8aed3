# Shared helpers for the scripts in this directory. Source it; do not run it.

# Where builds that outlive a checkout are cached (the test kernel, the demo image).
VMCTL_CACHE=${VMCTL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/vmctl-dev}

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# Installs Debian packages that are missing; one apt-get call for all of them.
need_pkgs() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing Debian packages: ${missing[*]}"
  local sudo=
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null ||
    die "apt-get update failed; check the network and /etc/apt/sources.list"
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null ||
    die "apt-get install ${missing[*]} failed"
}

# Makes cargo available in this shell, installing rustup's toolchain only when it is missing.
need_cargo() {
  [ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
  command -v cargo >/dev/null && return 0
  need_pkgs curl ca-certificates
  log "installing the Rust toolchain with rustup"
  curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal >/dev/null || die "rustup install failed"
  . "$HOME/.cargo/env"
}
