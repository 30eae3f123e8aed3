//! Command-line and configuration errors: exit status 2 and one line on stderr, before KVM is
//! touched (so these run anywhere, without /dev/kvm).

mod common;

use std::process::Command;

use common::vmm_bin;

fn vmm(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(vmm_bin()).args(args).output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Exit 2 with exactly one line of error mentioning `needle`.
fn assert_usage_error(args: &[&str], needle: &str) {
    let (code, _, err) = vmm(args);
    assert_eq!(code, Some(2), "{args:?}: {err}");
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "{args:?}: not one line: {err}"
    );
    assert!(err.starts_with("error"), "{err}");
    assert!(
        err.contains(needle),
        "{args:?}: expected '{needle}' in: {err}"
    );
}

#[test]
fn missing_kernel() {
    assert_usage_error(&[], "no kernel given");
    assert_usage_error(
        &["--kernel", "/nonexistent/bzImage"],
        "/nonexistent/bzImage",
    );
}

#[test]
fn a_file_that_is_not_a_kernel() {
    let dir = tempfile::tempdir().unwrap();
    let k = dir.path().join("notes.txt");
    std::fs::write(&k, "hello\n").unwrap();
    assert_usage_error(&["--kernel", k.to_str().unwrap()], "is not a Linux kernel");
}

#[test]
fn bad_values() {
    let dir = tempfile::tempdir().unwrap();
    let k = dir.path().join("k");
    std::fs::write(&k, "x").unwrap();
    let k = k.to_str().unwrap();
    assert_usage_error(&["--kernel", k, "--cpus", "0"], "cpus");
    assert_usage_error(&["--kernel", k, "--cpus", "300"], "cpus");
    assert_usage_error(&["--kernel", k, "--memory", "8"], "memory");
    assert_usage_error(
        &["--kernel", k, "--disk", "readonly=on"],
        "path=PATH is required",
    );
    assert_usage_error(
        &["--kernel", k, "--disk", "path=/nonexistent.img"],
        "/nonexistent.img",
    );
    assert_usage_error(
        &["--kernel", k, "--serial", "tty"],
        "stdio, off, file=PATH or socket=PATH",
    );
    assert_usage_error(
        &[
            "--kernel",
            k,
            "--serial",
            "file=/nonexistent/dir/serial.log",
        ],
        "serial console",
    );
    assert_usage_error(&["--kernel", k, "--frobnicate"], "--frobnicate");
}

#[test]
fn empty_disk_image_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let k = dir.path().join("k");
    std::fs::write(&k, "x").unwrap();
    let d = dir.path().join("empty.img");
    std::fs::write(&d, "").unwrap();
    let disk = format!("path={}", d.display());
    assert_usage_error(
        &["--kernel", k.to_str().unwrap(), "--disk", &disk],
        "512-byte sector",
    );
}

#[test]
fn config_file_errors() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("vm.yaml");
    std::fs::write(&cfg, "kernel: k\ncpu: 2\n").unwrap();
    assert_usage_error(&["--config", cfg.to_str().unwrap()], "unknown field `cpu`");
    std::fs::write(&cfg, "kernel: [unterminated\n").unwrap();
    assert_usage_error(&["--config", cfg.to_str().unwrap()], "vm.yaml");
    assert_usage_error(
        &["--config", "/nonexistent/vm.yaml"],
        "cannot read config file",
    );
}

#[test]
fn flags_override_the_config_file() {
    // The file names a kernel that does not exist; --kernel replaces it, so the error is
    // about the flag's file.
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("vm.yaml");
    std::fs::write(&cfg, "kernel: /nonexistent/from-file\nmemory: 64\n").unwrap();
    let notes = dir.path().join("notes.txt");
    std::fs::write(&notes, "not a kernel").unwrap();
    assert_usage_error(
        &[
            "--config",
            cfg.to_str().unwrap(),
            "--kernel",
            notes.to_str().unwrap(),
        ],
        "notes.txt is not a Linux kernel",
    );
}

#[test]
fn help_documents_exit_statuses_and_escape() {
    let (code, out, _) = vmm(&["--help"]);
    assert_eq!(code, Some(0));
    for needle in [
        "--disk",
        "--serial",
        "--boot-marker",
        "Exit status",
        "Ctrl-A x",
        "32+V",
    ] {
        assert!(out.contains(needle), "--help lacks {needle}: {out}");
    }
}
