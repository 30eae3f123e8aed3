//! Export and import interrupted halfway, beyond sparse_signals.rs (which covers a reader that
//! goes away, and SIGINT/SIGTERM of an import from stdin and of an export to stdout): the shell
//! pipeline `imagetool export img -o - | head -c 1M`, SIGINT of an export to a file, and SIGINT
//! of an import from a named pipe over an existing output (`--force`). Each time: no partial
//! output, an existing output keeps its old content, and the source is untouched
//! (`sha256sum` before and after).

mod support;

use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use support::sparse::*;

fn sigint(child: &Child) {
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());
}

fn died_of_sigint(status: std::process::ExitStatus) -> bool {
    status.signal() == Some(2) || status.code() == Some(130)
}

#[test]
fn export_into_head_c_1m_fails_in_one_line_and_leaves_the_source_alone() {
    let t = tempdir();
    let d = t.path();
    sh(d, "head -c 16M /dev/urandom > img && truncate -s 64M img");
    let sum = sha256sum(d, "img");
    let before = entries(d);
    // The shell's own pipeline: head takes 1 MiB and exits, closing the pipe.
    let out = sh(
        d,
        "set +o pipefail; imagetool export img -o - --digest img.sha256 2>err \
         | head -c 1M | wc -c; echo \"status ${PIPESTATUS[0]}\"",
    );
    let err = std::fs::read_to_string(d.join("err")).unwrap_or_default();
    std::fs::remove_file(d.join("err")).ok();
    let mut lines = out.lines();
    assert_eq!(
        lines.next(),
        Some("1048576"),
        "head -c 1M got 1 MiB of the stream"
    );
    let status = lines.next().unwrap_or_default();
    assert!(
        status != "status 0",
        "export | head -c 1M: imagetool must fail when its reader goes away, got {status}"
    );
    assert_eq!(
        err.lines().count(),
        1,
        "export | head -c 1M: expected a one-line error, got {err:?}"
    );
    assert!(err.starts_with("imagetool: error: "), "{err}");
    assert!(
        err.contains("closed by its reader") || err.contains("broken pipe"),
        "export | head -c 1M: the error must say the reader went away: {err}"
    );
    nothing_left(d, &before);
    assert_eq!(
        sha256sum(d, "img"),
        sum,
        "export | head -c 1M: the source image must be untouched"
    );
}

#[test]
fn sigint_during_an_export_to_a_file_leaves_nothing_and_the_source_alone() {
    let t = tempdir();
    let d = t.path();
    // Random data at gzip level 9 takes seconds: long enough to interrupt.
    sh(d, "head -c 64M /dev/urandom > img && truncate -s 96M img");
    let sum = sha256sum(d, "img");
    let before = entries(d);
    let mut child = spawn(
        d,
        &[
            "export",
            "img",
            "-o",
            "img.gz",
            "--level",
            "9",
            "--digest",
            "img.gz.sha256",
        ],
        Stdio::null(),
        Stdio::null(),
    );
    wait_for_part(d, "img.gz");
    std::thread::sleep(Duration::from_millis(300));
    sigint(&child);
    let status = child.wait().expect("wait");
    assert!(
        died_of_sigint(status),
        "SIGINT mid-export must stop it with the signal's status (the export may have \
         finished first: make the image bigger): {status:?}"
    );
    nothing_left(d, &before);
    assert_eq!(
        sha256sum(d, "img"),
        sum,
        "SIGINT mid-export: the source image must be untouched"
    );
}

#[test]
fn sigint_during_an_import_from_a_pipe_keeps_the_old_output_and_the_stream() {
    let t = tempdir();
    let d = t.path();
    sh(
        d,
        "head -c 8M /dev/urandom > img && truncate -s 64M img && imagetool export img -o img.gz \
         && head -c 1M /dev/urandom > back.img && mkfifo in.gz",
    );
    let stream_sum = sha256sum(d, "img.gz");
    let old_sum = sha256sum(d, "back.img");
    let before = entries(d);
    let stream = std::fs::read(d.join("img.gz")).unwrap();
    let mut child = spawn(
        d,
        &["import", "in.gz", "-o", "back.img", "--force"],
        Stdio::null(),
        Stdio::null(),
    );
    // Half the stream through the named pipe, which stays open: the import waits for more.
    let mut fifo = std::fs::OpenOptions::new()
        .write(true)
        .open(d.join("in.gz"))
        .expect("open the fifo");
    fifo.write_all(&stream[..stream.len() / 2]).unwrap();
    wait_for_part(d, "back.img");
    sigint(&child);
    let status = child.wait().expect("wait");
    drop(fifo);
    assert!(
        died_of_sigint(status),
        "SIGINT mid-import must stop it with the signal's status: {status:?}"
    );
    nothing_left(d, &before);
    assert_eq!(
        sha256sum(d, "back.img"),
        old_sum,
        "SIGINT mid-import with --force: the existing output must keep its old content"
    );
    assert_eq!(
        sha256sum(d, "img.gz"),
        stream_sum,
        "SIGINT mid-import: the stream file must be untouched"
    );
}
