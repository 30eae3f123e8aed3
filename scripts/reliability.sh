#!/usr/bin/env bash
# Runs the fault-injection tests (vmm/tests/faults.rs, imagetool's interrupted export/import)
# and the bad-input tests that already exist (imagetool inputs, vmm and vmctl configuration
# errors, 9p confinement, malformed virtio requests, ...), each by name, and writes the results
# as a Markdown table to docs/reliability.md (also printed): fault or bad input tried, what is
# expected, and pass/fail from this run, with the machine it ran on. Rerun it to regenerate.
#
# Usage: scripts/reliability.sh            (needs root and /dev/kvm for the VM tests, like
#                                           scripts/test.sh; about 10 minutes on 2 cores)
# Exits non-zero if any listed test failed or did not run; the document records it either way.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
. "$here/lib.sh"
. "$here/deps.sh"

need_pkgs "${BUILD_PKGS[@]}" "${IMAGE_PKGS[@]}" "${VM_PKGS[@]}" gcc binutils
need_cargo
cd "$root"

VMCTL_TEST_GUEST=$("$here/build-test-guest.sh")
export VMCTL_TEST_GUEST

# package | test target (lib or a tests/ file) | test name | fault or bad input tried | expected
# (no '|' inside fields)
read -r -d '' TESTS <<'EOF' || true
vmm|faults|kill_9_mid_stream_keeps_every_block_the_guest_saw_flushed|SIGKILL of the VMM while the test guest writes numbered blocks with VIRTIO_BLK_T_FLUSH|every block reported flushed is in the image (cmp, dd); later blocks whole or absent; a new VMM opens the disk at once
vmm|faults|a_full_filesystem_gives_the_guest_io_errors_and_the_vmm_says_why_once|disk image on a full 2 MiB tmpfs (private mount namespace), guest writes 8 MiB|IOERR to the guest, VMM stays up (reads, flush, API status), ENOSPC and the path logged once
vmm|faults|a_malicious_driver_gets_errors_and_the_vmm_keeps_serving_the_other_devices|malicious driver on virtio-blk, -rng and -9p (chains, indirect tables, rings, queue size, notifications)|each gets an error or is ignored; the VMM keeps serving; a second disk reads correctly
vmm|faults|a_malicious_nic_driver_cannot_stall_the_device_thread|malicious driver on virtio-net: bad transmit chains, receive avail index 1000 ahead while frames arrive|frames dropped, receive queue stopped; the device thread keeps serving the disks
vmm|guest|guest_drives_two_disks_and_reads_the_serial|garbage virtio-blk requests from the test guest: past the end, buffer outside RAM, odd length, unknown type, self-loop, bad next index|IOERR or UNSUPP or a used entry of length 0; the disk keeps serving
vmm|guest|closed_stdout_and_stderr_do_not_bring_the_vmm_down|the VMM's stdout and stderr pipes closed by their reader (vmctl run gone), then SIGTERM|log lines and console output dropped; the VMM presses the button, times out and exits 6 as it should
vmm|lib|devices::fw_cfg::tests::a_dma_read_longer_than_a_chunk_copies_the_whole_item_then_zeros|a fw_cfg DMA read longer than the item (the guest picks the length)|copied in 4 KiB chunks, zeros past the item, nothing past the buffer
vmm|devices|console_clients_replace_and_leave_without_harm|API console clients that leave, and one replaced by a newer one, under the default seccomp filters|the VMM keeps serving; the newer client keeps the guest output (the API thread once died by SIGSYS on an fstat here)
vmm|guest|a_writable_disk_cannot_be_shared_by_two_vms|a second VMM opening a disk another VMM writes|refused in one line (the image is locked); read-only sharing works
vmm|devices|guest_reads_a_share_over_9p_and_cannot_change_a_read_only_one|9P walks out of the share (.., symlinks), writes to a read-only share, a malformed 9P frame|refused with Rlerror; the share and the files beside it unchanged
vmm|lib|virtio::p9::confine::tests::escapes_are_refused_in_every_name_field|9P names with '/', '..' or NUL in every name field|refused before any file system call
vmm|lib|virtio::p9::server::tests::symlinks_pointing_out_are_not_followed|a symlink in the share pointing outside it|not followed
vmm|lib|virtio::p9::server::tests::dotdot_and_slashes_cannot_leave_the_share|walks with '..' and slashes|cannot leave the share
vmm|lib|virtio::p9::server::tests::read_only_share_refuses_changes_and_stays_unchanged|every changing 9P request on a read-only share|refused (EROFS); the tree unchanged
vmm|lib|virtio::p9::server::tests::malformed_frames_get_rlerror_with_their_tag|malformed 9P frames|Rlerror with the request's tag
vmm|lib|virtio::p9::message::tests::every_truncation_is_an_error|every truncation of every 9P message|a parse error, never a panic
vmm|lib|virtio::block::request::tests::malformed_chains|malformed virtio-blk chains (no status, header too short or writable, wrong directions)|refused with IOERR or a used entry of length 0
vmm|lib|virtio::block::request::tests::past_the_end_and_overflowing_sectors_are_refused|sectors past the end and sector numbers that overflow|IOERR, no I/O
vmm|lib|virtio::block::request::tests::buffers_outside_memory_are_refused|virtio-blk buffers outside guest memory|IOERR, nothing read or written
vmm|lib|virtio::block::request::tests::read_only_disks_refuse_every_write_kind|write, flush, discard, write-zeroes on a read-only disk|IOERR, the image unchanged
vmm|lib|virtio::block::device::tests::runaway_avail_index_does_not_hang|virtio-blk avail index far ahead or wrapped backwards|queue stopped, no spin
vmm|lib|virtio::block::io::tests::failed_writes_keep_their_errno_and_are_logged_once|host write failures on every request|IOERR to the guest, errno kept, logged once then counted
vmm|lib|virtio::net::device::tests::runaway_rx_avail_index_stops_the_queue_instead_of_spinning|virtio-net receive avail index far ahead while a frame waits|receive queue stopped (it used to spin forever)
vmm|lib|virtio::net::header::tests::each_malformed_case_has_its_error|malformed virtio-net headers (GSO, checksum offsets, lengths)|each refused with its own error
vmm|lib|virtio::net::tx::tests::bad_chains_are_refused|bad virtio-net transmit chains|refused, frame dropped
vmm|lib|virtio::net::rx::tests::malformed_buffers_are_set_aside|malformed virtio-net receive buffers|set aside, completed with length 0
vmm|lib|virtio::pci::tests::rings_outside_memory_need_reset_instead_of_activation|virtqueue rings outside guest memory at DRIVER_OK|DEVICE_NEEDS_RESET instead of activation
vmm|lib|virtio::common_config::tests::legacy_or_unknown_features_are_refused|legacy drivers (no VERSION_1) and features never offered|FEATURES_OK refused
vmm|lib|virtio::queue_server::tests::avail_index_ahead_or_behind_stops_the_queue_once|rng/9p avail index ahead or wrapped backwards|queue stopped once, no chain served
vmm|lib|devices::fw_cfg::tests::dma_outside_guest_memory_gets_the_error_bit_and_nothing_is_written|fw_cfg DMA to addresses outside guest memory|error bit set, nothing written
vmm|lib|api::protocol::tests::each_bad_request_has_its_error|malformed API requests (not JSON, unknown command, wrong types)|one error answer each; the server keeps going
vmm|cli|missing_kernel|no kernel, a kernel path that does not exist|exit 2 with a one-line error
vmm|cli|a_file_that_is_not_a_kernel|a text file as the kernel|exit 2: is not a Linux kernel
vmm|cli|bad_values|out-of-range cpus and memory, malformed --disk values|exit 2 with a one-line error naming the value
vmm|cli|empty_disk_image_is_refused|an empty disk image|exit 2: at least one 512-byte sector is needed
vmm|cli|config_file_errors|vm.yaml with unknown keys, bad YAML, a missing file|exit 2 with a one-line error
vmm|devices|new_flags_fail_with_one_line_errors|bad --share, --ignition (broken JSON), --rng, --api-socket values|exit 2 with a one-line error
vmm|net|bad_net_flags_are_one_line_usage_errors|malformed --net values (bad names, multicast MAC, forwards)|exit 2 with a one-line error
vmm|net|missing_passt_is_a_one_line_error|--net user without passt installed|exit 2: says to install passt
vmm|net|unusable_taps_are_one_line_errors|TAPs that cannot be used: not a TAP, a TUN, multi-queue, owned by another user, busy|a one-line error each
imagetool|extract_usr|bad_inputs_fail_cleanly|cpio inputs: random bytes, text, empty, truncated, bzip2, odc format, no squashfs, bad squashfs superblocks, lzma|a one-line error each, no output left
imagetool|extract_usr|verify_catches_a_corrupt_data_block|a squashfs whose inode table is garbled|--verify fails, no output left
imagetool|extract_usr|interrupted_extraction_leaves_nothing_behind|SIGINT during extract-usr from a pipe|nothing left behind
imagetool|lib|squashfs::tests::rejects_each_inconsistency|squashfs superblocks with each field inconsistent|refused with its own error
imagetool|mkroot|bad_requests_fail_cleanly|mkroot with a size too small, a label too long, bad paths|a one-line error, nothing written
imagetool|mkroot|refuses_to_overwrite_without_force|mkroot over an existing file|refused without --force; the file unchanged
imagetool|config_drive|bad_inputs_fail_cleanly|config drive inputs: bad SSH keys, private keys, Ignition as user data, broken JSON, symlinked output|a one-line error each, no output left
imagetool|sparse_cli|truncated_streams_fail_and_leave_nothing|import of streams cut at every part (ours and stock gzip/zstd)|fails, no partial image left
imagetool|sparse_cli|digests_are_checked_and_mismatches_leave_nothing|import with a digest file that does not match|fails, no image left
imagetool|sparse_cli|corrupt_and_joined_streams_fail|a flipped byte in a stream, two streams joined|fails naming the corruption
imagetool|sparse_cli|bad_arguments_fail_before_any_output|bad levels, missing or non-image inputs, unwritable outputs|a one-line error before any output
imagetool|sparse_cli|existing_outputs_need_force|export/import over existing files|refused without --force; the files unchanged
imagetool|sparse_lib|import_errors_name_what_went_wrong_and_leave_nothing|library import of bad streams|errors name the problem; nothing left
imagetool|sparse_signals|a_reader_that_goes_away_is_a_one_line_error_and_leaves_no_digest|export to a pipe whose reader closes after 4 KiB|one-line error, no digest file left
imagetool|sparse_signals|sigint_and_sigterm_during_import_leave_nothing|SIGINT and SIGTERM halfway through an import from stdin|the signal's status, nothing left
imagetool|sparse_signals|sigint_during_export_leaves_nothing|SIGINT during an export to a full pipe|the signal's status, nothing left
imagetool|sparse_interrupt|export_into_head_c_1m_fails_in_one_line_and_leaves_the_source_alone|imagetool export img -o - into head -c 1M|head gets 1 MiB, export fails in one line, no digest left, source checksum unchanged
imagetool|sparse_interrupt|sigint_during_an_export_to_a_file_leaves_nothing_and_the_source_alone|SIGINT halfway through an export to a file|no output or temporary file left, source checksum unchanged
imagetool|sparse_interrupt|sigint_during_an_import_from_a_pipe_keeps_the_old_output_and_the_stream|SIGINT halfway through import --force from a named pipe over an existing image|old image keeps its checksum, stream file unchanged, nothing left
vmctl|cluster_file|syntax_error_has_line_and_column|cluster YAML with a syntax error|error with line and column
vmctl|cluster_file|unknown_key_is_rejected_where_it_is|cluster YAML with an unknown key|error pointing at the key
vmctl|cluster_file|invalid_node_name|a node name that is not a valid host name|refused
vmctl|cluster_file|bad_values_point_at_themselves|bad values in the cluster YAML|error pointing at each value
vmctl|cluster_file|a_kernel_that_is_not_a_kernel|a cluster whose kernel is not a kernel|refused before anything starts
EOF

