//! Fixtures for vmctl's integration tests, made with independent tools (mksquashfs, bsdcpio,
//! gzip), network namespaces, and a way to run the vmctl binary against a private state
//! directory with the real VMM (or, where a boot adds nothing, a stand-in).
#![allow(dead_code)]

pub mod netns;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub use netns::Netns;

pub struct Env {
    pub tmp: tempfile::TempDir,
    pub home: PathBuf,
    pub work: PathBuf,
    /// The VMM vmctl runs.
    pub vmm: PathBuf,
    /// The network namespace vmctl runs in, if any.
    pub netns: Option<String>,
}

impl Env {
    /// With the stand-in VMM (tests/common/stand-in-vmm.sh), for tests where a boot adds nothing.
    pub fn new() -> Self {
        let tmp = tempfile::Builder::new()
            .prefix("vmctl-t")
            .tempdir_in("/tmp")
            .unwrap();
        let home = tmp.path().join("state");
        let work = tmp.path().join("work");
        std::fs::create_dir_all(&work).unwrap();
        Env {
            home,
            work,
            tmp,
            vmm: stand_in_vmm(),
            netns: None,
        }
    }

    /// With the real VMM, run inside `ns`.
    pub fn real(ns: &Netns) -> Self {
        Env {
            vmm: real_vmm(),
            netns: Some(ns.0.clone()),
            ..Env::new()
        }
    }

    /// vmctl with this test's state directory and VMM, run in the work directory (and in the
    /// test's network namespace, if it has one).
    pub fn vmctl(&self) -> Command {
        self.vmctl_in(self.netns.as_deref())
    }

    /// vmctl as [`Env::vmctl`] makes it, in the namespace `netns`.
    pub fn vmctl_in(&self, netns: Option<&str>) -> Command {
        let mut c = match netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, env!("CARGO_BIN_EXE_vmctl")]);
                c
            }
            None => Command::new(env!("CARGO_BIN_EXE_vmctl")),
        };
        c.env("VMCTL_HOME", &self.home)
            .env("VMCTL_VMM", &self.vmm)
            .env_remove("VMCTL_CLUSTER")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("INVOCATION_ID")
            .current_dir(&self.work);
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.vmctl().args(args).output().unwrap()
    }

    /// Runs vmctl and requires success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "vmctl {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs vmctl and requires failure with exactly one line on stderr; returns that line.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        let err = String::from_utf8(out.stderr).unwrap();
        assert!(
            !out.status.success(),
            "vmctl {args:?} should fail; stderr: {err}"
        );
        let lines: Vec<&str> = err
            .lines()
            .filter(|l| !l.starts_with("note:") && !l.starts_with("waiting for"))
            .collect();
        assert_eq!(lines.len(), 1, "one error line expected, got: {err}");
        assert!(lines[0].starts_with("vmctl: "), "{err}");
        lines[0].to_string()
    }

    /// Waits until the stand-in VMM the node's pid file names has finished starting.
    pub fn wait_started(&self, cluster: &str, node: &str) {
        let log = self.node_dir(cluster, node).join("console.log");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if let Some(pid) = self.pid(cluster, node)
                && text.contains(&format!("stand-in: up (pid {pid})"))
            {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{node} did not start: {text}"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    pub fn node_dir(&self, cluster: &str, node: &str) -> PathBuf {
        self.home
            .join("clusters")
            .join(cluster)
            .join("nodes")
            .join(node)
    }

    pub fn pid(&self, cluster: &str, node: &str) -> Option<u32> {
        let t = std::fs::read_to_string(self.node_dir(cluster, node).join("vmm.pid")).ok()?;
        t.split_whitespace().next()?.parse().ok()
    }
}

pub fn stand_in_vmm() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/common/stand-in-vmm.sh")
}

/// The workspace's own VMM, built beside vmctl (`cargo test --workspace` builds it; so does
/// `cargo build -p vmm`).
pub fn real_vmm() -> PathBuf {
    let p = Path::new(env!("CARGO_BIN_EXE_vmctl")).with_file_name("vmm");
    assert!(
        p.is_file(),
        "{} does not exist: build the VMM first (cargo build -p vmm), or run scripts/test.sh",
        p.display()
    );
    p
}

/// Path given by an environment variable that scripts/test.sh sets. A missing input is a
/// failure, not a skip: these tests must run there.
pub fn input_path(var: &str) -> PathBuf {
    let v = std::env::var_os(var).unwrap_or_else(|| {
        panic!("{var} is not set; scripts/test.sh sets it (see docs/testing.md)")
    });
    let p = PathBuf::from(v);
    assert!(p.exists(), "{var}={} does not exist", p.display());
    p
}

/// The freestanding test guest (scripts/build-test-guest.sh): boots in milliseconds.
pub fn test_guest() -> PathBuf {
    input_path("VMCTL_TEST_GUEST")
}

/// The test kernel's directory (scripts/build-test-kernel.sh).
pub fn kernel_dir() -> PathBuf {
    let d = input_path("VMCTL_TEST_KERNEL_DIR");
    assert!(
        d.join("vmlinux").exists(),
        "VMCTL_TEST_KERNEL_DIR has no vmlinux"
    );
    d
}

/// Guests run user space only where the CPU has hardware virtualization (see docs/vmctl.md).
pub fn host_has_vmx_or_svm() -> bool {
    std::fs::read_to_string("/proc/cpuinfo")
        .map(|c| {
            c.lines()
                .filter(|l| l.starts_with("flags"))
                .any(|l| l.split_whitespace().any(|f| f == "vmx" || f == "svm"))
        })
        .unwrap_or(false)
}

