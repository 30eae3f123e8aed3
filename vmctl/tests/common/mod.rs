//! Fixtures for vmctl's integration tests, made with independent tools (mksquashfs, bsdcpio,
//! gzip), and a way to run the vmctl binary against a private state directory.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub struct Env {
    pub tmp: tempfile::TempDir,
    pub home: PathBuf,
    pub work: PathBuf,
}

impl Env {
    pub fn new() -> Self {
        let tmp = tempfile::Builder::new()
            .prefix("vmctl-t")
            .tempdir_in("/tmp")
            .unwrap();
        let home = tmp.path().join("state");
        let work = tmp.path().join("work");
        std::fs::create_dir_all(&work).unwrap();
        Env { home, work, tmp }
    }

    /// vmctl with this test's state directory and the stand-in VMM, run in the work directory.
    pub fn vmctl(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_vmctl"));
        c.env("VMCTL_HOME", &self.home)
            .env("VMCTL_VMM", stand_in_vmm())
            .env_remove("VMCTL_CLUSTER")
            .env_remove("NOTIFY_SOCKET")
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
