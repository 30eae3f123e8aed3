//! Runs the freestanding test guest (tests/guest, built by scripts/build-test-guest.sh) on
//! /dev/kvm: PCI, virtio-blk by polling and by MSI-X, garbage requests, ACPI and MP tables,
//! serial input over stdin, a socket and a terminal, exit statuses and boot markers.

mod common;

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{Running, guest, pattern_disk, run_vmm};

const IGNORE: &str = "needs /dev/kvm and the test guest; run by scripts/test.sh";
const TIMEOUT: Duration = Duration::from_secs(120);

#[test]
#[ignore = "needs /dev/kvm and the test guest; run by scripts/test.sh"]
fn guest_drives_two_disks_and_reads_the_serial() {
    let _ = IGNORE;
    let dir = tempfile::tempdir().unwrap();
    let d0 = dir.path().join("d0.img");
    let d1 = dir.path().join("d1.img");
    pattern_disk(&d0, 4 << 20);
    pattern_disk(&d1, 1 << 20);
    let d1_before = std::fs::read(&d1).unwrap();
    let blocks_before = std::fs::metadata(&d0).unwrap().blocks();
    let disk0 = format!("path={},serial=guest-disk-0", d0.display());
    let disk1 = format!("path={},readonly=on,serial=guest-ro-1", d1.display());
    let g = guest();
    let r = run_vmm(
        &[
            "-v",
            "--kernel",
            &g,
            "--memory",
            "64",
            "--disk",
            &disk0,
            "--disk",
            &disk1,
            "--cmdline",
            "expect_cpus=1",
        ],
        b"ping\n",
        TIMEOUT,
    );
    let out = &r.stdout;
    assert_eq!(r.code(), Some(32), "{}", r.dump());
    for line in [
        "guest: acpi cpus=1 ecam=0xe0000000 sleep_port=0x600 s5=5",
        "guest: mptable cpus=1",
        "guest: pci 00:00.0 0x1b36:0x8",
        "guest: pci 00:01.0 0x1af4:0x1042",
        "guest: pci 00:02.0 0x1af4:0x1042",
        "guest: virtio-blk disks=2",
        "guest: disk0 capacity=8192 ro=0",
        "guest: disk0 id=guest-disk-0",
        "guest: garbage requests answered, device still serving",
        "guest: disk1 capacity=2048 ro=1",
        "guest: disk1 id=guest-ro-1",
        "guest: got input 'ping'",
        "guest: PASS",
    ] {
        assert!(out.contains(line), "missing '{line}'\n{}", r.dump());
    }
    assert!(!out.contains("FAIL"), "{}", r.dump());
    // What the guest wrote is in the image; the write-zeroes range became a hole.
    let data = std::fs::read(&d0).unwrap();
    let expect: Vec<u8> = b"written by the test guest"
        .iter()
        .cycle()
        .take(512)
        .copied()
        .collect();
    assert_eq!(&data[100 * 512..101 * 512], &expect[..]);
    assert!(data[2048 * 512..2056 * 512].iter().all(|b| *b == 0));
    assert_eq!(
        data[2056 * 512],
        (2056 * 3) as u8,
        "only the requested range was zeroed"
    );
    let blocks_after = std::fs::metadata(&d0).unwrap().blocks();
    assert!(
        blocks_after < blocks_before,
        "no space released: {blocks_before} -> {blocks_after}"
    );
    // The read-only disk is untouched.
    assert_eq!(std::fs::read(&d1).unwrap(), d1_before);
    // The boot marker for the first guest instruction.
    assert!(
        r.stderr.contains("first guest write to debug port 0x80"),
        "{}",
        r.dump()
    );
}

#[test]
#[ignore = "needs /dev/kvm and the test guest; run by scripts/test.sh"]
fn cpus_and_memory_show_up_in_acpi_the_mp_table_and_e820() {
    let g = guest();
    let r = run_vmm(
        &[
            "--kernel",
            &g,
            "--memory",
            "3584",
            "--cpus",
            "3",
            "--cmdline",
            "tables expect_cpus=3",
        ],
        b"",
        TIMEOUT,
    );
    assert_eq!(r.code(), Some(32), "{}", r.dump());
    assert!(r.stdout.contains("guest: acpi cpus=3"), "{}", r.dump());
    assert!(r.stdout.contains("guest: mptable cpus=3"), "{}", r.dump());
    // 3.5 GiB: 3 GiB below the PCI hole, the last 512 MiB above 4 GiB.
    for line in [
        "guest: e820 0x0 0x9fc00 1",
        "guest: e820 0x100000 0xbff00000 1",
        "guest: e820 0xe0000000 0x10000000 2",
        "guest: e820 0x100000000 0x20000000 1",
    ] {
        assert!(r.stdout.contains(line), "missing '{line}'\n{}", r.dump());
    }
}

