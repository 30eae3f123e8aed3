//! The VMM's real seccomp filters, installed in a child process (this test binary run again,
//! see [`seccomp_child`]) through the same library function the VMM's threads use: a forbidden
//! system call kills the whole process with SIGSYS, allowed ones work, `log` lets calls through.
//! Also the `--seccomp` flag and YAML key with the test guest.

mod common;

use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Output};
use std::time::Duration;

use vmm::seccomp::{Needs, SeccompMode, ThreadFilter, ThreadKind};

const CHILD_ENV: &str = "VMM_SECCOMP_TEST_CHILD";

fn kind(name: &str) -> (ThreadKind, Needs) {
    let shares = Needs {
        shares: true,
        ..Needs::default()
    };
    match name {
        "main" => (ThreadKind::Main, Needs::default()),
        "vcpu" => (ThreadKind::Vcpu, Needs::default()),
        "io" => (ThreadKind::Io, Needs::default()),
        "io+shares" => (ThreadKind::Io, shares),
        "api" => (ThreadKind::Api, Needs::default()),
        other => panic!("unknown thread kind {other}"),
    }
}

/// The system call a child makes once its filter is installed; returns what it printed.
fn act(action: &str) -> String {
    match action {
        "getpid" => {
            // SAFETY: getpid takes no arguments and cannot fail.
            let pid = unsafe { libc::getpid() };
            assert!(pid > 0);
            format!("pid {pid}")
        }
        "socket" => {
            // SAFETY: plain integer arguments; the result is only printed.
            let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0) };
            format!("socket {fd}")
        }
        "execve" => {
            let path = c"/bin/true".as_ptr();
            let argv = [path, std::ptr::null()];
            let envp = [std::ptr::null()];
            // SAFETY: path is a NUL-terminated literal; argv and envp are null-terminated arrays
            // that outlive the call.
            let r = unsafe { libc::execve(path, argv.as_ptr(), envp.as_ptr()) };
            format!("execve {r}")
        }
        "openat" => {
            // SAFETY: a NUL-terminated literal path; the result is checked.
            let fd = unsafe { libc::openat(libc::AT_FDCWD, c"/dev/null".as_ptr(), libc::O_RDONLY) };
            assert!(
                fd >= 0,
                "openat failed: {}",
                std::io::Error::last_os_error()
            );
            format!("opened {fd}")
        }
        "mmap-exec" => {
            // SAFETY: a new anonymous mapping at an address the kernel picks; nothing is accessed
            // through it.
            let p = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    4096,
                    libc::PROT_READ | libc::PROT_EXEC,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                )
            };
            format!("mmap {p:?}")
        }
        "kvm-run" => {
            // On a descriptor that is not open: allowed calls fail with EBADF, nothing runs.
            // SAFETY: KVM_RUN takes no pointer argument; fd 999 is not open.
            let r = unsafe { libc::ioctl(999, 0xae80) };
            let e = std::io::Error::last_os_error();
            assert_eq!(r, -1);
            assert_eq!(e.raw_os_error(), Some(libc::EBADF), "{e}");
            "ioctl EBADF".to_owned()
        }
        "thread" => {
            let t = std::thread::Builder::new()
                .name("vmm-api".to_owned())
                .spawn(|| 7)
                .unwrap();
            format!("thread {}", t.join().unwrap())
        }
        other => panic!("unknown action {other}"),
    }
}

/// The child side: does nothing unless this binary was started by [`run_child`].
#[test]
fn seccomp_child() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let mut parts = spec.split(' ');
    let (kind_name, mode, action) = (
        parts.next().unwrap(),
        parts.next().unwrap(),
        parts.next().unwrap(),
    );
    let (kind, needs) = kind(kind_name);
    let mode: SeccompMode = mode.parse().unwrap();
    let filter = ThreadFilter::build(kind, mode, &needs).unwrap().unwrap();
    // Something else alive in the process: if only this thread were killed, the process (and
    // the parent's wait) would go on.
    std::thread::spawn(|| std::thread::sleep(Duration::from_secs(3600)));
    filter.install().unwrap();
    let what = act(action);
    println!("survived: {what}");
}

/// Runs [`seccomp_child`] in a new process with the filter of `kind` in `mode`, doing `action`.
fn run_child(kind: &str, mode: &str, action: &str) -> Output {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "seccomp_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, format!("{kind} {mode} {action}"))
        .output()
        .unwrap()
}

