//! Fixtures for the CLI tests: everything is built and checked with independent tools
//! (mksquashfs, GNU cpio, bsdcpio, gzip, xz, zstd, unsquashfs, e2fsprogs), never with imagetool itself.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub mod sparse;

pub struct Run {
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn ok(&self) -> &Self {
        assert_eq!(
            self.status, 0,
            "expected success, got {}: {}",
            self.status, self.stderr
        );
        self
    }

    /// Fails with exactly one line on stderr that contains every fragment.
    pub fn fails_with(&self, fragments: &[&str]) -> &Self {
        assert_ne!(
            self.status, 0,
            "expected failure, got success; stdout: {}",
            self.stdout
        );
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert_eq!(
            lines.len(),
            1,
            "expected a one-line error, got: {:?}",
            self.stderr
        );
        assert!(lines[0].starts_with("imagetool: error: "), "{}", lines[0]);
        for f in fragments {
            assert!(
                lines[0].contains(f),
                "error {:?} does not mention {f:?}",
                lines[0]
            );
        }
        self
    }
}

pub fn finish(out: Output) -> Run {
    Run {
        status: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_imagetool")
}

pub fn imagetool(args: &[&str]) -> Run {
    finish(
        Command::new(bin())
            .args(args)
            .output()
            .expect("run imagetool"),
    )
}

pub fn imagetool_stdin(args: &[&str], stdin: &Path) -> Run {
    let file = std::fs::File::open(stdin).expect("open stdin fixture");
    finish(
        Command::new(bin())
            .args(args)
            .stdin(file)
            .output()
            .expect("run imagetool"),
    )
}

pub fn imagetool_env(args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut c = Command::new(bin());
    c.args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    finish(c.output().expect("run imagetool"))
}

/// Runs a shell command line in `dir`; panics with its stderr if it fails.
pub fn sh(dir: &Path, script: &str) -> String {
    let out = Command::new("bash")
        .args(["-euo", "pipefail", "-c", script])
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("run bash");
    assert!(
        out.status.success(),
        "fixture command failed: {script}\n{}\n(the tests need squashfs-tools, cpio, libarchive-tools, gzip, bzip2, xz-utils, zstd, e2fsprogs: scripts/test.sh installs them)",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("imagetool-test.")
        .tempdir()
        .expect("tempdir")
}

/// A small but real /usr tree: binaries (incompressible), text, a symlink, nested directories.
pub fn usr_tree(dir: &Path) -> PathBuf {
    let src = dir.join("usrsrc");
    sh(
        dir,
        "mkdir -p usrsrc/bin usrsrc/lib/modules usrsrc/share/doc
         head -c 700000 /dev/urandom > usrsrc/bin/busybox
         seq 1 50000 > usrsrc/share/doc/numbers
         printf 'NAME=Test\\n' > usrsrc/lib/os-release
         ln -s ../lib/os-release usrsrc/share/os-release
         head -c 5000 /dev/urandom > usrsrc/lib/modules/a.ko",
    );
    src
}

/// `mksquashfs` of the tree with the given compressor; returns the image path.
pub fn squashfs(dir: &Path, name: &str, comp: &str) -> PathBuf {
    let src = if dir.join("usrsrc").exists() {
        dir.join("usrsrc")
    } else {
        usr_tree(dir)
    };
    let out = dir.join(name);
    sh(
        dir,
        &format!(
            "mksquashfs {} {} -comp {comp} -quiet -noappend -no-progress >/dev/null",
            src.display(),
            out.display()
        ),
    );
    out
}

/// Lays out a PXE-style root (`.`, `./etc`, `./<name>`) and returns its directory.
pub fn pxe_root(dir: &Path, root: &str, members: &[(&Path, &str)]) -> PathBuf {
    let r = dir.join(root);
    std::fs::create_dir_all(r.join("etc")).expect("mkdir");
    for (src, name) in members {
        std::fs::copy(src, r.join(name)).expect("copy member");
    }
    r
}

/// GNU cpio in newc format, names as `find .` gives them (`./usr.squashfs`).
pub fn cpio_find(dir: &Path, root: &Path, out: &str) -> PathBuf {
    sh(
        dir,
        &format!(
            "(cd {} && find . | LC_ALL=C sort | cpio -o -H newc --quiet) > {out}",
            root.display()
        ),
    );
    dir.join(out)
}

/// libarchive's bsdcpio keeps `./` in names, as Flatcar's real PXE archive has them
/// (GNU cpio strips the prefix).
pub fn cpio_dotslash(dir: &Path, root: &Path, out: &str) -> PathBuf {
    sh(
        dir,
        &format!(
            "(cd {} && find . | LC_ALL=C sort | bsdcpio -o --format newc --quiet) > {out}",
            root.display()
        ),
    );
    dir.join(out)
}

pub fn sha256sum(path: &Path) -> String {
    let out = sh(Path::new("/"), &format!("sha256sum {}", path.display()));
    out.split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

pub fn cmp(a: &Path, b: &Path) {
    let st = Command::new("cmp").arg(a).arg(b).status().expect("run cmp");
    assert!(st.success(), "{} and {} differ", a.display(), b.display());
}

/// Nothing but the expected files in the directory: no output, no `.part` leftovers.
pub fn assert_only(dir: &Path, expected: &[&str]) {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let mut want: Vec<String> = expected.iter().map(|s| s.to_string()).collect();
    want.sort();
    assert_eq!(names, want, "unexpected files in {}", dir.display());
}

/// Bytes allocated on disk (`du`), not the apparent size.
pub fn du_bytes(path: &Path) -> u64 {
    let out = sh(
        Path::new("/"),
        &format!("du --block-size=1 {}", path.display()),
    );
    out.split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .expect("du output")
}