#[test]
#[ignore = "needs /dev/kvm and the test guest; run by scripts/test.sh"]
fn exit_statuses() {
    let g = guest();
    let run = |cmdline: &str| {
        run_vmm(
            &["--kernel", &g, "--memory", "64", "--cmdline", cmdline],
            b"",
            TIMEOUT,
        )
    };

    let r = run("poweroff");
    assert_eq!(
        r.code(),
        Some(0),
        "ACPI S5 is a clean power-off\n{}",
        r.dump()
    );
    assert!(r.stdout.contains("guest: powering off"), "{}", r.dump());

    let r = run("reboot");
    assert_eq!(r.code(), Some(3), "i8042 reset is a reboot\n{}", r.dump());

    let r = run("crash");
    assert_eq!(r.code(), Some(4), "{}", r.dump());
    assert!(r.stderr.contains("triple fault"), "{}", r.dump());
    assert!(
        r.stderr.contains("rip=0x"),
        "registers are logged\n{}",
        r.dump()
    );

    // The guest's own failure: debug-exit value 1 maps to 33.
    let r = run("tables expect_cpus=9");
    assert_eq!(r.code(), Some(33), "{}", r.dump());
    assert!(
        r.stdout.contains("guest: FAIL: ACPI CPU count"),
        "{}",
        r.dump()
    );
}

#[test]
#[ignore = "needs /dev/kvm and the test guest; run by scripts/test.sh"]
fn serial_file_and_boot_markers() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("serial.log");
    let serial = format!("file={}", log.display());
    let g = guest();
    // Quiet by default, but --boot-marker shows both markers.
    let r = run_vmm(
        &[
            "--kernel",
            &g,
            "--memory",
            "64",
            "--serial",
            &serial,
            "--boot-marker",
            "virtio-blk disks=",
            "--cmdline",
            "tables",
        ],
        b"",
        TIMEOUT,
    );
    assert_eq!(r.code(), Some(32), "{}", r.dump());
    assert!(r.stdout.is_empty(), "serial went to the file: {}", r.dump());
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("guest: PASS"), "{text}");
    assert!(
        r.stderr
            .contains("serial output matched 'virtio-blk disks='"),
        "{}",
        r.dump()
    );
    assert!(
        r.stderr.contains("first guest write to debug port 0x80"),
        "{}",
        r.dump()
    );
    // Without markers or -v, a successful run prints nothing on stderr.
    let r = run_vmm(
        &[
            "--kernel",
            &g,
            "--memory",
            "64",
            "--serial",
            "off",
            "--cmdline",
            "tables",
        ],
        b"",
        TIMEOUT,
    );
    assert_eq!(r.code(), Some(32), "{}", r.dump());
    assert_eq!(r.stderr, "", "quiet by default");
}

