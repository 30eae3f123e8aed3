//! Helpers for the sparse export/import tests, which run imagetool and shell pipelines in a
//! working directory. Fixtures are made and results checked with independent tools (truncate,
//! dd, gzip, zstd, cmp, du, sha256sum).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub use super::{Run, bin, finish};

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

/// Starts imagetool in `dir` with its stderr piped, for tests that interrupt it.
pub fn spawn(dir: &Path, args: &[&str], stdin: Stdio, stdout: Stdio) -> Child {
    Command::new(bin())
        .args(args)
        .current_dir(dir)
        .stdin(stdin)
        .stdout(stdout)
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn imagetool")
}

/// Waits until a `.part` file whose name starts with `.{name}.` exists in `dir`: the run is
/// under way.
pub fn wait_for_part(dir: &Path, name: &str) {
    let prefix = format!(".{name}.");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !entries(dir)
        .iter()
        .any(|e| e.starts_with(&prefix) && e.ends_with(".part"))
    {
        assert!(
            Instant::now() < deadline,
            "no temporary file for {name} appeared: {:?}",
            entries(dir)
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}