/// A user-mode cluster of the test guest in `mode` (its command-line word: `button` waits for
/// the power button and powers off, `ignorebutton` ignores it, `crash` triple-faults), with a
/// Flatcar-shaped PXE initrd so vmctl passes a shared /usr. vmctl waits for the guest's line
/// saying it waits for the button.
pub fn guest_cluster(env: &Env, name: &str, mode: &str, nodes_yaml: &str) -> PathBuf {
    let img = env.work.join("img");
    std::fs::create_dir_all(&img).unwrap();
    if !img.join("test_pxe_image.cpio.gz").exists() {
        pxe_initrd(&img, "test", false);
    }
    let file = env.work.join(format!("{name}.yaml"));
    std::fs::write(
        &file,
        format!(
            "name: {name}\nimage:\n  kernel: {guest}\n  initrd: img/test_pxe_image.cpio.gz\n  cmdline: {mode}\n\
             \x20 boot_marker: waiting for the power button\n\
             network: {{ mode: user }}\ndefaults: {{ cpus: 1, memory: 64, root_size: 64M }}\nnodes:\n{nodes_yaml}",
            guest = test_guest().display()
        ),
    )
    .unwrap();
    file
}

/// The VMM's command line, read from /proc while it runs.
pub fn cmdline_of(pid: u32) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .unwrap_or_default()
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect()
}

/// The values given to `flag`.
pub fn flag_values<'a>(args: &'a [String], flag: &str) -> Vec<&'a str> {
    args.windows(2)
        .filter(|w| w[0] == flag)
        .map(|w| w[1].as_str())
        .collect()
}

/// Waits until `path` contains `text`; panics with the file after `timeout`.
pub fn wait_for_text(path: &Path, text: &str, timeout: std::time::Duration) -> String {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let t = std::fs::read_to_string(path).unwrap_or_default();
        if t.contains(text) {
            return t;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{} never showed {text:?}:\n{t}",
            path.display()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// The part of a bzImage a loader and `imagetool inspect` look at: the "HdrS" setup header.
pub fn kernel_stub(path: &Path) {
    let mut b = vec![0u8; 0x1000];
    b[0x1fe] = 0x55;
    b[0x1ff] = 0xaa;
    b[0x202..0x206].copy_from_slice(b"HdrS");
    b[0x206] = 0x0f;
    b[0x207] = 0x02;
    std::fs::write(path, b).unwrap();
}

fn sh(cmd: &str) {
    let st = Command::new("bash").arg("-ec").arg(cmd).status().unwrap();
    assert!(st.success(), "fixture command failed: {cmd}");
}

/// A Flatcar-shaped PXE initrd (gzip'd newc with `.`, `./etc`, `./usr.squashfs`), and with
/// `oem` an `oem.cpio.gz` appended the way `initrd a,b` concatenates them. Returns the path and
/// the squashfs it holds.
pub fn pxe_initrd(dir: &Path, tag: &str, oem: bool) -> (PathBuf, PathBuf) {
    let d = dir.join(format!("pxe-{tag}"));
    std::fs::create_dir_all(d.join("usr/bin")).unwrap();
    std::fs::write(d.join("usr/bin/hello"), format!("#!/bin/sh\necho {tag}\n")).unwrap();
    std::fs::create_dir_all(d.join("tree/etc")).unwrap();
    let out = dir.join(format!("{tag}_pxe_image.cpio.gz"));
    let squash = d.join("usr.squashfs");
    sh(&format!(
        "cd {d}; mksquashfs usr usr.squashfs -comp gzip -all-root -quiet -no-progress -noappend >/dev/null; \
         cp usr.squashfs tree/; cd tree; find . | LC_ALL=C sort | bsdcpio -o --format newc --quiet | gzip -9 > {out}",
        d = d.display(),
        out = out.display()
    ));
    if oem {
        std::fs::create_dir_all(d.join("oem/usr/share/oem")).unwrap();
        std::fs::write(
            d.join("oem/usr/share/oem/config.ign"),
            "{\"ignition\":{\"version\":\"3.3.0\"}}",
        )
        .unwrap();
        sh(&format!(
            "cd {d}/oem; find usr | LC_ALL=C sort | bsdcpio -o --format newc --quiet | gzip -9 >> {out}",
            d = d.display(),
            out = out.display()
        ));
    }
    (out, squash)
}

/// A kernel and PXE initrd in `dir`, and a cluster file `NAME.yaml` using them in user mode.
pub fn user_cluster(env: &Env, name: &str, nodes_yaml: &str) -> PathBuf {
    let img = env.work.join("img");
    std::fs::create_dir_all(&img).unwrap();
    if !img.join("vmlinuz").exists() {
        kernel_stub(&img.join("vmlinuz"));
        pxe_initrd(&img, "test", false);
    }
    let file = env.work.join(format!("{name}.yaml"));
    std::fs::write(
        &file,
        format!(
            "name: {name}\nimage:\n  kernel: img/vmlinuz\n  initrd: img/test_pxe_image.cpio.gz\n  cmdline: flatcar.autologin\n\
             network: {{ mode: user }}\ndefaults: {{ cpus: 1, memory: 256, root_size: 64M }}\nnodes:\n{nodes_yaml}"
        ),
    )
    .unwrap();
    file
}

/// Whether a process with this pid exists (and is not a zombie).
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            let state = s
                .rsplit(')')
                .next()
                .unwrap_or("")
                .split_whitespace()
                .next()
                .unwrap_or("");
            state != "Z" && state != "X"
        })
        .unwrap_or(false)
}
