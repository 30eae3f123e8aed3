#!/bin/bash
# Stands in for the VMM in vmctl's tests where a boot adds nothing (the files a node gets,
# export, a VMM that answers nothing): it takes vmctl's flags, records them beside the console
# log, leaves an API socket file nobody answers on, and exits on SIGTERM (unless
# STANDIN_IGNORE_TERM=1, to test the SIGKILL). It boots nothing; the real VMM's tests are
# vm_lifecycle.rs, run.rs and cluster_boot.rs.
if [ "$1" = --help ]; then
  echo "Usage: vmm --kernel --initrd --cmdline --cpus --memory --disk --net --share --ignition"
  echo "           --serial --api-socket --boot-marker --shutdown-timeout -v"
  exit 0
fi
# Signals first: vmctl may ask it to stop at any moment after it starts.
if [ "${STANDIN_IGNORE_TERM:-}" = 1 ]; then
  trap '' TERM
else
  trap 'echo "stand-in: powered off" >> "$console"; rm -f "$api"; exit 0' TERM
fi
console= api= prev=
for a in "$@"; do
  case $prev in
    --serial) console=${a#file=} ;;
    --api-socket) api=$a ;;
  esac
  prev=$a
done
[ -n "$console" ] && [ -n "$api" ] || { echo "stand-in vmm: --serial file= and --api-socket needed" >&2; exit 2; }
printf '%s\n' "$@" > "$(dirname "$console")/vmm.args"
python3 -c 'import socket,sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])' "$api"
echo "stand-in: up (pid $$)" >> "$console"
while :; do sleep 0.1; done
