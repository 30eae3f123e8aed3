#!/bin/bash
# Stands in for the VMM in vmctl's tests until the VMM has networking, 9p and the API socket
# (issue 5): it takes vmctl's flags, records them beside the console log, prints the line a
# booted kernel prints, leaves an API socket file, and powers off on SIGTERM (unless
# STANDIN_IGNORE_TERM=1, to test the hard stop). It boots nothing.
if [ "$1" = --help ]; then
  echo "Usage: vmm --kernel --initrd --cmdline --cpus --memory --disk --net --share --ignition"
  echo "           --serial --api-socket --boot-marker --shutdown-timeout"
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
echo "[    0.5] Run /init as init process" >> "$console"
echo "stand-in: up (pid $$)" >> "$console"
while :; do sleep 0.1; done