work=$(mktemp -d "${TMPDIR:-/tmp}/reliability.XXXXXX")
trap 'rm -rf "$work"' EXIT
export RELIABILITY_LOG=$work/subcases.tsv
: >"$RELIABILITY_LOG"

# One cargo run per test target, with exactly the listed tests.
targets=$(printf '%s\n' "$TESTS" | awk -F'|' '{print $1 "|" $2}' | sort -u)
while IFS='|' read -r pkg target; do
  names=$(printf '%s\n' "$TESTS" | awk -F'|' -v p="$pkg" -v t="$target" '$1 == p && $2 == t {print $3}')
  if [ "$target" = lib ]; then sel=(--lib); else sel=(--test "$target"); fi
  log "cargo test -p $pkg ${sel[*]} ($(echo "$names" | wc -l) tests)"
  # shellcheck disable=SC2086 # one argument per test name
  nice cargo test -p "$pkg" "${sel[@]}" -- --include-ignored --exact $names \
    >"$work/$pkg-$target.out" 2>&1 || true
done <<<"$targets"

result_of() { # pkg target name
  local line
  line=$(grep -F -x -e "test $3 ... ok" -e "test $3 ... FAILED" "$work/$1-$2.out" | head -1 || true)
  case "$line" in
  *" ... ok") echo pass ;;
  *" ... FAILED") echo fail ;;
  *) echo "not run" ;;
  esac
}

cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
if grep -qwE 'vmx|svm' /proc/cpuinfo; then
  virt="/dev/kvm with vmx/svm"
elif [ -e /dev/kvm ]; then
  virt="/dev/kvm without a vmx/svm CPU flag (PVM)"
else
  virt="no /dev/kvm"
fi
failed=0
table=$work/table.md
{
  echo "| fault / bad input tried | expected | result | test |"
  echo "|---|---|---|---|"
  while IFS='|' read -r pkg target name tried expected; do
    r=$(result_of "$pkg" "$target" "$name")
    [ "$r" = pass ] || failed=$((failed + 1))
    [ "$r" = pass ] || r="**$r**"
    echo "| $tried | $expected | $r | \`$pkg\` $target: \`${name##*::}\` |"
    # Sub-cases the test recorded itself (RELIABILITY_LOG), each with its own result.
    awk -F'\t' -v t="$name" '$1 == t {
      r = ($4 == "pass") ? "pass" : "**" $4 "**";
      printf "| ↳ %s | %s | %s | |\n", $2, $3, r }' "$RELIABILITY_LOG"
  done <<<"$TESTS"
} >"$table"
sub_failed=$(awk -F'\t' '$4 != "pass"' "$RELIABILITY_LOG" | wc -l)

doc=$root/docs/reliability.md
tmp=$doc.part.$$
{
  echo "# Reliability: faults and bad inputs"
  echo
  echo "Generated by \`scripts/reliability.sh\` (do not edit by hand; rerun it to regenerate)."
  echo "Each row is a test run by name in this run; rows marked ↳ are sub-cases one test checked"
  echo "and recorded itself. Fault tests live in \`vmm/tests/faults.rs\` (the freestanding test"
  echo "guest in \`tests/guest/\`, modes \`blkstream\`, \`blkfull\`, \`attack\`) and"
  echo "\`imagetool/tests/sparse_interrupt.rs\`."
  echo
  echo "Machine: Linux $(uname -r), $cpu, $(nproc) CPUs, $virt."
  echo "Run: $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)."
  echo
  cat "$table"
  echo
  total=$(printf '%s\n' "$TESTS" | wc -l)
  subs=$(wc -l <"$RELIABILITY_LOG")
  echo "$((total - failed)) of $total tests passed; $((subs - sub_failed)) of $subs sub-cases passed."
  echo
  echo "Run one of them alone: \`VMCTL_TEST_GUEST=\$(scripts/build-test-guest.sh) cargo test -p vmm"
  echo "--test faults -- --include-ignored kill_9\`."
} >"$tmp"
mv "$tmp" "$doc"
cat "$doc"
if [ "$failed" -ne 0 ] || [ "$sub_failed" -ne 0 ]; then
  for f in "$work"/*.out; do
    grep -q -e FAILED -e 'error\[' -e '^error:' "$f" && { echo "--- $f" >&2; tail -n 40 "$f" >&2; }
  done
  die "$failed tests and $sub_failed sub-cases did not pass (see docs/reliability.md)"
fi
log "all $total tests passed; docs/reliability.md written"
