//! Helpers for the sparse export/import tests, shared with `#[path] mod`. Fixtures are made and
//! results checked with independent tools (truncate, dd, gzip, zstd, cmp, du, sha256sum).
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output, Stdio};

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

    /// Failed with exactly one line on stderr, naming every fragment.
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

/// Runs imagetool in `dir` with no input.
pub fn it(dir: &Path, args: &[&str]) -> Run {
    finish(
        Command::new(bin())
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .output()
            .expect("run imagetool"),
    )
}

/// Runs imagetool in `dir` with a file as its standard input.
pub fn it_stdin(dir: &Path, args: &[&str], stdin: &str) -> Run {
    let file = std::fs::File::open(dir.join(stdin)).expect("open stdin fixture");
    finish(
        Command::new(bin())
            .args(args)
            .current_dir(dir)
            .stdin(file)
            .output()
            .expect("run imagetool"),
    )
}

/// Runs a bash script in `dir` with `imagetool` on the PATH; panics with its stderr on failure.
pub fn sh(dir: &Path, script: &str) -> String {
    let out = sh_run(dir, script);
    assert!(
        out.status == 0,
        "command failed: {script}\n{}\n(the tests need coreutils, gzip and zstd)",
        out.stderr
    );
    out.stdout
}

/// Like [`sh`] but returns the result, failed or not.
pub fn sh_run(dir: &Path, script: &str) -> Run {
    let bin_dir = Path::new(bin()).parent().expect("binary directory");
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    finish(
        Command::new("bash")
            .args(["-euo", "pipefail", "-c", script])
            .current_dir(dir)
            .env("PATH", path)
            .stdin(Stdio::null())
            .output()
            .expect("run bash"),
    )
}

pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("imagetool-sparse-test.")
        .tempdir()
        .expect("tempdir")
}

fn number(dir: &Path, script: &str) -> u64 {
    let out = sh(dir, script);
    out.split_whitespace()
        .next()
        .and_then(|w| w.parse().ok())
        .unwrap_or_else(|| panic!("no number from {script}: {out:?}"))
}

/// Bytes allocated on disk, as `du` counts them.
pub fn allocated(dir: &Path, name: &str) -> u64 {
    number(dir, &format!("du -B1 -- '{name}'"))
}

/// Apparent size, from `stat`.
pub fn apparent(dir: &Path, name: &str) -> u64 {
    number(dir, &format!("stat -c %s -- '{name}'"))
}

/// The digest `sha256sum` prints.
pub fn sha256sum(dir: &Path, name: &str) -> String {
    sh(dir, &format!("sha256sum -- '{name}'"))
        .split_whitespace()
        .next()
        .expect("sha256sum output")
        .to_string()
}

/// The directory's entries, sorted, hidden ones included: to see that nothing was left behind.
pub fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| {
            e.expect("dir entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    v.sort();
    v
}

/// Asserts nothing new, in particular no `.part` file, appeared in `dir` since `before`.
pub fn nothing_left(dir: &Path, before: &[String]) {
    assert_eq!(entries(dir), before, "files were left behind");
}
