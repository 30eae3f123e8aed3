//! Faults, nothing lost (issue 7), driven by the freestanding test guest on /dev/kvm:
//! - `kill -9` of the VMM while the guest streams numbered blocks with FLUSHes: every block the
//!   guest saw flushed is in the image, checked with `cmp` and `dd`;
//! - a disk image on a full filesystem (a 2 MiB tmpfs in a private mount namespace): the guest
//!   gets IOERR, the VMM stays up (reads, the API) and logs the ENOSPC once, with the path;
//! - a malicious driver (guest mode `attack`): broken descriptor chains, rings and transport
//!   registers on virtio-blk, -rng, -9p and -net; each gets an error or is ignored, and the
//!   VMM keeps serving the other devices (a second disk reads correctly afterwards).
//!
//! With `RELIABILITY_LOG=FILE` each sub-case is appended to FILE as
//! `test\tfault\texpected\tresult`
//! for scripts/reliability.sh.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::netns::NetNs;
use common::{Running, guest, pattern_disk, run_ok_bytes, vmm_bin};

const TIMEOUT: Duration = Duration::from_secs(180);

/// `dump(&f)` with the log cut to its last 60 lines: a VMM that floods its log (what some of
/// these tests guard against) would otherwise bury the failure.
fn dump(f: &common::Finished) -> String {
    let lines: Vec<&str> = f.stderr.lines().collect();
    let tail = lines[lines.len().saturating_sub(60)..].join("\n");
    format!(
        "status {:?}{}\n--- stdout ---\n{}\n--- stderr ({} lines, last 60) ---\n{tail}",
        f.status,
        if f.timed_out { " (TIMED OUT)" } else { "" },
        f.stdout,
        lines.len()
    )
}

/// Appends sub-case results for scripts/reliability.sh (no-op unless RELIABILITY_LOG is set).
fn record(fault: &str, expected: &str, passed: bool) {
    let Some(path) = std::env::var_os("RELIABILITY_LOG") else {
        return;
    };
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("open RELIABILITY_LOG");
    let result = if passed { "pass" } else { "fail" };
    // libtest runs each test on a thread named after it.
    let test = std::thread::current().name().unwrap_or("").to_owned();
    writeln!(f, "{test}\t{fault}\t{expected}\t{result}").expect("write RELIABILITY_LOG");
}

/// Block `n` of the guest's stream (mode blkstream): u64 word k is (n << 32) | (k << 16) | 0xb10c.
fn stream_block(n: u64) -> Vec<u8> {
    (0..512u64)
        .flat_map(|k| ((n << 32) | (k << 16) | 0xb10c).to_le_bytes())
        .collect()
}

fn last_flushed(stdout: &str) -> u64 {
    stdout
        .lines()
        .filter_map(|l| l.strip_prefix("guest: flushed "))
        .filter_map(|n| n.trim().parse().ok())
        .max()
        .unwrap_or(0)
}

/// Waits for `what` in the guest's serial output.
fn wait_for(r: &Running, what: &str) {
    r.wait_for(what, TIMEOUT, Some("guest: FAIL"));
}

