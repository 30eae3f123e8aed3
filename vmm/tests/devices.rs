//! Issue 5's devices driven by the freestanding test guest on /dev/kvm: fw_cfg (Ignition),
//! the ACPI power button with SIGTERM/SIGINT and the shutdown timeout, a 9P2000.L client on
//! read-only and writable shares, and the API socket (status, shutdown, power-off, console).
//! Also the configuration errors of the new flags (no KVM needed).

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Running, guest, pattern_disk, run_vmm, vmm_bin};

const TIMEOUT: Duration = Duration::from_secs(120);

fn signal(r: &Running, sig: i32) {
    // SAFETY: kill(2) on the pid of a child this test started and has not reaped.
    let rc = unsafe { libc::kill(r.child.id() as i32, sig) };
    assert_eq!(rc, 0, "kill: {}", std::io::Error::last_os_error());
}

/// Waits for `what` in the guest's serial output.
fn wait_for(r: &Running, what: &str) {
    r.wait_for(what, TIMEOUT, None);
}

#[test]
#[ignore = "needs /dev/kvm and the test guest; run by scripts/test.sh"]
fn ignition_config_reaches_the_guest_through_fw_cfg() {
    let dir = tempfile::tempdir().unwrap();
    let ign = dir.path().join("config.ign");
    let config = r#"{"ignition":{"version":"3.3.0"},"passwd":{"users":[{"name":"core","sshAuthorizedKeys":["ssh-ed25519 AAAA test"]}]}}"#;
    std::fs::write(&ign, config).unwrap();
    let g = guest();
    let r = run_vmm(
        &[
            "--kernel",
            &g,
            "--memory",
            "64",
            "--cmdline",
            "fwcfg",
            "--ignition",
            ign.to_str().unwrap(),
        ],
        b"",
        TIMEOUT,
    );
    assert_eq!(r.code(), Some(32), "{}", r.dump());
    for name in ["opt/org.flatcar-linux/config", "opt/com.coreos/config"] {
        let line = format!("guest: fw_cfg {name} data={config}\n");
        assert!(r.stdout.contains(&line), "missing '{line}'\n{}", r.dump());
        let size = format!("guest: fw_cfg file {name} size={}\n", config.len());
        assert!(r.stdout.contains(&size), "missing '{size}'\n{}", r.dump());
    }
    // Without --ignition the device is there with an empty directory.
    let r = run_vmm(
        &[
            "--kernel",
            &g,
            "--memory",
            "64",
            "--cmdline",
            "fwcfg fwcfg_empty",
        ],
        b"",
        TIMEOUT,
    );
    assert_eq!(r.code(), Some(32), "{}", r.dump());
    assert!(!r.stdout.contains("guest: fw_cfg file"), "{}", r.dump());
}

#[test]
#[ignore = "needs /dev/kvm and the test guest; run by scripts/test.sh"]
fn sigterm_and_sigint_press_the_power_button_and_the_timeout_stops_a_deaf_guest() {
    let g = guest();
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("d.img");
    pattern_disk(&disk, 1 << 20);
    let disk_arg = format!("path={}", disk.display());
    let start = |cmdline: &str, timeout: &str| {
        Running::spawn(
            &[
                "--kernel",
                &g,
                "--memory",
                "64",
                "--disk",
                &disk_arg,
                "--cmdline",
                cmdline,
                "--shutdown-timeout",
                timeout,
            ],
            Stdio::null(),
        )
    };
    for sig in [libc::SIGTERM, libc::SIGINT] {
        let r = start("button", "30");
        wait_for(&r, "guest: waiting for the power button");
        signal(&r, sig);
        let f = r.wait(TIMEOUT);
        assert_eq!(f.code(), Some(0), "signal {sig}: {}", f.dump());
        assert!(
            f.stdout.contains("guest: power button pressed"),
            "{}",
            f.dump()
        );
        assert!(f.stdout.contains("guest: powering off"), "{}", f.dump());
    }
    // A guest that ignores the button: stopped after the timeout, status 6.
    let r = start("button ignorebutton", "1");
    wait_for(&r, "guest: waiting for the power button");
    let t0 = Instant::now();
    signal(&r, libc::SIGTERM);
    let f = r.wait(TIMEOUT);
    assert_eq!(f.code(), Some(6), "{}", f.dump());
    assert!(
        f.stdout.contains("guest: power button pressed"),
        "{}",
        f.dump()
    );
    assert!(
        f.stderr.contains("did not power off within 1 s"),
        "{}",
        f.dump()
    );
    assert!(
        t0.elapsed() >= Duration::from_secs(1),
        "stopped before the timeout"
    );
    // A second signal while shutting down stops at once, status 5.
    let r = start("button ignorebutton", "600");
    wait_for(&r, "guest: waiting for the power button");
    signal(&r, libc::SIGTERM);
    wait_for(&r, "guest: power button pressed");
    signal(&r, libc::SIGINT);
    let f = r.wait(TIMEOUT);
    assert_eq!(f.code(), Some(5), "{}", f.dump());
    assert!(
        f.stderr.contains("SIGINT while shutting down"),
        "{}",
        f.dump()
    );
}