#[test]
#[ignore = "needs /dev/kvm and the test guest; run by scripts/test.sh"]
fn serial_over_a_unix_socket() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("console.sock");
    let serial = format!("socket={}", sock.display());
    let g = guest();
    let vm = Running::spawn(
        &["--kernel", &g, "--memory", "64", "--serial", &serial],
        Stdio::null(),
    );
    let deadline = Instant::now() + TIMEOUT;
    let mut conn = loop {
        match UnixStream::connect(&sock) {
            Ok(c) => break c,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => panic!("cannot connect to {}: {e}", sock.display()),
        }
    };
    conn.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut seen = String::new();
    let mut buf = [0u8; 1024];
    while !seen.contains("ready for input") {
        let n = conn.read(&mut buf).unwrap();
        assert!(n > 0, "console closed early: {seen}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    conn.write_all(b"via-socket\n").unwrap();
    let r = vm.wait(TIMEOUT);
    while let Ok(n) = conn.read(&mut buf) {
        if n == 0 {
            break;
        }
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert_eq!(r.code(), Some(32), "{}\n--- socket ---\n{seen}", r.dump());
    assert!(seen.contains("guest: got input 'via-socket'"), "{seen}");
    assert!(!sock.exists(), "socket file removed at exit");
}

#[test]
#[ignore = "needs /dev/kvm and the test guest; run by scripts/test.sh"]
fn escape_sequence_on_a_terminal_stops_the_vm() {
    let (mut master, mut slave) = (-1, -1);
    // SAFETY: openpty writes two descriptors; the other pointers may be null.
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: freshly opened descriptors we own.
    let (master, slave) = unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
    let g = guest();
    let stdin = Stdio::from(slave.try_clone().unwrap());
    let mut cmd = std::process::Command::new(common::vmm_bin());
    cmd.args(["--kernel", &g, "--memory", "64", "--cmdline", "idle"])
        .stdin(stdin)
        .stdout(Stdio::from(slave))
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut m = std::fs::File::from(master);
    // Wait for the guest to be up (its greeting arrives on the terminal).
    let mut seen = Vec::new();
    let mut buf = [0u8; 256];
    let deadline = Instant::now() + TIMEOUT;
    let fd = m.as_raw_fd();
    while !String::from_utf8_lossy(&seen).contains("guest: idle") {
        assert!(
            Instant::now() < deadline,
            "no greeting: {}",
            String::from_utf8_lossy(&seen)
        );
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        if unsafe { libc::poll(&mut pfd, 1, 100) } > 0 {
            let n = m.read(&mut buf).unwrap();
            seen.extend_from_slice(&buf[..n]);
        }
    }
    m.write_all(b"\x01x").unwrap();
    let status = common::wait_exit(&mut child, TIMEOUT, "escape sequence ignored");
    assert_eq!(status.code(), Some(5));
}

#[test]
#[ignore = "needs /dev/kvm and the test guest; run by scripts/test.sh"]
fn a_writable_disk_cannot_be_shared_by_two_vms() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("d.img");
    pattern_disk(&d, 1 << 20);
    let disk = format!("path={}", d.display());
    let g = guest();
    let first = Running::spawn(
        &[
            "-v",
            "--kernel",
            &g,
            "--memory",
            "64",
            "--disk",
            &disk,
            "--serial",
            "off",
            "--cmdline",
            "idle",
        ],
        Stdio::null(),
    );
    let deadline = Instant::now() + TIMEOUT;
    while !first.stderr().contains("first guest write") {
        assert!(
            Instant::now() < deadline,
            "first VM did not start: {}",
            first.stderr()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let r = run_vmm(
        &["--kernel", &g, "--memory", "64", "--disk", &disk],
        b"",
        TIMEOUT,
    );
    assert_eq!(r.code(), Some(2), "{}", r.dump());
    assert!(
        r.stderr.contains("in use by another process"),
        "{}",
        r.dump()
    );
    let ro = format!("path={},readonly=on", d.display());
    let r2 = run_vmm(
        &["--kernel", &g, "--memory", "64", "--disk", &ro],
        b"",
        TIMEOUT,
    );
    assert_eq!(
        r2.code(),
        Some(2),
        "read-only users are locked out of a disk someone writes\n{}",
        r2.dump()
    );
    first.wait_until(Duration::from_secs(1), |_, _| true);
}

/// vmctl run's stdout and stderr are pipes; when it dies first, the VMM must keep running and
/// stop as it is told, not panic on its next log line.
#[test]
#[ignore = "needs /dev/kvm and the test guest; run by scripts/test.sh"]
fn closed_stdout_and_stderr_do_not_bring_the_vmm_down() {
    let g = guest();
    let mut child = std::process::Command::new(common::vmm_bin())
        .args(["-vv", "--kernel", &g, "--memory", "64", "--cmdline", "idle"])
        .args(["--shutdown-timeout", "1"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 256];
    while !String::from_utf8_lossy(&seen).contains("guest: idle") {
        let n = out.read(&mut buf).unwrap();
        assert!(n > 0, "no greeting: {}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
    }
    drop(out);
    drop(child.stderr.take());
    let pid = child.id().to_string();
    // SIGTERM presses the power button, which the idle guest ignores: the VMM logs the press
    // and, a second later, the timeout, both to the closed stderr.
    let st = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(st.success());
    let status = common::wait_exit(&mut child, TIMEOUT, "the VMM did not stop");
    assert_eq!(status.code(), Some(6), "{status}");
}