#[test]
#[ignore = "needs /dev/kvm and the test guest; run by scripts/test.sh"]
fn kill_9_mid_stream_keeps_every_block_the_guest_saw_flushed() {
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("stream.img");
    // 16 MiB, sparse: 4096 blocks of 4 KiB, all zeroes until the guest writes them.
    run_ok_bytes(Command::new("truncate").args(["-s", "16M"]).arg(&disk));
    let disk_arg = format!("path={}", disk.display());
    let g = guest();
    let args = [
        "--kernel",
        &g,
        "--memory",
        "64",
        "--disk",
        &disk_arg,
        "--cmdline",
        "blkstream pace_us=1000",
    ];
    let r = Running::spawn(&args, Stdio::null());
    // Kill once 256 blocks are flushed, while the guest keeps writing.
    let start = Instant::now();
    while last_flushed(&r.stdout()) < 256 {
        assert!(
            start.elapsed() < TIMEOUT && !r.stdout().contains("stream end"),
            "the guest did not flush 256 blocks in time (or finished first)\n{}\n{}",
            r.stdout(),
            r.stderr()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    // SAFETY: kill(2) on the pid of a child this test started and has not reaped.
    let rc = unsafe { libc::kill(r.child.id() as i32, libc::SIGKILL) };
    assert_eq!(rc, 0, "kill -9: {}", std::io::Error::last_os_error());
    let f = r.wait(TIMEOUT);
    assert_eq!(
        f.status.and_then(|s| s.signal()),
        Some(libc::SIGKILL),
        "kill -9 of the VMM mid-stream: expected death by SIGKILL\n{}",
        dump(&f)
    );
    assert!(
        !f.stdout.contains("stream end"),
        "the VMM was to be killed mid-stream, but the guest finished\n{}",
        dump(&f)
    );
    let flushed = last_flushed(&f.stdout);

    // Every block reported flushed is in the image, read back by cmp against the same blocks
    // written here.
    let expected = dir.path().join("expected");
    let want: Vec<u8> = (0..flushed).flat_map(stream_block).collect();
    std::fs::write(&expected, &want).unwrap();
    let cmp = Command::new("cmp")
        .arg("-n")
        .arg((flushed * 4096).to_string())
        .arg(&disk)
        .arg(&expected)
        .output()
        .expect("run cmp");
    let intact = cmp.status.success();
    record(
        "kill -9 of the VMM while the guest writes and flushes",
        "every block the guest saw flushed is on disk intact",
        intact,
    );
    assert!(
        intact,
        "kill -9 mid-stream: the {flushed} blocks the guest saw flushed must be in the image \
         intact; cmp says: {}",
        String::from_utf8_lossy(&cmp.stdout)
    );

    // After them (read with dd): blocks written but not yet flushed are whole or absent, never
    // torn or misplaced, and the guest wrote in order, so nothing follows the first absent one.
    let rest = run_ok_bytes(
        Command::new("dd")
            .arg(format!("if={}", disk.display()))
            .args(["bs=4096", "status=none"])
            .arg(format!("skip={flushed}")),
    );
    let mut written_after = 0;
    let mut gap = false;
    for (i, b) in rest.chunks(4096).enumerate() {
        let n = flushed + i as u64;
        if b.iter().all(|x| *x == 0) {
            gap = true;
        } else {
            assert!(
                !gap && b == stream_block(n).as_slice(),
                "kill -9 mid-stream: block {n} (after the last flush, {flushed}) must be whole \
                 or absent, in order"
            );
            written_after += 1;
        }
    }
    eprintln!("flushed {flushed} blocks; {written_after} more written, not yet flushed");

    // No stale lock or state: a new VMM takes the same disk for writing at once.
    let again = common::run_vmm(
        &[
            "--kernel",
            &g,
            "--memory",
            "64",
            "--disk",
            &disk_arg,
            "--cmdline",
            "tables",
        ],
        b"",
        TIMEOUT,
    );
    assert_eq!(
        again.code(),
        Some(32),
        "after kill -9 a new VMM must open the same disk (no stale lock)\n{}",
        dump(&again)
    );
}

/// One JSON request on the API socket, one JSON answer.
fn api_call(sock: &Path, request: &str) -> serde_json::Value {
    let start = Instant::now();
    let s = loop {
        match UnixStream::connect(sock) {
            Ok(s) => break s,
            Err(e) => {
                assert!(
                    start.elapsed() < TIMEOUT,
                    "api socket {}: {e}",
                    sock.display()
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    };
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut w = s.try_clone().unwrap();
    writeln!(w, "{request}").unwrap();
    let mut answer = String::new();
    BufReader::new(s).read_line(&mut answer).unwrap();
    serde_json::from_str(&answer).unwrap_or_else(|e| panic!("{e}: {answer:?}"))
}

#[test]
#[ignore = "needs root (unshare -m, mount tmpfs), /dev/kvm and the test guest; run by scripts/test.sh"]
fn a_full_filesystem_gives_the_guest_io_errors_and_the_vmm_says_why_once() {
    let dir = tempfile::tempdir().unwrap();
    let small = dir.path().join("small");
    std::fs::create_dir(&small).unwrap();
    let img = small.join("disk.img");
    let sock = dir.path().join("vm.sock");
    // A 2 MiB tmpfs in a mount namespace of the VMM's own, holding an 8 MiB sparse image: the
    // guest's writes run out of space a quarter of the way in.
    let script = r#"mount -t tmpfs -o size=2m vmm-full-test "$1" && truncate -s 8M "$1/disk.img" && shift && exec "$@""#;
    let g = guest();
    let mut cmd = Command::new("unshare");
    cmd.args(["-m", "--propagation", "private", "sh", "-c", script, "sh"])
        .arg(&small)
        .arg(vmm_bin())
        .args(["--kernel", &g, "--memory", "64", "--disk"])
        .arg(format!("path={}", img.display()))
        .arg("--api-socket")
        .arg(&sock)
        .args(["--cmdline", "blkfull hold"]);
    let r = Running::spawn_command(cmd, Stdio::null());
    wait_for(&r, "guest: waiting for the power button");
    // The VMM is still up and answering after ~1500 failed writes.
    let st = api_call(&sock, r#"{"command":"status"}"#);
    let api_ok = st["ok"] == true && st["state"] == "running";
    let sd = api_call(&sock, r#"{"command":"shutdown"}"#);
    assert_eq!(sd["ok"], true, "{sd}");
    let f = r.wait(TIMEOUT);
    let out = &f.stdout;
    assert_eq!(
        f.code(),
        Some(0),
        "full filesystem: the VMM must stay up and power off when asked\n{}",
        dump(&f)
    );
    assert!(
        api_ok,
        "full filesystem: the API must still answer status (running): {st}"
    );

    let first = out
        .lines()
        .find_map(|l| l.strip_prefix("guest: write of block "))
        .unwrap_or_else(|| panic!("full filesystem: no write failed\n{}", dump(&f)));
    let io_errors = first.ends_with("failed with status 1");
    let totals = out
        .lines()
        .find_map(|l| l.strip_prefix("guest: writes ok="))
        .unwrap_or_else(|| panic!("no totals\n{}", dump(&f)));
    let (ok, failed) = totals.split_once(" failed=").unwrap();
    let (ok, failed): (u64, u64) = (ok.parse().unwrap(), failed.trim().parse().unwrap());
    record(
        "disk image on a full filesystem (2 MiB tmpfs, 8 MiB image): guest writes",
        "VIRTIO_BLK_S_IOERR for the writes that do not fit, the earlier ones intact",
        io_errors && ok + failed == 2048 && failed > 1000,
    );
    assert!(
        io_errors && ok + failed == 2048 && (400..=512).contains(&ok),
        "full filesystem: writes past the free space (2 MiB of 8) must get status 1 (IOERR): \
         first failure '{first}', ok={ok} failed={failed}\n{}",
        dump(&f)
    );
    let reads_ok = out.contains("guest: reads after the failed writes are intact")
        && out.contains("guest: failed block reads status 0 zeroes")
        && out.contains("guest: flush status 0")
        && !out.contains("FAIL");
    record(
        "disk image on a full filesystem: reads, flush, API after the failures",
        "reads and flush succeed, API status answers, VMM powers off cleanly",
        reads_ok && api_ok,
    );
    assert!(
        reads_ok,
        "full filesystem: reads of written blocks must stay intact, a failed block must read as \
         zeroes, flush must succeed\n{}",
        dump(&f)
    );

    // The VMM says why, once: ENOSPC with the image path, not one line per failed request.
    let path = img.display().to_string();
    let why: Vec<&str> = f
        .stderr
        .lines()
        .filter(|l| l.contains("No space left on device"))
        .collect();
    let logged_once = why.len() == 1 && why[0].contains(&path) && why[0].contains("write failed");
    record(
        "disk image on a full filesystem: the VMM's log",
        "one line naming ENOSPC and the image path, however many requests fail",
        logged_once,
    );
    assert!(
        logged_once,
        "full filesystem: expected exactly one log line with 'No space left on device', \
         'write failed' and {path}; got {why:#?}\n{}",
        dump(&f)
    );
    assert!(
        f.stderr.lines().count() < 20,
        "full filesystem: {failed} failed writes must not flood the log\n{}",
        dump(&f)
    );
    // The tmpfs lived in the VMM's namespace only.
    assert!(
        !img.exists(),
        "the tmpfs must not be visible outside the VMM's mount namespace"
    );
}

/// The outcome the guest must report for each malformed chain, by device.
fn chain_attacks(kind: &str) -> Vec<(&'static str, &'static str)> {
    let len0 = "completed with length 0, nothing written";
    let ioerr = if kind == "blk" {
        "completed with status IOERR"
    } else {
        len0
    };
    vec![
        ("descriptor loop", len0),
        ("next index beyond the queue", len0),
        ("buffer outside guest memory", ioerr),
        ("buffer address + length wraps", ioerr),
        ("length beyond guest memory", ioerr),
        ("chain longer than 4 GiB", len0),
        ("indirect table (well-formed)", "served normally"),
        ("indirect table nested in an indirect table", len0),
        ("indirect table outside guest memory", len0),
        ("indirect table length not a multiple of 16", len0),
        ("indirect table of 4 GiB", len0),
        ("descriptor loop inside an indirect table", len0),
        ("indirect table address wraps", len0),
    ]
}

fn ring_attacks() -> Vec<(&'static str, &'static str)> {
    let reset = "DEVICE_NEEDS_RESET, nothing served";
    vec![
        (
            "avail index 1000 ahead",
            "no completion, queue stopped until reset",
        ),
        (
            "avail index moved backwards (wrapped)",
            "no completion, queue stopped until reset",
        ),
        (
            "avail ring misaligned",
            "no completion, queue stopped until reset",
        ),
        (
            "used ring misaligned",
            "no completion, queue stopped until reset",
        ),
        ("queue size 100", "refused, size stays a power of two"),
        (
            "notifications before set-up and to queues that do not exist",
            "ignored (served only after DRIVER_OK)",
        ),
        ("DRIVER_OK with the queue not enabled", reset),
        ("used ring outside guest memory", reset),
        ("descriptor table outside guest memory", reset),
        ("avail ring across the end of guest memory", reset),
    ]
}

fn share_with_a_file(root: &Path) -> std::path::PathBuf {
    let share = root.join("share");
    std::fs::create_dir(&share).unwrap();
    std::fs::write(share.join("hello"), b"hello\n").unwrap();
    share
}

#[test]
#[ignore = "needs /dev/kvm and the test guest; run by scripts/test.sh"]
fn a_malicious_driver_gets_errors_and_the_vmm_keeps_serving_the_other_devices() {
    let dir = tempfile::tempdir().unwrap();
    let attacked = dir.path().join("attacked.img");
    let second = dir.path().join("second.img");
    pattern_disk(&attacked, 1 << 20);
    pattern_disk(&second, 1 << 20);
    let before = (
        std::fs::read(&attacked).unwrap(),
        std::fs::read(&second).unwrap(),
    );
    let share = share_with_a_file(dir.path());
    let g = guest();
    let disk0 = format!("path={}", attacked.display());
    let disk1 = format!("path={},readonly=on", second.display());
    let share_arg = format!("path={},tag=attacked", share.display());
    let r = Running::spawn(
        &[
            "--kernel",
            &g,
            "--memory",
            "64",
            "--disk",
            &disk0,
            "--disk",
            &disk1,
            "--share",
            &share_arg,
            "--cmdline",
            "attack",
        ],
        Stdio::null(),
    );
    let f = r.wait(TIMEOUT);
    let out = &f.stdout;
    let mut missing = Vec::new();
    for kind in ["blk", "rng", "9p"] {
        for (attack, outcome) in chain_attacks(kind).into_iter().chain(ring_attacks()) {
            let line = format!("guest: attack {kind} {attack}: {outcome}, device still serving\n");
            let seen = out.contains(&line);
            let device = match kind {
                "blk" => "virtio-blk",
                "rng" => "virtio-rng",
                _ => "virtio-9p",
            };
            record(
                &format!("malicious guest, {device}: {attack}"),
                &format!("{outcome}; device still serving; VMM up"),
                seen && !f.timed_out,
            );
            if !seen {
                missing.push(line);
            }
        }
    }
    assert!(
        missing.is_empty() && !f.timed_out,
        "malicious driver: each attack must get an error or be ignored and the device must keep \
         serving; missing:\n{}\n{}",
        missing.concat(),
        dump(&f)
    );
    let second_ok =
        out.contains("guest: second disk reads correctly after the attacks (2048 sectors)");
    record(
        "malicious guest: after all the attacks (attacked disk left with a stopped queue)",
        "a second disk still reads correctly; the VMM does not crash or hang",
        second_ok && f.code() == Some(32),
    );
    assert!(
        second_ok && f.code() == Some(32) && out.contains("guest: PASS"),
        "malicious driver: after the attacks the guest must read the second disk correctly and \
         pass (exit 32)\n{}",
        dump(&f)
    );
    assert!(
        !f.stderr.contains("panicked"),
        "malicious driver: the VMM must not panic\n{}",
        dump(&f)
    );
    let lines = f.stderr.lines().count();
    assert!(
        lines < 200,
        "malicious driver: {lines} log lines; attacks must not flood the log\n{}",
        dump(&f)
    );
    assert_eq!(
        (
            std::fs::read(&attacked).unwrap(),
            std::fs::read(&second).unwrap()
        ),
        before,
        "malicious driver: no attack may change a disk (they only read)"
    );
}

#[test]
#[ignore = "needs root (ip netns, a TAP), /dev/kvm and the test guest; run by scripts/test.sh"]
fn a_malicious_nic_driver_cannot_stall_the_device_thread() {
    let dir = tempfile::tempdir().unwrap();
    let attacked = dir.path().join("attacked.img");
    let second = dir.path().join("second.img");
    pattern_disk(&attacked, 1 << 20);
    pattern_disk(&second, 1 << 20);
    let tap = format!("vmtf{}", std::process::id() % 100_000);
    let ns = NetNs::new("fault");
    ns.tap(&tap, 1500, None);
    ns.ip(&["addr", "add", "10.97.0.1/24", "dev", &tap]);
    let g = guest();
    let vmm = vmm_bin();
    let mut cmd = ns.command(vmm.to_str().unwrap());
    cmd.args(["--kernel", &g, "--memory", "64", "--rng", "off", "--disk"])
        .arg(format!("path={},readonly=on", attacked.display()))
        .arg("--disk")
        .arg(format!("path={},readonly=on", second.display()))
        .args(["--net", &format!("tap={tap}")])
        .args(["--cmdline", "attack attack_net net_wait_ms=3000"]);
    let r = Running::spawn_command(cmd, Stdio::null());
    wait_for(&r, "armed, waiting for frames");
    // ARP requests for 10.97.0.2 go out of the TAP to the VMM, whose receive queue has a
    // runaway avail index: before the fix its receive loop spun on the one device thread,
    // and the guest's later disk reads never completed.
    let _ = ns
        .command("ping")
        .args(["-c", "4", "-i", "0.3", "-W", "1", "10.97.0.2"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    let f = r.wait(TIMEOUT);
    let out = &f.stdout;
    for what in [
        "descriptor loop",
        "buffer outside guest memory",
        "buffer address + length wraps",
        "chain longer than 4 GiB",
    ] {
        let line = format!("guest: attack net tx {what}: dropped, completed with length 0\n");
        let seen = out.contains(&line);
        record(
            &format!("malicious guest, virtio-net transmit: {what}"),
            "frame dropped, chain completed with length 0, queue keeps going",
            seen,
        );
        assert!(seen, "malicious NIC driver: missing '{line}'\n{}", dump(&f));
    }
    let stopped = f
        .stderr
        .contains("receive queue: the driver's available index (1000) is more than the queue size");
    let served = out
        .contains("guest: second disk reads correctly after the attacks (2048 sectors)")
        && f.code() == Some(32);
    record(
        "malicious guest, virtio-net receive: avail index 1000 ahead while frames arrive",
        "receive queue stopped with one log line; the device thread keeps serving the disks",
        stopped && served,
    );
    assert!(
        served,
        "malicious NIC driver: after a runaway receive avail index with frames arriving, the \
         disks must still be served (no spinning device thread)\n{}",
        dump(&f)
    );
    assert!(
        stopped,
        "malicious NIC driver: the VMM must say it stopped the receive queue\n{}",
        dump(&f)
    );
}
