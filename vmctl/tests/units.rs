//! The systemd units pass systemd's own checker.

mod common;

use std::process::Command;

use common::Env;

#[test]
fn units_pass_systemd_analyze_verify() {
    let env = Env::new();
    let dir = env.tmp.path().join("units");
    let out = env.ok(&["units", "install", "--dir", dir.to_str().unwrap()]);
    assert!(
        out.contains("vm@.service") && out.contains("vmnet@.service"),
        "{out}"
    );
    let vm = std::fs::read_to_string(dir.join("vm@.service")).unwrap();
    assert!(
        vm.contains(&format!("ExecStart={} run %i", env!("CARGO_BIN_EXE_vmctl"))),
        "{vm}"
    );
    assert!(
        vm.contains(&format!("Environment=VMCTL_HOME={}", env.home.display())),
        "{vm}"
    );

    // Instances of the templates, as systemctl would start them; a drop-in for one instance.
    let dropin = dir.join("vm@demo-core-1.service.d");
    std::fs::create_dir_all(&dropin).unwrap();
    std::fs::write(dropin.join("memory.conf"), "[Service]\nMemoryMax=4G\n").unwrap();
    let out = Command::new("systemd-analyze")
        .args([
            "verify",
            "vm@demo-core-1.service",
            "vm@demo-core-2.service",
            "vmnet@demo.service",
        ])
        .env("SYSTEMD_UNIT_PATH", format!("{}:", dir.display()))
        .output()
        .expect("systemd-analyze (Debian package systemd) is needed");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "systemd-analyze verify failed: {err}");
    assert!(
        err.trim().is_empty(),
        "systemd-analyze verify warned: {err}"
    );

    // The checker is not a rubber stamp: a broken unit next to ours fails it.
    std::fs::write(dir.join("broken@.service"), "[Service]\nType=notify\n").unwrap();
    let out = Command::new("systemd-analyze")
        .args(["verify", "broken@x.service"])
        .env("SYSTEMD_UNIT_PATH", format!("{}:", dir.display()))
        .output()
        .unwrap();
    assert!(!out.status.success());

    // The instance's drop-in is read with it: a mistake there shows up for that instance.
    std::fs::write(
        dropin.join("memory.conf"),
        "[Service]\nMemoryMax=4G\nBogusKey=1\n",
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .args(["verify", "vm@demo-core-1.service"])
        .env("SYSTEMD_UNIT_PATH", format!("{}:", dir.display()))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("memory.conf") && err.contains("BogusKey"),
        "{err}"
    );
}