/// A share holding the disk pattern as a file, a file next to it that must stay out of reach,
/// and a symlink pointing there.
fn share_dir(root: &Path) -> std::path::PathBuf {
    let share = root.join("share");
    std::fs::create_dir_all(share.join("openstack/latest")).unwrap();
    pattern_disk(&share.join("openstack/latest/data.bin"), 3 << 20);
    std::fs::write(root.join("secret"), b"outside the share").unwrap();
    std::os::unix::fs::symlink("../secret", share.join("escape")).unwrap();
    share
}

#[test]
#[ignore = "needs /dev/kvm and the test guest; run by scripts/test.sh"]
fn guest_reads_a_share_over_9p_and_cannot_change_a_read_only_one() {
    let dir = tempfile::tempdir().unwrap();
    let share = share_dir(dir.path());
    let before: Vec<_> = walk(&share);
    let g = guest();
    for (readonly, extra) in [(true, " p9ro"), (false, "")] {
        let arg = format!(
            "path={},tag=config-2{}",
            share.display(),
            if readonly { ",readonly=on" } else { "" }
        );
        let cmdline = format!("p9read=openstack/latest/data.bin{extra}");
        let r = run_vmm(
            &[
                "--kernel",
                &g,
                "--memory",
                "64",
                "--share",
                &arg,
                "--cmdline",
                &cmdline,
            ],
            b"",
            TIMEOUT,
        );
        assert_eq!(r.code(), Some(32), "{}", r.dump());
        for line in [
            "guest: pci 00:01.0 0x1af4:0x1049",
            "guest: 9p tag config-2",
            "guest: 9p read 3145728 bytes of openstack/latest/data.bin",
            "guest: 9p done",
        ] {
            assert!(r.stdout.contains(line), "missing '{line}'\n{}", r.dump());
        }
        assert!(!r.stdout.contains("FAIL"), "{}", r.dump());
    }
    // Through the symlink the guest gets nothing: walking it is fine, opening is ELOOP
    // (checked in the unit tests); here: the tree is exactly as before.
    assert_eq!(walk(&share), before);
    assert_eq!(
        std::fs::read(dir.path().join("secret")).unwrap(),
        b"outside the share"
    );
}

fn walk(dir: &Path) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let m = e.path().symlink_metadata().unwrap();
        out.push((e.path().display().to_string(), m.len()));
        if m.is_dir() {
            out.extend(walk(&e.path()));
        }
    }
    out.sort();
    out
}

struct Api {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Api {
    fn connect(path: &Path) -> Api {
        let start = Instant::now();
        let s = loop {
            match UnixStream::connect(path) {
                Ok(s) => break s,
                Err(e) if start.elapsed() < TIMEOUT => {
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(20))
                }
                Err(e) => panic!("api socket {}: {e}", path.display()),
            }
        };
        s.set_read_timeout(Some(TIMEOUT)).unwrap();
        Api {
            reader: BufReader::new(s.try_clone().unwrap()),
            writer: s,
        }
    }

    fn call(&mut self, line: &str) -> serde_json::Value {
        self.writer.write_all(line.as_bytes()).unwrap();
        self.writer.write_all(b"\n").unwrap();
        let mut answer = String::new();
        self.reader.read_line(&mut answer).unwrap();
        serde_json::from_str(&answer).unwrap_or_else(|e| panic!("{e}: {answer:?}"))
    }
}

