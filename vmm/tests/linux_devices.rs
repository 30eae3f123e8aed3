//! Issue 5's devices under the test kernel (scripts/build-test-kernel.sh), at kernel level
//! (no guest user space runs on PVM hosts, see docs/testing.md): the root filesystem is a
//! virtio-9p share, the ACPI power button and fw_cfg are probed, the entropy device feeds
//! the kernel, and a kernel with nobody to act on the power button is stopped after
//! `--shutdown-timeout`.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{Running, kernel_dir};

const BASE_CMDLINE: &str = "console=ttyS0 noxsave clearcpuid=popcnt,cx16,smap,smep,umip \
    random.trust_cpu=1 8250.nr_uarts=1 i8042.noaux i8042.nokbd i8042.nopnp";
const BOOT: Duration = Duration::from_secs(900);

fn api(sock: &Path, line: &str) -> serde_json::Value {
    let s = UnixStream::connect(sock).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    (&s).write_all(format!("{line}\n").as_bytes()).unwrap();
    let mut answer = String::new();
    BufReader::new(&s).read_line(&mut answer).unwrap();
    serde_json::from_str(&answer).unwrap_or_else(|e| panic!("{e}: {answer:?}"))
}

#[test]
#[ignore = "needs /dev/kvm and the test kernel; run by scripts/test.sh"]
fn linux_mounts_a_9p_root_and_probes_the_power_button_fw_cfg_and_rng() {
    let kernel = kernel_dir().join("vmlinux");
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("config-2");
    std::fs::create_dir_all(root.join("openstack/latest")).unwrap();
    std::fs::write(root.join("openstack/latest/meta_data.json"), b"{}").unwrap();
    let ign = dir.path().join("config.ign");
    std::fs::write(&ign, br#"{"ignition":{"version":"3.3.0"}}"#).unwrap();
    let sock = dir.path().join("vm.sock");
    let share = format!("path={},tag=config-2,readonly=on", root.display());
    let cmdline = format!(
        "{BASE_CMDLINE} root=config-2 rootfstype=9p rootflags=trans=virtio,version=9p2000.L"
    );
    let sock_s = sock.display().to_string();
    let r = Running::spawn(
        &[
            "-vv",
            "--kernel",
            kernel.to_str().unwrap(),
            "--memory",
            "128",
            "--share",
            &share,
            "--ignition",
            ign.to_str().unwrap(),
            "--api-socket",
            &sock_s,
            "--shutdown-timeout",
            "3",
            "--cmdline",
            &cmdline,
        ],
        Stdio::null(),
    );
    // No init in the share: the kernel mounts it, tries /sbin/init and panics. That is the
    // end of what a kernel-level check can see.
    let mut r = r;
    let start = Instant::now();
    while !(r.stdout().contains("Run /sbin/init") || r.stdout().contains("Kernel panic")) {
        let exited = r.child.try_wait().ok().flatten().is_some();
        if exited || start.elapsed() > BOOT || r.stdout().contains("VFS: Cannot open root device") {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let out = r.stdout();
    let dump = || {
        format!(
            "--- stdout ---\n{}\n--- stderr ---\n{}",
            r.stdout(),
            r.stderr()
        )
    };
    for line in [
        "VFS: Mounted root (9p filesystem)",
        "ACPI: button: Power Button [PWRB]",
    ] {
        assert!(out.contains(line), "missing '{line}'\n{}", dump());
    }
    // qemu_fw_cfg prints nothing when it binds; the VMM logs the driver reading the file
    // directory (what the driver does right after checking the signature).
    assert!(
        r.stderr().contains("guest reads the fw_cfg file directory"),
        "fw_cfg driver did not probe\n{}",
        dump()
    );
    let st = api(&sock, r#"{"command":"status"}"#);
    assert_eq!(st["devices"]["shares"][0]["driver_ready"], true, "{st}");
    assert!(
        st["devices"]["shares"][0]["requests"].as_u64().unwrap() > 3,
        "{st}"
    );
    assert_eq!(st["devices"]["rng"]["driver_ready"], true, "{st}");
    assert!(
        st["devices"]["rng"]["bytes"].as_u64().unwrap() > 0,
        "the kernel took entropy from virtio-rng: {st}"
    );
    // Nobody in this guest acts on the power button: the VMM stops it after the timeout.
    let sd = api(&sock, r#"{"command":"shutdown"}"#);
    assert_eq!(sd["ok"], true, "{sd}");
    // wait() counts from the VMM's start, and the boot alone may take minutes.
    let f = r.wait(start.elapsed() + Duration::from_secs(60));
    assert_eq!(f.code(), Some(6), "{}", f.dump());
}