fn assert_killed(kind: &str, action: &str) {
    let out = run_child(kind, "on", action);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.signal(),
        Some(libc::SIGSYS),
        "{kind} filter, {action}: expected death by SIGSYS, got {:?}; stdout: {stdout}; stderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!stdout.contains("survived"), "{stdout}");
}

fn assert_survives(kind: &str, mode: &str, action: &str) -> String {
    let out = run_child(kind, mode, action);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success() && stdout.contains("survived"),
        "{kind} filter ({mode}), {action}: {:?}; stdout: {stdout}; stderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

const KINDS: [&str; 5] = ["main", "vcpu", "io", "io+shares", "api"];

#[test]
fn forbidden_calls_kill_the_process_with_sigsys() {
    for kind in KINDS {
        assert_killed(kind, "socket");
        assert_killed(kind, "execve");
        assert_killed(kind, "mmap-exec");
    }
    // Only the device thread with shares may open files.
    for kind in ["main", "vcpu", "io", "api"] {
        assert_killed(kind, "openat");
    }
    // KVM ioctls belong to the vCPUs; only the API threads start threads.
    for kind in ["main", "io", "api"] {
        assert_killed(kind, "kvm-run");
    }
    for kind in ["main", "vcpu", "io"] {
        assert_killed(kind, "thread");
    }
}

#[test]
fn allowed_calls_still_work() {
    for kind in KINDS {
        assert_survives(kind, "on", "getpid");
    }
    assert_survives("io+shares", "on", "openat");
    assert_survives("vcpu", "on", "kvm-run");
    // clone3 gets ENOSYS and glibc falls back to clone, which the filter checks for threads.
    let out = assert_survives("api", "on", "thread");
    assert!(out.contains("thread 7"), "{out}");
}

#[test]
fn log_mode_lets_forbidden_calls_through() {
    let out = assert_survives("vcpu", "log", "socket");
    let fd: i32 = out
        .split("socket ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or(-1);
    assert!(fd >= 0, "socket() should have worked: {out}");
    assert_survives("main", "log", "openat");
}

// ---- the flag and the YAML key, with the VMM ----

/// The test guest's quick mode (ACPI and MP tables, PCI enumeration); the other test files
/// run every device with the default, `on`.
fn guest_args() -> Vec<String> {
    let guest = common::test_guest();
    ["--kernel", guest.to_str().unwrap(), "--memory", "64"]
        .into_iter()
        .chain(["--cmdline", "tables", "--serial", "off", "-vv"])
        .map(str::to_owned)
        .collect()
}

#[test]
fn a_bad_seccomp_value_is_a_one_line_usage_error() {
    let out = Command::new(common::vmm_bin())
        .args(["--kernel", "/nonexistent", "--seccomp", "maybe"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("expected on, log or off"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let yaml = dir.path().join("vm.yaml");
    std::fs::write(&yaml, "kernel: /nonexistent\nseccomp: yes\n").unwrap();
    let out = Command::new(common::vmm_bin())
        .args(["--config", yaml.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("seccomp"), "{err}");
}

#[test]
#[ignore = "needs /dev/kvm and the test guest; run by scripts/test.sh"]
fn the_test_guest_passes_with_each_seccomp_mode() {
    for mode in ["on", "log", "off"] {
        let mut args = guest_args();
        args.extend(["--seccomp".into(), mode.into()]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let r = common::run_vmm(&args, b"", Duration::from_secs(60));
        assert_eq!(r.code(), Some(32), "--seccomp {mode}: {}", r.dump());
        let installed = r.stderr.contains("seccomp filters installed");
        assert_eq!(installed, mode != "off", "--seccomp {mode}: {}", r.stderr);
    }
    // The YAML key, overridden by the flag.
    let dir = tempfile::tempdir().unwrap();
    let yaml = dir.path().join("vm.yaml");
    std::fs::write(&yaml, "seccomp: off\n").unwrap();
    for (extra, installed) in [(vec![], false), (vec!["--seccomp", "log"], true)] {
        let mut args = guest_args();
        args.extend(["--config".into(), yaml.to_str().unwrap().into()]);
        args.extend(extra.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let r = common::run_vmm(&args, b"", Duration::from_secs(60));
        assert_eq!(r.code(), Some(32), "{}", r.dump());
        assert_eq!(r.stderr.contains("seccomp filters installed"), installed);
    }
}