#[test]
#[ignore = "needs /dev/kvm and the test guest; run by scripts/test.sh"]
fn api_status_shutdown_and_power_off() {
    let dir = tempfile::tempdir().unwrap();
    let share = share_dir(dir.path());
    let sock = dir.path().join("vm.sock");
    let share_arg = format!("path={},tag=config-2,readonly=on", share.display());
    let g = guest();
    let args = |cmdline: &'static str| {
        vec![
            "--kernel".to_owned(),
            g.clone(),
            "--memory".to_owned(),
            "64".to_owned(),
            "--share".to_owned(),
            share_arg.clone(),
            "--api-socket".to_owned(),
            sock.display().to_string(),
            "--boot-marker".to_owned(),
            "waiting for the power button".to_owned(),
            "--cmdline".to_owned(),
            cmdline.to_owned(),
        ]
    };
    // status, then a graceful shutdown the guest honours.
    let a = args("button");
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let r = Running::spawn(&a, Stdio::null());
    wait_for(&r, "guest: waiting for the power button");
    let mut api = Api::connect(&sock);
    let st = api.call(r#"{"command":"status"}"#);
    assert_eq!(st["ok"], true, "{st}");
    assert_eq!(st["state"], "running", "{st}");
    assert!(st["uptime_ms"].as_u64().is_some(), "{st}");
    assert_eq!(st["cpus"], 1);
    assert_eq!(st["memory_mib"], 64);
    assert_eq!(st["devices"]["shares"][0]["tag"], "config-2", "{st}");
    assert_eq!(st["devices"]["shares"][0]["readonly"], true, "{st}");
    assert_eq!(st["devices"]["rng"]["pci"], "00:02.0", "{st}");
    assert_eq!(st["boot_marker"]["seen"], true, "{st}");
    let bad = api.call(r#"{"command":"reboot"}"#);
    assert_eq!(bad["ok"], false);
    assert!(bad["error"].as_str().unwrap().contains("unknown command"));
    let bad = api.call("not json");
    assert_eq!(bad["ok"], false);
    let sd = api.call(r#"{"command":"shutdown"}"#);
    assert_eq!(sd["ok"], true, "{sd}");
    assert_eq!(sd["state"], "shutting-down");
    let f = r.wait(TIMEOUT);
    assert_eq!(f.code(), Some(0), "{}", f.dump());
    assert!(
        f.stdout.contains("guest: power button pressed"),
        "{}",
        f.dump()
    );
    assert!(!sock.exists(), "the socket file is removed at exit");

    // A guest that ignores the button: a second shutdown is refused, power-off stops it.
    let a = args("button ignorebutton");
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let r = Running::spawn(&a, Stdio::null());
    wait_for(&r, "guest: waiting for the power button");
    let mut api = Api::connect(&sock);
    assert_eq!(api.call(r#"{"command":"shutdown"}"#)["ok"], true);
    wait_for(&r, "guest: power button pressed");
    let st = api.call(r#"{"command":"status"}"#);
    assert_eq!(st["state"], "shutting-down", "{st}");
    let again = api.call(r#"{"command":"shutdown"}"#);
    assert_eq!(again["ok"], false);
    assert!(
        again["error"]
            .as_str()
            .unwrap()
            .contains("already shutting down"),
        "{again}"
    );
    let off = api.call(r#"{"command":"power-off"}"#);
    assert_eq!(off["ok"], true, "{off}");
    let f = r.wait(TIMEOUT);
    assert_eq!(f.code(), Some(5), "{}", f.dump());
    assert!(f.stderr.contains("API power-off"), "{}", f.dump());
}

#[test]
#[ignore = "needs /dev/kvm and the test guest; run by scripts/test.sh"]
fn api_console_attaches_while_the_serial_file_keeps_logging() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("vm.sock");
    let log = dir.path().join("console.log");
    let g = guest();
    let serial = format!("file={}", log.display());
    let sock_s = sock.display().to_string();
    // The guest's default mode (no disks) waits for one line of serial input.
    let r = Running::spawn(
        &[
            "--kernel",
            &g,
            "--memory",
            "64",
            "--serial",
            &serial,
            "--api-socket",
            &sock_s,
            "--cmdline",
            "expect_cpus=1",
        ],
        Stdio::null(),
    );
    let start = Instant::now();
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("guest: ready for input")
    {
        assert!(start.elapsed() < TIMEOUT, "guest did not ask for input");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut api = Api::connect(&sock);
    let ok = api.call(r#"{"command":"console"}"#);
    assert_eq!(ok["ok"], true, "{ok}");
    // From here the connection is the console: type a line, see the guest's answer.
    let mut stream = api.writer.try_clone().unwrap();
    stream.write_all(b"over-the-api\n").unwrap();
    let mut seen = String::new();
    let mut buf = [0u8; 256];
    while !seen.contains("guest: PASS") {
        let n = api.reader.read(&mut buf).unwrap();
        assert!(n > 0, "console closed early: {seen}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert!(seen.contains("guest: got input 'over-the-api'"), "{seen}");
    let f = r.wait(TIMEOUT);
    assert_eq!(f.code(), Some(32), "{}", f.dump());
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        logged.contains("guest: got input 'over-the-api'"),
        "the serial file keeps logging while attached:\n{logged}"
    );
}

fn vmm_error(args: &[&str]) -> (i32, String) {
    let out = Command::new(vmm_bin())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    (out.status.code().unwrap_or(-1), err)
}

#[test]
fn new_flags_fail_with_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    let kernel = dir.path().join("k");
    std::fs::write(&kernel, b"not a kernel").unwrap();
    let k = kernel.to_str().unwrap();
    let bad_json = dir.path().join("bad.ign");
    std::fs::write(&bad_json, b"{\"ignition\": ").unwrap();
    let d = dir.path().display().to_string();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["--share".into(), "path=/nonexistent,tag=x".into()],
            "/nonexistent",
        ),
        (
            vec!["--share".into(), format!("path={d}")],
            "tag= is required",
        ),
        (
            vec!["--share".into(), format!("path={d},tag=bad tag")],
            "share tag 'bad tag'",
        ),
        (
            vec![
                "--share".into(),
                format!("path={d},tag=a"),
                "--share".into(),
                format!("path={d},tag=a"),
            ],
            "given twice",
        ),
        (
            vec!["--ignition".into(), bad_json.display().to_string()],
            "is not valid JSON",
        ),
        (
            vec!["--ignition".into(), format!("{d}/missing.ign")],
            "missing.ign",
        ),
        (vec!["--rng".into(), "maybe".into()], "expected on or off"),
        (vec!["--shutdown-timeout".into(), "soon".into()], "soon"),
        (
            vec!["--api-socket".into(), format!("{d}/no/such/vm.sock")],
            "does not exist",
        ),
    ];
    for (extra, want) in cases {
        let mut args = vec!["--kernel", k];
        args.extend(extra.iter().map(String::as_str));
        let (code, err) = vmm_error(&args);
        assert_eq!(code, 2, "{extra:?}: {err}");
        assert!(err.contains(want), "{extra:?}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{extra:?}: {err}");
    }
    // A live socket is not stolen from another VMM.
    let sock = dir.path().join("live.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let (code, err) = vmm_error(&["--kernel", k, "--api-socket", sock.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("another process is listening"), "{err}");
}

/// The API example in docs/vmm.md runs as written (cwd holding `vm.sock`).
#[test]
#[ignore = "needs /dev/kvm and the test guest; run by scripts/test.sh"]
fn api_example_in_the_docs_runs() {
    let doc =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/vmm.md")).unwrap();
    let block = doc
        .split("```sh\n")
        .skip(1)
        .filter_map(|b| b.split("```").next())
        .find(|b| b.contains("python3 - vm.sock"))
        .expect("docs/vmm.md has the API example")
        .to_owned();
    let (dir, _sock, r) = button_guest_with_api();
    let out = Command::new("bash")
        .args(["-euo", "pipefail", "-c", &block])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(text.matches("'ok': True").count(), 2, "{text}");
    assert!(text.contains("'state': 'shutting-down'"), "{text}");
    let f = r.wait(TIMEOUT);
    assert_eq!(f.code(), Some(0), "{}", f.dump());
}

/// The test guest waiting for the power button, with an API socket in a new directory.
fn button_guest_with_api() -> (tempfile::TempDir, PathBuf, Running) {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("vm.sock");
    let sock_s = sock.display().to_string();
    let g = guest();
    let r = Running::spawn(
        &[
            "--kernel",
            &g,
            "--memory",
            "64",
            "--api-socket",
            &sock_s,
            "--cmdline",
            "button",
        ],
        Stdio::null(),
    );
    wait_for(&r, "guest: waiting for the power button");
    (dir, sock, r)
}

/// Console clients come and go (vmctl console, Ctrl-] q): a newer one replaces an older one,
/// the older one leaving must not cut the newer one off, and nothing a leaving client makes
/// the API thread do may be refused by its seccomp filter (that killed the whole VMM).
#[test]
#[ignore = "needs /dev/kvm and the test guest; run by scripts/test.sh"]
fn console_clients_replace_and_leave_without_harm() {
    let (_dir, sock, r) = button_guest_with_api();
    let attach = || {
        let mut c = Api::connect(&sock);
        assert_eq!(c.call(r#"{"command":"console"}"#)["ok"], true);
        c
    };
    // One client that leaves on its own, then one replaced by a newer one.
    drop(attach());
    let mut first = attach();
    let mut second = attach();
    let mut buf = [0u8; 256];
    let n = first.reader.read(&mut buf).unwrap();
    assert_eq!(n, 0, "the replaced client is disconnected");
    drop(first);
    std::thread::sleep(Duration::from_millis(300));
    // Still serving, and the newer client still gets the guest's output.
    let mut api = Api::connect(&sock);
    let st = api.call(r#"{"command":"status"}"#);
    assert_eq!(st["state"], "running", "{st}");
    assert_eq!(api.call(r#"{"command":"shutdown"}"#)["ok"], true);
    let mut seen = String::new();
    while !seen.contains("guest: power button pressed") {
        let n = second.reader.read(&mut buf).unwrap();
        assert!(n > 0, "the newer console lost the output: {seen:?}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    drop(second);
    let f = r.wait(TIMEOUT);
    assert_eq!(f.code(), Some(0), "{}", f.dump());
}
